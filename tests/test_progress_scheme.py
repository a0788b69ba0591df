"""The keyframe scheme: keyframes, context clips, refinement, isotonic fill, naive cost."""

import numpy as np
import pytest

from labeling.clips import context_indices
from labeling.negatives import temporal_clips
from labeling.progress import fill_frames, initial_keyframes, isotonic, naive_prefix_cost, refinement_frames, unimodal
from labeling.records import EpisodeLabels


def test_initial_keyframes_span_the_episode():
    assert initial_keyframes(30, 6) == [0, 6, 12, 17, 23, 29]
    assert initial_keyframes(3, 6) == [0, 1, 2]
    assert initial_keyframes(1, 6) == [0]


def test_context_is_bounded_and_ends_at_the_frame():
    assert context_indices(0, 6) == (0,)
    assert context_indices(3, 6) == (0, 1, 2, 3)
    clip = context_indices(99, 6)
    assert len(clip) == 6 and clip[0] == 0 and clip[-1] == 99


def test_refinement_splits_the_largest_jumps_within_budget():
    expected = {0: 1.0, 10: 1.2, 20: 4.5, 30: 5.0, 31: 1.0}
    assert refinement_frames(expected, threshold=1.0, budget=5) == [15]  # 30->31 adjacent, cannot split
    expected = {0: 1.0, 10: 3.0, 20: 5.0}
    assert refinement_frames(expected, 1.0, budget=1) in ([5], [15])
    assert refinement_frames(expected, 1.0, budget=0) == []
    assert 10 not in refinement_frames({0: 1.0, 10: None, 20: 5.0}, 1.0, budget=3)


def test_isotonic_is_monotone_and_keeps_the_mean():
    values = np.array([1.0, 3.0, 2.0, 2.0, 5.0, 4.0])
    fitted = isotonic(values)
    assert np.all(np.diff(fitted) >= 0)
    assert fitted.mean() == pytest.approx(values.mean())
    np.testing.assert_allclose(isotonic(np.array([1.0, 2.0, 3.0])), [1, 2, 3])


def test_fill_interpolates_between_keyframes():
    filled = fill_frames(11, {0: 1.0, 10: 5.0}, "isotonic")
    np.testing.assert_allclose(filled, np.linspace(1, 5, 11))
    dip = fill_frames(5, {0: 1.0, 2: 4.0, 4: 3.0}, "isotonic")
    assert np.all(np.diff(dip) >= 0)
    assert fill_frames(5, {0: 1.0, 2: 4.0, 4: 3.0}, "linear")[4] == 3.0
    assert np.isnan(fill_frames(4, {}, "isotonic")).all()


def test_naive_prefix_cost_is_quadratic():
    assert naive_prefix_cost([10]) == (10, 55)
    assert naive_prefix_cost([10, 20]) == (30, 55 + 210)


def test_temporal_clips_cut_inside_each_plateau_below_the_end():
    label = EpisodeLabels(0, 10, "do it")
    label.expected = np.array([1, 1, 2, 2, 2, 3, 3, 4, 5, 5], dtype=float)
    label.score = label.expected.astype(int)
    clips = temporal_clips({0: label})
    assert [(c.score, c.end) for c in clips] == [(1, 1), (2, 3), (3, 6), (4, 7)]
    assert all(c.start == 0 and c.origin == "temporal_clip" and c.instruction == "do it" for c in clips)


def test_step_keypoints_reproduce_step_labels_under_rewacts_interpolation():
    from common.reward_sources import keypoint_targets
    from common.scale import score_to_reward
    from labeling.output import step_keypoints

    score = np.array([1, 1, 2, 2, 2, 4, 4, 5, 5])
    keypoints = step_keypoints(score)
    np.testing.assert_allclose(keypoint_targets(len(score), keypoints), score_to_reward(score.astype(float)))
    assert keypoints[0] == 0.0 and keypoints[8] == 1.0


def test_unimodal_fill_keeps_a_regression_the_keyframes_show():
    # reached, then went back to the start: the last keyframes say so, the labels must too
    keyframes = {0: 1.0, 10: 2.5, 20: 4.8, 30: 5.0, 40: 2.0, 49: 1.2}
    kept = fill_frames(50, keyframes, "unimodal")
    assert kept[30] == pytest.approx(5.0) and kept[-1] == pytest.approx(1.2)
    assert np.all(np.diff(kept[:31]) >= 0) and np.all(np.diff(kept[30:]) <= 0)
    smeared = fill_frames(50, keyframes, "isotonic")
    assert smeared[-1] > 2.5  # the monotone fill hides the reset


def test_unimodal_fill_equals_isotonic_on_successes_and_small_dips():
    success = {0: 1.0, 10: 1.8, 20: 3.1, 30: 2.9, 40: 4.4, 49: 5.0}  # noise mid-way, ends at the top
    np.testing.assert_allclose(fill_frames(50, success, "unimodal"), fill_frames(50, success, "isotonic"))
    shaky_end = {0: 1.0, 20: 3.0, 40: 5.0, 49: 4.4}  # a fall of less than min_drop is noise
    np.testing.assert_allclose(fill_frames(50, shaky_end, "unimodal"), fill_frames(50, shaky_end, "isotonic"))
    assert fill_frames(50, shaky_end, "unimodal", min_drop=0.5)[-1] == pytest.approx(4.4)


def test_unimodal_is_the_best_rise_then_fall():
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = rng.uniform(1, 5, rng.integers(2, 12))
        fit = unimodal(values, min_drop=0.0)
        peak = int(np.argmax(fit))
        assert np.all(np.diff(fit[: peak + 1]) >= -1e-9) and np.all(np.diff(fit[peak:]) <= 1e-9)
        assert ((fit - values) ** 2).sum() <= ((isotonic(values) - values) ** 2).sum() + 1e-9

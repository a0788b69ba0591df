"""The keyframe scheme: keyframes, context clips, refinement, isotonic fill, naive cost."""

import numpy as np
import pytest

from labeling.clips import context_indices
from labeling.negatives import temporal_clips
from labeling.progress import fill_frames, initial_keyframes, isotonic, naive_prefix_cost, refinement_frames
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
    from labeling.output import score_to_reward, step_keypoints
    from rewact.labels import keypoint_targets

    score = np.array([1, 1, 2, 2, 2, 4, 4, 5, 5])
    keypoints = step_keypoints(score)
    np.testing.assert_allclose(keypoint_targets(len(score), keypoints), score_to_reward(score.astype(float)))
    assert keypoints[0] == 0.0 and keypoints[8] == 1.0

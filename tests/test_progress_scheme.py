"""The keyframe scheme: keyframes by duration, context clips, refinement, the fills, naive cost."""

from itertools import product

import numpy as np
import pytest

from common.cli import ConfigError
from labeling.clips import context_indices
from labeling.negatives import temporal_clips
from labeling.progress import (
    ProgressConfig,
    fill_frames,
    initial_keyframes,
    isotonic,
    next_keyframes,
    naive_prefix_cost,
    piecewise_monotone,
    refinement_frames,
)
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


def test_piecewise_fill_keeps_a_regression_the_keyframes_show():
    # reached, then went back to the start: the last keyframes say so, the labels must too
    keyframes = {0: 1.0, 10: 2.5, 20: 4.8, 30: 5.0, 40: 2.0, 49: 1.2}
    kept = fill_frames(50, keyframes, "piecewise")
    assert kept[30] == pytest.approx(5.0) and kept[-1] == pytest.approx(1.2)
    assert np.all(np.diff(kept[:31]) >= 0) and np.all(np.diff(kept[30:]) <= 0)
    smeared = fill_frames(50, keyframes, "isotonic")
    assert smeared[-1] > 2.5  # the monotone fill hides the reset


def test_piecewise_fill_keeps_a_slip_and_the_regrasp_after_it():
    # lifted, slipped to the table, regrasped, placed: rise, fall, rise
    keyframes = {0: 1.0, 10: 2.5, 20: 4.0, 25: 1.9, 30: 2.1, 40: 4.2, 49: 5.0}
    filled = fill_frames(50, keyframes, "piecewise")
    assert filled[-1] == pytest.approx(5.0)
    assert filled[25] < filled[20] - 1.5 and filled[25] < filled[40] - 1.5  # the dip survives, at its depth
    turns = np.flatnonzero(np.diff(np.sign(np.diff(filled[[0, 10, 20, 25, 30, 40, 49]]))))
    assert len(turns) == 2
    assert np.all(np.diff(fill_frames(50, keyframes, "isotonic")) >= 0)  # which isotonic cannot show


def test_piecewise_fill_equals_isotonic_on_successes_and_small_dips():
    success = {0: 1.0, 10: 1.8, 20: 3.1, 30: 2.9, 40: 4.4, 49: 5.0}  # noise mid-way, ends at the top
    np.testing.assert_allclose(fill_frames(50, success, "piecewise"), fill_frames(50, success, "isotonic"))
    shaky_end = {0: 1.0, 20: 3.0, 40: 5.0, 49: 4.4}  # a fall worth less than a turn is noise
    np.testing.assert_allclose(fill_frames(50, shaky_end, "piecewise"), fill_frames(50, shaky_end, "isotonic"))
    assert fill_frames(50, shaky_end, "piecewise", turn_penalty=0.1)[-1] == pytest.approx(4.4)
    lone_dip = {0: 1.0, 10: 4.0, 20: 3.4, 30: 4.0, 40: 5.0}  # one keyframe 0.6 down: smoothed
    assert np.all(np.diff(fill_frames(50, lone_dip, "piecewise")) >= 0)


def test_default_penalty_shows_a_one_level_dip_between_two_keyframes_and_smooths_smaller_ones():
    # the default (0.25, chosen on a validation split with slips): a lone keyframe must be 2*sqrt(0.25)
    # = 1 level below both neighbours, two in a row sqrt(3 * 0.25) = 0.87; an end must fall 0.71
    def shows_dip(values):
        filled = fill_frames(len(values) * 10, {10 * i: v for i, v in enumerate(values)}, "piecewise")
        return not np.all(np.diff(filled) >= -1e-9)

    assert shows_dip([1.0, 3.0, 1.9, 3.0, 5.0]) and not shows_dip([1.0, 3.0, 2.1, 3.0, 5.0])
    assert shows_dip([1.0, 3.0, 2.05, 2.05, 3.0, 5.0]) and not shows_dip([1.0, 3.0, 2.2, 2.2, 3.0, 5.0])
    assert shows_dip([1.0, 3.0, 5.0, 4.2]) and not shows_dip([1.0, 3.0, 5.0, 4.4])


def _best_by_enumeration(values: np.ndarray, penalty: float) -> float:
    """The least cost over every split into alternating monotone runs, rising first."""
    best = np.inf
    n = len(values)
    for cuts in product((False, True), repeat=n - 1):
        bounds = [0, *[i + 1 for i, c in enumerate(cuts) if c], n]
        for first in (0, 1):
            cost = penalty * (len(bounds) - 2 + first)
            for k, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
                run = values[a:b]
                fit = isotonic(run) if (k + first) % 2 == 0 else -isotonic(-run)
                cost += ((fit - run) ** 2).sum()
            best = min(best, cost)
    return best


def test_piecewise_monotone_is_the_exact_optimum():
    rng = np.random.default_rng(0)
    for _ in range(25):
        values = rng.uniform(1, 5, rng.integers(1, 8))
        penalty = float(rng.choice([0.0, 0.3, 1.0, 4.0]))
        fit = piecewise_monotone(values, penalty)
        runs = np.diff(fit)
        turns = np.count_nonzero(np.diff(np.sign(runs[np.abs(runs) > 1e-9]))) if len(runs) else 0
        falls_first = len(runs) and runs[np.abs(runs) > 1e-9][:1].sum() < 0
        cost = ((fit - values) ** 2).sum() + penalty * (turns + falls_first)
        assert cost <= _best_by_enumeration(values, penalty) + 1e-9
    values = rng.uniform(1, 5, 10)
    np.testing.assert_allclose(piecewise_monotone(values, 0.0), values)
    np.testing.assert_allclose(piecewise_monotone(values, 1e9), isotonic(values))


def test_refinement_probes_both_sides_of_a_dip_and_long_gaps_between_high_keyframes():
    dip = {0: 3.5, 100: 4.0, 200: 3.2, 300: 4.1, 400: 5.0}  # 200 is 0.8 down: no jump above the threshold
    assert refinement_frames(dip, threshold=1.0, budget=10) == [150, 250]
    assert refinement_frames(dip, threshold=1.0, budget=10, dip_threshold=1.0) == []
    slip_hidden = {0: 1.0, 100: 1.2, 200: 4.0, 300: 4.1, 400: 5.0}
    assert refinement_frames(slip_hidden, 1.0, budget=10) == [150]
    # gaps over 60 frames whose ends both leave room for a dip below them; 0-100 sits at the bottom
    assert refinement_frames(slip_hidden, 1.0, budget=10, max_gap=60) == [150, 250, 350]
    first_two = refinement_frames(slip_hidden, 1.0, budget=2, max_gap=60)
    assert len(first_two) == 2 and 150 in first_two  # the jump first


def test_keyframes_by_duration_between_a_floor_and_a_cap():
    today = ProgressConfig()
    assert ProgressConfig(keyframes_per_second=0.0).keyframe_counts(600, 20) == (6, 12)
    by_duration = ProgressConfig(keyframes_per_second=0.5, keyframe_cap=24)
    assert by_duration.keyframe_counts(40, 40) == (today.initial_keyframes, today.max_keyframes)  # 1 s: the floor
    assert by_duration.keyframe_counts(600, 20) == (15, 24)  # 30 s: 15, budget 30 capped
    assert ProgressConfig(max_gap_seconds=2.0).max_gap_frames(20) == 40
    assert ProgressConfig(max_gap_seconds=0.0).max_gap_frames(20) is None
    assert today.keyframe_counts(45, 40) == (6, 12)  # a MetaWorld episode: the floors, as before
    with pytest.raises(ConfigError):
        ProgressConfig(fill="unimodal")
    with pytest.raises(ConfigError):
        ProgressConfig(initial_keyframes=60, keyframe_cap=48)


def _keyframes_asked(truth: np.ndarray, fps: int, config: ProgressConfig) -> dict[int, float]:
    """The progress stage's keyframe loop, with the truth answering for the model."""
    length = len(truth)
    expected = {f: float(truth[f]) for f in initial_keyframes(length, config.keyframe_counts(length, fps)[0])}
    while new := next_keyframes(expected, length, fps, config):
        expected |= {f: float(truth[f]) for f in new}
    return expected


def test_a_2_second_slip_in_a_30_second_episode_is_found_and_filled():
    fps, length = 20, 600
    t = np.arange(length) / fps
    truth = np.clip(1 + t / 4, 1, 4)  # lifted by 12 s
    truth[(t >= 14) & (t < 16)] = 2.0  # slipped to the table for 2 s, regrasped
    truth[t >= 26] = 5.0  # placed
    coarse = _keyframes_asked(truth, fps, ProgressConfig(keyframes_per_second=0.0, max_gap_seconds=0.0))
    assert len(coarse) <= 12 and min(v for f, v in coarse.items() if 12 * fps < f < 26 * fps) == 4.0  # missed
    default = ProgressConfig()  # 0.25 keyframes per second, gaps over 2 s split
    asked = _keyframes_asked(truth, fps, default)
    assert len(asked) <= default.keyframe_counts(length, fps)[1] == 16
    filled = fill_frames(length, asked, default.fill, default.turn_penalty)
    dipped = np.flatnonzero(filled < 3.0)
    assert filled[-1] == 5.0 and len(dipped[dipped > 12 * fps]) > 0  # the dip is in the labels, at its depth
    assert np.all(np.abs(dipped[dipped > 12 * fps] / fps - 15) <= 2)  # and where it happened

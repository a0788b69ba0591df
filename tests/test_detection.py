"""Success detection on rollouts (training/evaluation/detection.py), on hand-made traces: the
threshold comes from the training successes, and every stop is counted as right, early or wrong."""

import numpy as np
import pytest

from training.evaluation.detection import RolloutTrace, detection_metrics, stop_when_done, training_threshold


def trace(reward, first_success=None):
    reward = np.array(reward, dtype=float)
    success = np.zeros(len(reward), dtype=bool)
    if first_success is not None:
        success[first_success:] = True
    return RolloutTrace(reward, success)


def test_threshold_is_what_95_percent_of_the_training_successes_reach():
    finals = np.linspace(0.5, 0.99, 20)  # 20 training successes: 19 of them (95 %) reach the second lowest
    assert training_threshold(finals) == pytest.approx(finals[1])
    assert training_threshold(np.array([0.9, 0.7]), recall=0.5) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="no episode a success"):
        training_threshold(np.array([]))


def test_stop_when_done_counts_right_early_wrong_and_never_stopped_successes():
    traces = [
        trace([0.1, 0.5, 0.95], first_success=2),  # crosses at the success frame: right
        trace([0.1, 0.95, 0.97, 0.99], first_success=3),  # crosses at 1, success at 3: early
        trace([0.2, 0.9, 0.4]),  # crosses, never succeeds: wrong
        trace([0.2, 0.3, 0.5], first_success=2),  # a success the head never reaches: never stopped
        trace([0.1, 0.2, 0.3]),  # a failure it never stops: nothing to count
    ]
    stops = stop_when_done(traces, threshold=0.9)
    assert {key: stops[key] for key in ("stops", "right", "early", "wrong", "never_stopped_successes")} == {
        "stops": 3, "right": 1, "early": 1, "wrong": 1, "never_stopped_successes": 1}
    assert stops["stop_right_rate"] == pytest.approx(1 / 3)
    low, high = stops["stop_right_ci95"]
    assert 0 < low < 1 / 3 < high < 1


def test_false_success_is_scored_at_the_given_threshold_not_one_fitted_to_the_rollouts():
    successes = [trace([0.2, r], first_success=1) for r in (0.8, 0.85, 0.9, 0.95)]
    failures = [trace([0.1, r]) for r in (0.3, 0.6, 0.82, 0.88)]
    metrics = detection_metrics(successes + failures, threshold=0.84, samples=200)
    assert metrics["auroc"][0] == pytest.approx(13 / 16)  # success > failure in 13 of 16 pairs
    assert metrics["false_success"][0] == pytest.approx(1 / 4)  # 0.88 reaches 0.84
    assert metrics["true_success"][0] == pytest.approx(3 / 4)  # 0.8 does not
    for name in ("auroc", "false_success", "true_success"):
        estimate, low, high = metrics[name]
        assert low <= estimate <= high
    assert metrics["final_reward"] == {"success": [0.8, 0.85, 0.9, 0.95], "failure": [0.3, 0.6, 0.82, 0.88]}
    # A threshold below every final reward calls every failure a success.
    assert detection_metrics(successes + failures, threshold=0.0, samples=10)["false_success"][0] == 1.0


def test_auroc_is_undefined_without_both_outcomes():
    metrics = detection_metrics([trace([0.1, 0.2]), trace([0.3, 0.4])], threshold=0.5, samples=10)
    assert np.isnan(metrics["auroc"][0]) and metrics["false_success"][0] == 0.0
    assert np.isnan(metrics["stop_when_done"]["stop_right_rate"])


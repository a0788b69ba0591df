"""Does a reward head know when a rollout is done? Success detection on closed-loop rollouts.

Per rollout the head's reward at every frame and the simulator's success flag per frame (the
ground-truth sidecar of a recorded rollout); a rollout succeeded when any frame is flagged (the
env ends an episode on its first success unless the rollout is run on past it):

- the final-frame reward's AUROC for rollout success, with a bootstrap 95 % interval over rollouts;
  and the same AUROC at matched frames: each success's last frame against every failure's frame
  of the same index. The env ends a success on its flag and a failure at the episode's length,
  so a head that only tells late frames from early ones scores well on the first and not on the
  second;
- the false-success rate at a threshold fixed before any rollout is seen: the final-frame reward
  that 95 % of the TRAINING episodes the labels call successes reach (`training_threshold`), so
  the threshold is what a user could have set, not one tuned on the rollouts it is scored on;
- "stop when the head says done": a rollout stops at the first frame whose reward reaches the
  threshold. The stop is right when the simulator has said success at or before that frame,
  early when the success comes later, and wrong when the rollout never succeeds; a success the
  head never reaches the threshold on is never stopped. Per rollout, the longest run of frames
  at or above the threshold: how long a rule that waits for the reward to stay there must wait.
  With a hold of k frames the stop is at the k-th frame in a row at or above the threshold
  (`hold_for` takes k from rollouts the head was trained on); scoring such a rule needs
  rollouts that go on past their success, or a success would end before its hold does.

A head learns "done" only if its labels hold it: `label_separation` scores the labels of the
rollouts a head trains on in the same way, at the frame each success is first flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.scale import reward_to_score
from training.evaluation.metrics import (RECALL_FOR_THRESHOLD, percentile_intervals, recall_threshold, resamples,
                                         weighted_auroc)
from training.evaluation.success import wilson_interval


@dataclass(frozen=True)
class RolloutTrace:
    reward: np.ndarray  # (T,) the reward head's estimate at each frame, in [0, 1]
    success: np.ndarray  # (T,) the simulator's success flag at each frame

    @property
    def succeeded(self) -> bool:
        return bool(self.success.any())

    @property
    def first_success(self) -> int | None:
        return int(np.argmax(self.success)) if self.success.any() else None

    def longest_run_above(self, threshold: float) -> int:
        """The most consecutive frames whose reward reaches `threshold`: the hold a "stop after k
        frames above it" rule would need to pass over this rollout."""
        above = np.concatenate([[0], (self.reward >= threshold).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(above))
        return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0

    def stop_frame(self, threshold: float, hold: int = 1) -> int | None:
        """The first frame that ends `hold` frames in a row whose reward reaches `threshold`: where a
        user would stop; None if no such frame."""
        above = np.concatenate([[0], np.cumsum(self.reward >= threshold)])
        held = np.flatnonzero(above[hold:] - above[:-hold] == hold)
        return int(held[0]) + hold - 1 if len(held) else None


def hold_for(failures: list[RolloutTrace], threshold: float) -> int:
    """The shortest hold at `threshold` that stops none of `failures`: one frame more than the
    longest stretch any of them stays at or above it."""
    return max((trace.longest_run_above(threshold) for trace in failures), default=0) + 1


def training_threshold(final_rewards_of_successes: np.ndarray, recall: float = RECALL_FOR_THRESHOLD) -> float:
    """The highest final-frame reward that `recall` of the training successes (as the labels call
    them) reach: the head's own idea of "done", taken before any rollout."""
    final = np.asarray(final_rewards_of_successes, dtype=float)
    if not len(final):
        raise ValueError("the training labels call no episode a success: no threshold to take from them")
    return recall_threshold(final, np.ones(len(final), dtype=bool), np.ones(len(final)), recall)


def stop_when_done(traces: list[RolloutTrace], threshold: float, hold: int = 1) -> dict[str, float | int]:
    """Where each rollout would stop at `threshold` after `hold` frames at or above it, counted as
    right, early or wrong (module docstring), and the successes it never stops; the share of stops
    that are right with its Wilson 95 % interval."""
    right = early = wrong = never_stopped_successes = 0
    for trace in traces:
        stop, success = trace.stop_frame(threshold, hold), trace.first_success
        if stop is None:
            never_stopped_successes += trace.succeeded
        elif success is not None and stop >= success:
            right += 1
        elif success is not None:
            early += 1
        else:
            wrong += 1
    stops = right + early + wrong
    low, high = wilson_interval(right, stops) if stops else (float("nan"), float("nan"))
    runs = {outcome: [trace.longest_run_above(threshold) for trace in traces if trace.succeeded == (outcome == "success")]
            for outcome in ("success", "failure")}
    return {"hold": hold, "stops": stops, "right": right, "early": early, "wrong": wrong,
            "never_stopped_successes": never_stopped_successes, "longest_run_above": runs,
            "stop_right_rate": right / stops if stops else float("nan"), "stop_right_ci95": (low, high)}


def by_outcome(traces: list[RolloutTrace]) -> tuple[list[RolloutTrace], list[RolloutTrace]]:
    """(successes, failures), each in the order given."""
    return [trace for trace in traces if trace.succeeded], [trace for trace in traces if not trace.succeeded]


def matched_frame_wins(traces: list[RolloutTrace], at_flag: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(wins, comparable), each (successes, failures): 1 where a success's final reward (with
    `at_flag`, its reward on its first flagged frame) is above the failure's reward on the same
    frame index, 0.5 on a tie; comparable where the failure lasted that long."""
    successes, failures = by_outcome(traces)
    wins = np.zeros((len(successes), len(failures)))
    comparable = np.zeros((len(successes), len(failures)), dtype=bool)
    for i, success in enumerate(successes):
        frame = success.first_success if at_flag else len(success.reward) - 1
        value = success.reward[frame]
        for j, failure in enumerate(failures):
            if len(failure.reward) > frame:
                comparable[i, j] = True
                wins[i, j] = (value > failure.reward[frame]) + 0.5 * (value == failure.reward[frame])
    return wins, comparable


def matched_auroc(weights: np.ndarray, success: np.ndarray, wins: np.ndarray, comparable: np.ndarray) -> float:
    """The share of comparable (success, failure) pairs a success wins, each pair weighted by
    its two rollouts' bootstrap weights."""
    pairs = weights[success][:, None] * weights[~success][None, :] * comparable
    return (pairs * wins).sum() / pairs.sum() if pairs.sum() else float("nan")


def detection_metrics(traces: list[RolloutTrace], threshold: float, samples: int = 1000,
                      seed: int = 0, hold: int = 1) -> dict[str, object]:
    """Final-frame AUROC (also at matched frames), and the false- and true-success rates at `threshold`, each as
    (estimate, low, high) over `samples` bootstrap resamples of the rollouts; the stop accounting
    with a hold of `hold` frames."""
    final = np.array([trace.reward[-1] for trace in traces], dtype=float)
    success = np.array([trace.succeeded for trace in traces], dtype=bool)
    says_done = final >= threshold
    wins, comparable = matched_frame_wins(traces)

    def rates(weights: np.ndarray) -> dict[str, float]:
        failures, successes = (weights * ~success).sum(), (weights * success).sum()
        return {"auroc": weighted_auroc(final, success, weights),
                "matched_frame_auroc": matched_auroc(weights, success, wins, comparable),
                "false_success": (weights * (says_done & ~success)).sum() / failures if failures else float("nan"),
                "true_success": (weights * (says_done & success)).sum() / successes if successes else float("nan")}

    intervals = percentile_intervals(rates(np.ones(len(traces))),
                                     [rates(weights) for weights in resamples(len(traces), samples, seed)])
    return {"rollouts": len(traces), "successes": int(success.sum()), "threshold": float(threshold), **intervals,
            "stop_when_done": stop_when_done(traces, threshold, hold),
            "final_reward": {"success": final[success].tolist(), "failure": final[~success].tolist()}}


def label_separation(traces: list[RolloutTrace], called_success: np.ndarray, samples: int = 1000,
                     seed: int = 0) -> dict[str, object]:
    """Do the labels a head learns from tell success from failure? `traces` carry the labels (as
    rewards) of recorded rollouts, `called_success` the labels' verdict per rollout. Each
    success's label on its first flagged frame against every failure's label on the same frame:
    the AUROC (bootstrap 95 % over rollouts) and those labels as 1-5 scores; and how many
    successes and failures the verdicts call a success."""
    success = np.array([trace.succeeded for trace in traces], dtype=bool)
    called = np.asarray(called_success, dtype=bool)
    wins, comparable = matched_frame_wins(traces, at_flag=True)
    intervals = percentile_intervals(
        {"auroc_at_flag": matched_auroc(np.ones(len(traces)), success, wins, comparable)},
        [{"auroc_at_flag": matched_auroc(weights, success, wins, comparable)}
         for weights in resamples(len(traces), samples, seed)])
    successes, failures = by_outcome(traces)
    at_flag = {"success": [trace.reward[trace.first_success] for trace in successes],
               "failure": [failure.reward[success.first_success] for success in successes for failure in failures
                           if len(failure.reward) > success.first_success]}
    return {"rollouts": len(traces), "successes": int(success.sum()), **intervals,
            "score_at_flag": {outcome: reward_to_score(values).tolist() for outcome, values in at_flag.items()},
            "called_success": {"success": int(called[success].sum()), "failure": int(called[~success].sum())}}

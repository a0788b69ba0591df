"""How well a per-frame reward matches the truth, with bootstrap confidence intervals.

Rewards are in [0, 1]; on the 1-5 rubric scale a reward r reads as 1 + 4r (the inverse of
how labels are stored, `next.reward = (score - 1) / 4`). Per source:

- per frame: MAE on the 1-5 scale, exact and within-one accuracy of round(1 + 4r);
- value order: Spearman and Kendall tau of the predicted reward against the true progress
  within each episode, averaged over episodes (a constant prediction carries no order: 0);
  and VOC as GVL defines it, the Spearman of the predicted reward with frame order,
  averaged over successful episodes;
- failure detection from the final frame: AUROC of the final reward separating successes
  from failures, F1 and false-success rate of "final score rounds to 5", overall and per
  failure kind; and the false-success rate at the threshold that recognises 95 % of the
  true successes (like FPR at fixed TPR), with that threshold;
- 95 % bootstrap intervals, resampling episodes; and for two sources on the same episodes,
  the interval of their difference from the same resamples (paired), which can separate two
  sources whose own intervals overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau, spearmanr

from common.scale import nearest_score, reward_to_score

SUCCESS_SCORE = 5
RECALL_FOR_THRESHOLD = 0.95


@dataclass
class EpisodeTruth:
    index: int
    progress: np.ndarray  # (T,) true progress in [0, 1]
    score: np.ndarray  # (T,) true 1-5 score
    success: bool
    kind: str  # "success", or the failure kind


def order_correlations(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(Spearman, Kendall tau); 0 when either side is constant (no order to compare)."""
    if np.ptp(predicted) == 0 or np.ptp(truth) == 0:
        return 0.0, 0.0
    return float(spearmanr(predicted, truth).statistic), float(kendalltau(predicted, truth).statistic)


@dataclass
class PerEpisode:
    """Per-episode statistics; every metric is a weighted aggregate of these."""

    frames: np.ndarray
    abs_error: np.ndarray  # summed over the episode's frames
    exact: np.ndarray
    within_one: np.ndarray
    spearman: np.ndarray
    kendall: np.ndarray
    voc: np.ndarray  # Spearman with frame order
    final: np.ndarray  # final-frame reward
    success: np.ndarray
    kinds: np.ndarray


def per_episode(episodes: list[EpisodeTruth], rewards: dict[int, np.ndarray]) -> PerEpisode:
    rows = []
    for e in episodes:
        predicted = reward_to_score(rewards[e.index])
        rounded = nearest_score(rewards[e.index])
        rows.append((len(e.score), np.abs(predicted - e.score).sum(), (rounded == e.score).sum(),
                     (np.abs(rounded - e.score) <= 1).sum(), *order_correlations(rewards[e.index], e.progress),
                     order_correlations(rewards[e.index], np.arange(len(e.score), dtype=float))[0],
                     rewards[e.index][-1]))
    columns = [np.array(c, dtype=float) for c in zip(*rows, strict=True)]
    return PerEpisode(*columns, success=np.array([e.success for e in episodes]),
                      kinds=np.array([e.kind for e in episodes]))


def weighted_auroc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> float:
    pos, neg = positive & (weights > 0), ~positive & (weights > 0)
    if not pos.any() or not neg.any():
        return float("nan")
    pair = weights[pos][:, None] * weights[neg][None, :]
    wins = (scores[pos][:, None] > scores[neg][None, :]) + 0.5 * (scores[pos][:, None] == scores[neg][None, :])
    return float((pair * wins).sum() / pair.sum())


def aggregate(stats: PerEpisode, weights: np.ndarray) -> dict[str, float]:
    """Metrics of the episodes taken `weights` times each (all ones: the point estimate)."""
    frames = (weights * stats.frames).sum()
    says_success = nearest_score(stats.final) == SUCCESS_SCORE
    failures = ~stats.success
    tp = (weights * (says_success & stats.success)).sum()
    fp = (weights * (says_success & failures)).sum()
    fn = (weights * (~says_success & stats.success)).sum()
    metrics = {
        "mae": (weights * stats.abs_error).sum() / frames,
        "exact": (weights * stats.exact).sum() / frames,
        "within_one": (weights * stats.within_one).sum() / frames,
        "spearman": (weights * stats.spearman).sum() / weights.sum(),
        "kendall": (weights * stats.kendall).sum() / weights.sum(),
        "auroc": weighted_auroc(stats.final, stats.success, weights),
        "voc": (weights * stats.voc * stats.success).sum() / (weights * stats.success).sum()
        if (weights * stats.success).sum() else float("nan"),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
        "false_success_rate": _rate(weights, says_success, failures),
    }
    threshold = recall_threshold(stats.final, stats.success, weights, RECALL_FOR_THRESHOLD)
    metrics["success_threshold_at_95"] = threshold
    metrics["false_success_at_95"] = _rate(weights, stats.final >= threshold, failures)
    for kind in sorted(set(stats.kinds[failures])):
        picked = stats.success | (stats.kinds == kind)
        metrics[f"auroc[{kind}]"] = weighted_auroc(stats.final, stats.success, weights * picked)
        metrics[f"false_success_rate[{kind}]"] = _rate(weights, says_success, stats.kinds == kind)
    return {name: float(value) for name, value in metrics.items()}


def recall_threshold(final: np.ndarray, success: np.ndarray, weights: np.ndarray, recall: float) -> float:
    """The highest final reward that at least `recall` of the (weighted) successes reach."""
    picked = success & (weights > 0)
    if not picked.any():
        return float("nan")
    order = np.argsort(-final[picked])
    values, share = final[picked][order], np.cumsum(weights[picked][order]) / weights[picked].sum()
    return float(values[np.searchsorted(share, recall - 1e-9)])


def _rate(weights: np.ndarray, hit: np.ndarray, among: np.ndarray) -> float:
    total = (weights * among).sum()
    return (weights * (hit & among)).sum() / total if total else float("nan")


def episode_metrics(episodes: list[EpisodeTruth], rewards: dict[int, np.ndarray]) -> dict[str, float]:
    """All metrics of one source over `episodes` (point estimates)."""
    return aggregate(per_episode(episodes, rewards), np.ones(len(episodes)))


def bootstrap(episodes: list[EpisodeTruth], rewards: dict[int, np.ndarray], samples: int = 1000,
              seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """(estimate, low, high) per metric; the interval is the 2.5-97.5 percentile over resampled episodes."""
    stats = per_episode(episodes, rewards)
    return percentile_intervals(aggregate(stats, np.ones(len(episodes))),
                                [aggregate(stats, weights) for weights in resamples(len(episodes), samples, seed)])


def paired_bootstrap(episodes: list[EpisodeTruth], rewards_a: dict[int, np.ndarray], rewards_b: dict[int, np.ndarray],
                     samples: int = 1000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """(estimate, low, high) of metric(a) - metric(b) per metric, both scored on the same resampled episodes."""
    stats_a, stats_b = per_episode(episodes, rewards_a), per_episode(episodes, rewards_b)

    def difference(weights: np.ndarray) -> dict[str, float]:
        a, b = aggregate(stats_a, weights), aggregate(stats_b, weights)
        return {name: a[name] - b[name] for name in a if name in b}

    return percentile_intervals(difference(np.ones(len(episodes))),
                                [difference(weights) for weights in resamples(len(episodes), samples, seed)])


def dip(score: np.ndarray) -> tuple[int, float]:
    """(frame, depth) of a 1-5 score sequence's deepest dip: the frame furthest below both the
    highest score before it and the highest after it (a fall that is recovered from); depth 0
    when the sequence never falls and rises again."""
    before, after = np.maximum.accumulate(score), np.maximum.accumulate(score[::-1])[::-1]
    depth = np.minimum(before, after) - score
    frame = int(np.argmax(depth))
    return frame, float(depth[frame])


def dip_visible(labels: np.ndarray, truth: np.ndarray) -> bool:
    """Labels (1-5) of an episode whose truth dips show a dip of at least a level whose bottom is
    within one level of the true bottom."""
    true_frame, _ = dip(truth)
    frame, depth = dip(labels)
    return bool(depth >= 1 and abs(labels[frame] - truth[true_frame]) <= 1)


def dip_recovered(labels: np.ndarray, truth: np.ndarray) -> bool:
    """The dip is visible and the labels end at the top score: a slip, then success."""
    return bool(labels[-1] == SUCCESS_SCORE and dip_visible(labels, truth))


def dipping_successes(episodes: list[EpisodeTruth]) -> list[EpisodeTruth]:
    """The successes whose truth dips by a level or more: the episodes `dip_hits` scores."""
    return [e for e in episodes if e.success and dip(e.score)[1] >= 1]


def dip_hits(episodes: list[EpisodeTruth], labels: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Of `dipping_successes`, per episode: do its labels (1-5) show the dip (`dip_visible`),
    and do they also end at the top score (`dip_recovered`)."""
    dips = dipping_successes(episodes)
    return (np.array([dip_visible(labels[e.index], e.score) for e in dips], dtype=float),
            np.array([dip_recovered(labels[e.index], e.score) for e in dips], dtype=float))


def bootstrap_share(hits: np.ndarray, samples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(share, low, high) of per-episode hits, the interval over resampled episodes."""
    draws = [{"share": float((w * hits).sum() / w.sum())} for w in resamples(len(hits), samples, seed)]
    return percentile_intervals({"share": float(np.mean(hits))}, draws)["share"]


def resamples(episodes: int, samples: int, seed: int) -> list[np.ndarray]:
    """How many times each episode is drawn, per bootstrap resample."""
    rng = np.random.default_rng(seed)
    return [np.bincount(rng.integers(0, episodes, episodes), minlength=episodes) for _ in range(samples)]


def percentile_intervals(estimate: dict[str, float], draws: list[dict[str, float]]) -> dict[str, tuple[float, float, float]]:
    """(estimate, 2.5th, 97.5th percentile of the draws) per metric; draws where it is undefined are left out."""
    intervals = {}
    for name, value in estimate.items():
        values = np.array([draw[name] for draw in draws])
        finite = values[np.isfinite(values)]
        low, high = (np.percentile(finite, [2.5, 97.5]) if len(finite) else (np.nan, np.nan))
        intervals[name] = (value, float(low), float(high))
    return intervals


def agreement(rewards_a: dict[int, np.ndarray], rewards_b: dict[int, np.ndarray]) -> dict[str, float]:
    """Without ground truth: how much two sources agree (MAE on the 1-5 scale, mean Spearman)."""
    episodes = sorted(rewards_a)
    mae = np.mean(np.concatenate([np.abs(reward_to_score(rewards_a[e]) - reward_to_score(rewards_b[e])) for e in episodes]))
    spearman = np.mean([order_correlations(rewards_a[e], rewards_b[e])[0] for e in episodes])
    return {"mae": float(mae), "spearman": float(spearman)}

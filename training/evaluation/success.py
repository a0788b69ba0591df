"""Success rates of closed-loop rollouts, with Wilson score intervals.

With tens of rollouts per policy a rate's normal-approximation interval leaves [0, 1] and
collapses to a point at 0 % or 100 %; Wilson's stays inside and keeps a width. Two policies
rolled out from the same seeds are compared by a paired interval.
"""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate (95 % by default)."""
    if trials <= 0:
        raise ValueError("a success rate needs at least one trial")
    rate = successes / trials
    centre = (rate + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def success_summary(successes: list[bool]) -> dict[str, float | int]:
    """Rate and its 95 % interval over `successes` (one per rollout)."""
    low, high = wilson_interval(sum(successes), len(successes))
    return {"episodes": len(successes), "successes": sum(successes), "success_rate": sum(successes) / len(successes),
            "ci95_low": low, "ci95_high": high}


def paired_difference(successes: np.ndarray, baseline: np.ndarray, samples: int = 2000,
                      seed: int = 0) -> dict[str, float]:
    """Success rate of `successes` minus `baseline`, both (training seeds, rollout seeds) with the
    rollout seeds in the same order. Its 95 % interval resamples each side's training seeds (how
    much a policy depends on its training run) and the rollout seeds, shared by both sides (a
    paired bootstrap, so the luck of a start state that every policy shares cancels out)."""
    if successes.shape[1] != baseline.shape[1]:
        raise ValueError("a paired difference needs the same rollout seeds on both sides")
    rng = np.random.default_rng(seed)

    def over_training_seeds(outcomes: np.ndarray) -> np.ndarray:
        """(samples, rollout seeds): per draw, the mean over resampled training seeds."""
        return outcomes.astype(float)[rng.integers(0, len(outcomes), size=(samples, len(outcomes)))].mean(axis=1)

    differences = over_training_seeds(successes) - over_training_seeds(baseline)
    rollouts = rng.integers(0, successes.shape[1], size=(samples, successes.shape[1]))
    means = np.take_along_axis(differences, rollouts, axis=1).mean(axis=1)
    mean = float(successes.mean(dtype=float) - baseline.mean(dtype=float))
    return {"mean": mean, "ci95_low": float(np.quantile(means, 0.025)), "ci95_high": float(np.quantile(means, 0.975))}

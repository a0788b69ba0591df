"""Success rates of closed-loop rollouts, with Wilson score intervals.

With tens of rollouts per policy a rate's normal-approximation interval leaves [0, 1] and
collapses to a point at 0 % or 100 %; Wilson's stays inside and keeps a width.
"""

from __future__ import annotations

import math

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

"""The 1-5 progress scale (RoboReward's rubric) and its mapping to rewards in [0, 1].

Every label, metric and model answer in this project is on this scale; a score s is stored
as the reward (s - 1) / 4, and a reward r reads back as the score 1 + 4r.
"""

from __future__ import annotations

import numpy as np

SCORE_NAMES = {
    1: "No Success",
    2: "Minimal Progress",
    3: "Partial Completion",
    4: "Near Completion",
    5: "Perfect Completion",
}
SCORES = tuple(SCORE_NAMES)
LOWEST, HIGHEST = SCORES[0], SCORES[-1]


def score_to_reward(score):
    """Score(s) in [1, 5] (discrete or expected) -> reward(s) in [0, 1]."""
    return np.clip((np.asarray(score, dtype=np.float64) - LOWEST) / (HIGHEST - LOWEST), 0.0, 1.0)


def reward_to_score(reward):
    """Reward(s) in [0, 1] -> score(s) on the continuous 1-5 scale."""
    return LOWEST + (HIGHEST - LOWEST) * np.clip(np.asarray(reward, dtype=np.float64), 0.0, 1.0)


def nearest_score(reward):
    """Reward(s) in [0, 1] -> the nearest discrete score(s), ints 1-5."""
    return np.rint(reward_to_score(reward)).astype(int)

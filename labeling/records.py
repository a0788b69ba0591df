"""Typed records passed between labeling stages and written to the sidecar."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TaskRewrite:
    original: str
    instruction: str  # the original when rewriting failed or was skipped
    paraphrases: tuple[str, ...] = ()
    reason: str | None = None  # why the original was kept


@dataclass
class KeyframeScore:
    frame: int
    context: tuple[int, ...]  # frames shown to the model, ending at `frame`
    score: int | None  # argmax of `probs`, or the parsed answer
    expected: float | None  # expectation over `probs`, or the parsed answer
    probs: tuple[float, ...] | None = None
    reason: str | None = None  # why score is None
    source: str = "model"  # "model", or "validator" after a relabel in rubric validation


@dataclass
class EpisodeLabels:
    episode: int
    length: int
    instruction: str
    keyframes: dict[int, KeyframeScore] = field(default_factory=dict)
    expected: np.ndarray | None = None  # (T,) float in [1, 5]; NaN where unlabeled
    score: np.ndarray | None = None  # (T,) int in 1..5; 0 where unlabeled

    @property
    def labeled(self) -> bool:
        return self.expected is not None and not np.isnan(self.expected).any()


@dataclass
class NegativeRecord:
    id: str
    episode: int
    start: int
    end: int  # inclusive
    instruction: str
    score: int  # intended score, 1-4
    origin: str  # "counterfactual" or "temporal_clip"
    status: str = "proposed"  # then "kept", "relabelled", "dropped" or "unverified"
    final_score: int | None = None


@dataclass(frozen=True)
class Verdict:
    target: str  # "negative" or "progress"
    target_id: str
    episode: int
    frame: int
    instruction: str
    proposed_score: int
    consistent: bool | None
    model_score: int | None
    action: str  # "keep", "relabel", "drop" or "unverified"
    reason: str | None = None

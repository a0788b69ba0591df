"""ACTvantage's processors: ACT's default pipelines plus a step that attaches each training
frame's advantage condition (+1 positive, -1 negative) from the advantage table
(`common.advantages`, written by `python -m training.advantage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from lerobot.processor import (
    EnvTransition,
    ProcessorStepRegistry,
    TransitionKey,
)

from common.advantages import AdvantageError, default_path, read_advantages
from rewact.configuration_actvantage import ACTvantageConfig
from rewact.labels import episode_spans
from rewact.processor_act_base import (ACTPipelines, DatasetStats, FrameDataStep, make_act_pipelines,
                                      training_dataset_meta)

ADVANTAGE = "advantage"


def advantage_conditions(path: str, dataset_meta) -> torch.Tensor:
    """+1 / -1 per global frame index, checked to cover every frame of every episode."""
    table = read_advantages(path, dataset_meta.root)
    spans = episode_spans(dataset_meta)
    start = {s.index: s.start for s in spans}
    index = table["index"].to_numpy(dtype=np.int64)
    placed = table["episode_index"].map(start).to_numpy(dtype=np.float64) + table["frame_index"].to_numpy()
    expected = np.concatenate([np.arange(s.start, s.start + s.length) for s in spans])
    if not np.array_equal(placed, index) or not np.array_equal(np.sort(index), expected):
        raise AdvantageError(
            f"{path} does not fit this dataset ({len(index)} rows for its {len(expected)} frames, or other "
            f"episodes); recompute it with `python -m training.advantage` for this dataset"
        )
    conditions = torch.zeros(max(s.start + s.length for s in spans), dtype=torch.float32)
    positive = table["positive"].to_numpy(dtype=bool)
    conditions[torch.from_numpy(index)] = torch.from_numpy(np.where(positive, 1.0, -1.0).astype(np.float32))
    return conditions


@ProcessorStepRegistry.register(name="actvantage_advantage_condition")
@dataclass
class AdvantageConditionStep(FrameDataStep):
    """Sets each training sample's advantage condition from its global frame `index`."""

    advantage_path: str | None = None
    conditions: torch.Tensor | None = field(default=None, repr=False)

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        index = self.frame_index(transition)
        if self.conditions is None or index is None:
            return transition
        transition = dict(transition)
        extra = transition[TransitionKey.COMPLEMENTARY_DATA]
        transition[TransitionKey.COMPLEMENTARY_DATA] = {**extra, ADVANTAGE: self.conditions[index]}
        return transition

    def get_config(self) -> dict[str, Any]:
        return {"advantage_path": self.advantage_path}


def make_actvantage_pre_post_processors(config: ACTvantageConfig, dataset_stats: DatasetStats | None = None,
                                        dataset_meta: Any | None = None) -> ACTPipelines:
    dataset_meta = training_dataset_meta(config, dataset_meta)
    conditions = None
    path = config.advantage_path
    if dataset_meta is not None:
        path = str(path or default_path(dataset_meta.root))
        conditions = advantage_conditions(path, dataset_meta)
    return make_act_pipelines(config, dataset_stats, AdvantageConditionStep(advantage_path=path, conditions=conditions))

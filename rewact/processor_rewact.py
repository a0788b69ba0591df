"""RewACT's processors: ACT's default pipelines plus a step that attaches reward targets,
built from the configured label source when training (`rewact.processor_act_base`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lerobot.processor import (
    EnvTransition,
    ProcessorStepRegistry,
    TransitionKey,
)

from rewact.configuration_rewact import RewACTConfig
from rewact.labels import RewardTable, build_reward_table
from rewact.processor_act_base import (ACTPipelines, DatasetStats, FrameDataStep, make_act_pipelines,
                                      training_dataset_meta)

REWARD_LABELED = "reward_labeled"
REWARD_IMITATE = "reward_imitate"
REWARD_WEIGHT = "reward_weight"


@ProcessorStepRegistry.register(name="rewact_reward_targets")
@dataclass
class RewardTargetStep(FrameDataStep):
    """Sets `next.reward` (and masks) of each training sample from its global frame `index`."""

    label_source: str = "interpolation"
    table: RewardTable | None = field(default=None, repr=False)

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        index = self.frame_index(transition)
        if self.table is None or index is None:
            return transition
        reward, labeled, imitate, weight = self.table.lookup(index)
        transition = dict(transition)
        extra = transition[TransitionKey.COMPLEMENTARY_DATA]
        transition[TransitionKey.REWARD] = reward
        transition[TransitionKey.COMPLEMENTARY_DATA] = {**extra, REWARD_LABELED: labeled, REWARD_IMITATE: imitate,
                                                        REWARD_WEIGHT: weight}
        return transition

    def get_config(self) -> dict[str, Any]:
        return {"label_source": self.label_source}


def make_rewact_pre_post_processors(config: RewACTConfig, dataset_stats: DatasetStats | None = None,
                                    dataset_meta: Any | None = None) -> ACTPipelines:
    dataset_meta = training_dataset_meta(config, dataset_meta)
    table = build_reward_table(config, dataset_meta) if dataset_meta is not None else None
    return make_act_pipelines(config, dataset_stats, RewardTargetStep(label_source=config.label_source, table=table))

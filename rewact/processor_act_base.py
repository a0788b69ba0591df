"""The processor pipelines RewACT and ACTvantage share: ACT's defaults behind one step of their
own that attaches per-frame training data (reward targets, advantage conditions) by the
sample's global frame `index`.

Stock `lerobot-train` calls `make_<type>_pre_post_processors(config, dataset_stats=...)` after
`make_policy(cfg, ds_meta=...)`, which leaves the dataset metadata on the config as
`_runtime_dataset_meta`. With metadata (training) the step builds its table; without it (a
reloaded checkpoint, inference) it passes batches through untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import PipelineFeatureType, PolicyFeature
from lerobot.processor import EnvTransition, PolicyAction, PolicyProcessorPipeline, ProcessorStep, TransitionKey
from lerobot.processor.factory import make_default_policy_processor_steps, make_policy_processor_pipelines


class FrameDataStep(ProcessorStep):
    """Base of the steps that add training data by frame: they change no feature, and a batch
    without `index` (inference) has nothing to look up."""

    @staticmethod
    def frame_index(transition: EnvTransition) -> torch.Tensor | None:
        extra = transition.get(TransitionKey.COMPLEMENTARY_DATA) or {}
        return torch.as_tensor(extra["index"]).long().cpu() if "index" in extra else None

    def transform_features(
        self, features: dict[PipelineFeatureType, dict[str, PolicyFeature]]
    ) -> dict[PipelineFeatureType, dict[str, PolicyFeature]]:
        return features


def training_dataset_meta(config: PreTrainedConfig, dataset_meta: Any | None) -> Any | None:
    """The dataset metadata a training run's processors were given, or left on the config."""
    return dataset_meta if dataset_meta is not None else getattr(config, "_runtime_dataset_meta", None)


# The pre- and post-processor pipelines LeRobot's factory expects from a policy's processor maker.
ACTPipelines = tuple[PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
                     PolicyProcessorPipeline[PolicyAction, PolicyAction]]
DatasetStats = dict[str, dict[str, torch.Tensor]]


def make_act_pipelines(config: PreTrainedConfig, dataset_stats: DatasetStats | None,
                       frame_step: ProcessorStep) -> ACTPipelines:
    """ACT's default pre/post-processors with `frame_step` first, while the batch still has `index`."""
    s = make_default_policy_processor_steps(config, dataset_stats, normalizer_device=config.device)
    return make_policy_processor_pipelines(
        input_steps=[frame_step, s.rename_observations, s.add_batch_dim, s.to_device, s.normalize],
        output_steps=[s.unnormalize, s.to_cpu],
    )

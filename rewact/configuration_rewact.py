"""Configuration of RewACT, registered with LeRobot as policy type `rewact`."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.act.configuration_act import ACTConfig

from common.reward_sources import INTERPOLATION_SPAN, NEEDS_PATH, TRAINING_SOURCES
from rewact.vision_encoder import VisionEncoderOptions

LABEL_SOURCES = TRAINING_SOURCES
REWARD_HEADS = ("distributional", "scalar")
# What the reward head reads: rewACT's decoder output token for the current step, or the mean of
# the transformer encoder's image tokens (the scene, before it is turned into actions).
REWARD_FEATURE_CHOICES = ("decoder", "encoder_images")
TARGET_ENCODINGS = ("hl_gauss", "two_hot")
# How the reward loss weighs frames: all alike, or each of `reward_balance_bins` equal slices of
# the reward range alike (inverse label frequency), so the few frames at the end of a success or
# a failure are not outvoted by the many mid-episode ones.
REWARD_BALANCES = ("none", "label_frequency")


@PreTrainedConfig.register_subclass("rewact")
@dataclass
class RewACTConfig(VisionEncoderOptions, ACTConfig):
    """ACT's configuration plus the reward head, where its training targets come from, and the
    image encoder (`VisionEncoderOptions`: ACT's ResNet or a pretrained DINOv3).

    Label sources (`label_source`, with `labels_path` for keypoints and labels), as every tool
    here names them (`common.reward_sources`):
      interpolation  rewACT's linear 0 -> 1 ramp between `interpolation_start` and `_end`
      keypoints      rewACT-style keypoint JSON at `labels_path`, interpolated between keys
      dataset        the dataset's own `next.reward` column (what `labeling.run` writes)
      labels         a `labeling.run` output directory, or a parquet of
                     (episode_index, frame_index, reward[, imitate]), at `labels_path`
      ground_truth   the simulator sidecar of a generated benchmark (experiments only)
    """

    reward_head: str = "distributional"
    reward_bins: int = 51
    reward_value_range: tuple[float, float] = (0.0, 1.0)
    reward_target_encoding: str = "hl_gauss"
    # HL-Gauss sigma as a multiple of the bin width (0.75 as in Farebrother et al. 2024).
    hl_gauss_sigma_bins: float = 0.75
    reward_loss_weight: float = 1.0
    # Width of the reward MLP's hidden layers as fractions of dim_model (rewACT: 1/2, 1/4).
    reward_hidden_fractions: tuple[float, ...] = (0.5, 0.25)
    reward_features: str = "decoder"
    reward_balance: str = "none"
    reward_balance_bins: int = 5

    label_source: str = "interpolation"
    labels_path: str | None = None
    interpolation_start: float = INTERPOLATION_SPAN[0]
    interpolation_end: float = INTERPOLATION_SPAN[1]
    # Train on datasets where some episodes have no labels (their frames skip the reward loss).
    skip_unlabeled_episodes: bool = False
    # Which episodes are failures (reward loss only, no imitation). Labels from a `labeling.run`
    # output (`dataset` on one, or `labels` on its directory) carry the run's outcome verdicts,
    # and those decide. Otherwise episodes whose labels end below this value are failures;
    # None: 1.0 for ground_truth (only simulator successes end at 1), else 0.0 (imitate all).
    imitate_min_final_reward: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.reward_head not in REWARD_HEADS:
            raise ValueError(f"reward_head must be one of {REWARD_HEADS}, got '{self.reward_head}'")
        if self.reward_features not in REWARD_FEATURE_CHOICES:
            raise ValueError(
                f"reward_features must be one of {REWARD_FEATURE_CHOICES}, got '{self.reward_features}'"
            )
        if self.reward_target_encoding not in TARGET_ENCODINGS:
            raise ValueError(
                f"reward_target_encoding must be one of {TARGET_ENCODINGS}, got '{self.reward_target_encoding}'"
            )
        if self.reward_balance not in REWARD_BALANCES:
            raise ValueError(f"reward_balance must be one of {REWARD_BALANCES}, got '{self.reward_balance}'")
        if self.reward_balance_bins < 1:
            raise ValueError(f"reward_balance_bins must be >= 1, got {self.reward_balance_bins}")
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got '{self.label_source}'")
        if self.label_source in NEEDS_PATH and not self.labels_path:
            raise ValueError(f"label_source '{self.label_source}' needs --policy.labels_path")
        low, high = self.reward_value_range
        if not low < high:
            raise ValueError(f"reward_value_range must be increasing, got {self.reward_value_range}")
        if self.reward_bins < 2:
            raise ValueError(f"reward_bins must be >= 2, got {self.reward_bins}")
        if not 0.0 <= self.interpolation_start < self.interpolation_end <= 1.0:
            raise ValueError("need 0 <= interpolation_start < interpolation_end <= 1")
        if self.reward_loss_weight < 0:
            raise ValueError("reward_loss_weight must be >= 0")

    def validate_features(self) -> None:
        """Checked once the dataset's features are set (after `__post_init__`)."""
        super().validate_features()
        if self.reward_features == "encoder_images" and not self.image_features:
            raise ValueError("reward_features 'encoder_images' needs image features")

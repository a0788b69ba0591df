"""Configuration of ACTvantage, registered with LeRobot as policy type `actvantage`."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.act.configuration_act import ACTConfig

from rewact.vision_encoder import VisionEncoderOptions


@PreTrainedConfig.register_subclass("actvantage")
@dataclass
class ACTvantageConfig(VisionEncoderOptions, ACTConfig):
    """ACT's configuration plus an advantage condition (advantage-conditioned policies in the
    style of pi*0.6): one extra encoder token carries a scalar condition. Its image encoder is
    chosen like RewACT's (`VisionEncoderOptions`: ACT's ResNet or a pretrained DINOv3).

    Training conditions each frame on its binarised advantage, +1 or -1, from the table
    `python -m training.advantage` writes (`advantage_path`; default: `advantages.parquet` in
    the dataset's root), so low-advantage frames are imitated too, labelled as such. With
    probability `advantage_dropout_prob` a training condition is replaced by 0 (unconditioned),
    which teaches the unconditioned policy classifier-free guidance needs.

    At inference the condition is `inference_advantage` (ask for high-advantage behaviour), and
    with `cfg_gamma` != 1 the action chunk is a_uncond + cfg_gamma * (a_cond - a_uncond).
    """

    advantage_path: str | None = None
    advantage_dropout_prob: float = 0.3
    inference_advantage: float = 1.0
    # Classifier-free guidance; 1.0 uses the conditioned pass alone (one forward pass).
    cfg_gamma: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.advantage_dropout_prob < 1.0:
            raise ValueError(f"advantage_dropout_prob must be in [0, 1), got {self.advantage_dropout_prob}")
        if self.cfg_gamma < 0:
            raise ValueError(f"cfg_gamma must be >= 0, got {self.cfg_gamma}")
        if self.cfg_gamma != 1.0 and self.advantage_dropout_prob == 0.0:
            raise ValueError("cfg_gamma != 1 needs advantage_dropout_prob > 0: the unconditioned pass it "
                             "guides with is learned only from dropped conditions")

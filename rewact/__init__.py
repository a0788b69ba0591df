"""RewACT (ACT with a reward head, trained by supervised learning on any label source) and
ACTvantage (ACT conditioned on per-frame advantages), both LeRobot policy plugins."""

from rewact.configuration_actvantage import ACTvantageConfig
from rewact.configuration_rewact import RewACTConfig

__all__ = ["ACTvantageConfig", "RewACTConfig"]

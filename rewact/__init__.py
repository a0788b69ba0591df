"""RewACT: ACT with a reward head, trained by supervised learning on any label source."""

from rewact.configuration_rewact import RewACTConfig

__all__ = ["RewACTConfig"]

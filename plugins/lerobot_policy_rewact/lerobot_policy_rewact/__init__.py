"""Importing this registers the `rewact` policy config with LeRobot (via `rewact`)."""

from rewact import RewACTConfig

__all__ = ["RewACTConfig"]

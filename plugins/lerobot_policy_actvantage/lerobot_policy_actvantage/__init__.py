"""Importing this registers the `actvantage` policy config with LeRobot (via `rewact`)."""

from rewact import ACTvantageConfig

__all__ = ["ACTvantageConfig"]

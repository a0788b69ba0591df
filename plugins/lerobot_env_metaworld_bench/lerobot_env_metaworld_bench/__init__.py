"""Importing this registers the `metaworld_bench` env config with LeRobot (via `data.env`)."""

from data.env import MetaWorldBenchEnvConfig

__all__ = ["MetaWorldBenchEnvConfig"]

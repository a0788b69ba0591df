"""The benchmark's MetaWorld setting as a gymnasium env and a LeRobot env type, `metaworld_bench`.

A policy trained on a `data.generate` dataset is evaluated by stock LeRobot on exactly what it
was trained on: the same goal-observable task, cameras, image size, camera pose and flip, action
repeat and state layout, rendered by the same `MetaWorldSim`:

    lerobot-eval --policy.path=CKPT --env.type=metaworld_bench --env.task=push-v3 \
        --env.training_datasets=DATASET --eval.n_episodes=50 --seed=1000

The plugin `plugins/lerobot_env_metaworld_bench` imports this module, which registers the type.
A reset to a seed that one of `training_datasets` recorded is refused, so evaluation never
replays a training episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.envs.metaworld import TASK_DESCRIPTIONS
from lerobot.envs.utils import freeze_after_episode_end
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE
from metaworld.sawyer_xyz_env import SawyerXYZEnv

from common.ground_truth import read_ground_truth
from data.ground_truth import TASK_SPECS
from data.rollout import (ACTION_NAMES, CAMERAS, ENV_STATE_NAMES, STATE_NAMES, MetaWorldSim, RolloutConfig,
                          silence_expert_warnings)

ENV_TYPE = "metaworld_bench"
# The info key of each frame's simulator truth (`MetaWorldSim.frame_truth`: progress, score,
# success, distances), for evaluation only: a policy never sees it.
GROUND_TRUTH = "ground_truth"


class MetaWorldBenchEnv(gym.Env):
    """One frame per step: the action held for `action_repeat` simulator steps, then every camera
    rendered. Terminates on the simulator's success flag, truncates after `episode_length` frames.
    Each frame's info carries the simulator's truth under `GROUND_TRUTH`, for recording rollouts."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, task: str, rollout: RolloutConfig, episode_length: int, environment_state: bool = False,
                 refused_seeds: frozenset[int] = frozenset()):
        super().__init__()
        self.task = task
        self.render_mode = "rgb_array"
        self.task_description = TASK_DESCRIPTIONS[task]  # what data.generate records as the task
        self.rollout = rollout
        self.environment_state = environment_state
        self.refused_seeds = refused_seeds
        self.episode_length = episode_length
        self._max_episode_steps = episode_length  # the name lerobot-eval's rollout loop reads
        self.metadata = {**self.metadata, "render_fps": rollout.fps}
        size = rollout.image_size
        observation = {
            "pixels": spaces.Dict({
                camera: spaces.Box(0, 255, (size, size, 3), dtype=np.uint8) for camera in rollout.cameras
            }),
            "agent_pos": spaces.Box(-np.inf, np.inf, (len(STATE_NAMES),), dtype=np.float32),
        }
        if environment_state:
            observation["environment_state"] = spaces.Box(-np.inf, np.inf, (len(ENV_STATE_NAMES),), dtype=np.float32)
        self.observation_space = spaces.Dict(observation)
        self.action_space = spaces.Box(-1.0, 1.0, (len(ACTION_NAMES),), dtype=np.float32)
        self._sim: MetaWorldSim | None = None  # built on first reset, inside a vector env's worker
        self._frames = 0
        self._images: dict[str, np.ndarray] = {}
        self._initial: tuple[float, float] = (0.0, 0.0)  # distances at reset, what progress is relative to

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31))
        if episode_seed in self.refused_seeds:
            raise ValueError(f"seed {episode_seed} is an episode of a training dataset; evaluate on other seeds")
        if self._sim is None:
            silence_expert_warnings()
            self._sim = MetaWorldSim(self.task, self.rollout)
        self._frames = 0
        obs = self._sim.reset(episode_seed)
        info = self._sim.evaluate(obs)
        self._initial = self._sim.initial_distances(obs, info)
        return self._observe(obs), {"is_success": False, GROUND_TRUTH: self._sim.frame_truth(obs, info, self._initial)}

    def step(self, action: np.ndarray):
        obs, reward, info = self._sim.step(np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0))
        self._frames += 1
        success = bool(info["success"])
        truncated = self._frames >= self._max_episode_steps
        return self._observe(obs), reward, success, truncated, {
            "is_success": success, "task": self.task, GROUND_TRUTH: self._sim.frame_truth(obs, info, self._initial)}

    def render(self) -> np.ndarray:
        """The cameras of the latest observation side by side, for lerobot-eval's videos."""
        return np.concatenate([self._images[camera] for camera in self.rollout.cameras], axis=1)

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None

    def _observe(self, obs: np.ndarray) -> dict:
        self._images = self._sim.render()
        observation = {"pixels": dict(self._images), "agent_pos": self._sim.state(obs)}
        if self.environment_state:
            observation["environment_state"] = self._sim.environment_state(obs)
        return observation


def recorded_seeds(datasets: list[str | Path]) -> frozenset[int]:
    """The simulator seeds of every episode of `data.generate` datasets (from their sidecar)."""
    return frozenset(int(seed) for root in datasets for seed in read_ground_truth(root)[1]["seed"])


@EnvConfig.register_subclass(ENV_TYPE)
@dataclass
class MetaWorldBenchEnvConfig(EnvConfig):
    """The `data.generate` setting of one task. Defaults are the generator's; pass the ones the
    training dataset was recorded with."""

    task: str = "push-v3"
    cameras: str = "corner2,topview"  # comma-separated, as `data.generate --cameras`
    image_size: int = 96
    action_repeat: int = 2  # simulator steps per frame (and per policy action)
    episode_length: int = 90  # frames before truncation; the generator records at most 90
    environment_state: bool = False  # also observe object and goal positions (`--environment-state`)
    training_datasets: str = ""  # comma-separated dataset dirs whose episode seeds are refused
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASK_SPECS:
            raise ValueError(f"unsupported task '{self.task}'; choose from {', '.join(TASK_SPECS)}")
        unknown = [camera for camera in self.camera_names if camera not in CAMERAS]
        if unknown:
            raise ValueError(f"unknown camera(s) {unknown}; choose from {', '.join(CAMERAS)}")
        if self.episode_length * self.action_repeat > SawyerXYZEnv.max_path_length:
            raise ValueError(f"episode_length x action_repeat exceeds MetaWorld's {SawyerXYZEnv.max_path_length} "
                             "simulator steps per episode")
        self.fps = self.rollout.fps
        size = self.image_size
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(len(ACTION_NAMES),)),
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(len(STATE_NAMES),)),
            **{f"pixels/{camera}": PolicyFeature(type=FeatureType.VISUAL, shape=(size, size, 3))
               for camera in self.camera_names},
        }
        self.features_map = {ACTION: ACTION, "agent_pos": OBS_STATE,
                             **{f"pixels/{camera}": f"{OBS_IMAGES}.{camera}" for camera in self.camera_names}}
        if self.environment_state:
            self.features["environment_state"] = PolicyFeature(type=FeatureType.ENV, shape=(len(ENV_STATE_NAMES),))
            self.features_map["environment_state"] = OBS_ENV_STATE

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(camera for camera in self.cameras.split(",") if camera)

    @property
    def rollout(self) -> RolloutConfig:
        return RolloutConfig(cameras=self.camera_names, image_size=self.image_size, action_repeat=self.action_repeat)

    @property
    def gym_kwargs(self) -> dict:
        datasets = [root for root in self.training_datasets.split(",") if root]
        return {
            "task": self.task,
            "rollout": self.rollout,
            "episode_length": self.episode_length,
            "environment_state": self.environment_state,
            "refused_seeds": recorded_seeds(datasets),
        }

    def make(self) -> MetaWorldBenchEnv:
        """One env (not vectorised), for our own rollout loop."""
        return MetaWorldBenchEnv(**self.gym_kwargs)

    def create_envs(self, n_envs: int, use_async_envs: bool = False) -> dict[str, dict[int, gym.vector.VectorEnv]]:
        """{type: {0: vector env}}, as lerobot-eval expects; a finished episode stops simulating."""
        factory = freeze_after_episode_end(partial(MetaWorldBenchEnv, **self.gym_kwargs))
        if use_async_envs and n_envs > 1:
            vector = gym.vector.AsyncVectorEnv([factory] * n_envs, autoreset_mode=AutoresetMode.SAME_STEP,
                                               context="forkserver")
        else:
            vector = gym.vector.SyncVectorEnv([factory] * n_envs, autoreset_mode=AutoresetMode.SAME_STEP)
        return {self.type: {0: vector}}

"""Roll a RewACT checkpoint out in the benchmark's env (`data.env`) and keep its reward per frame.

The env is the one `lerobot-eval --env.type=metaworld_bench` builds; observations go through
LeRobot's own `preprocess_observation` and the checkpoint's processors, as in `lerobot-eval`,
and each action comes with the reward head's estimate from the same forward pass
(`select_action_with_reward`), so a rollout's trace is what the policy believed while acting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.cli import ConfigError
from data.env import MetaWorldBenchEnv, MetaWorldBenchEnvConfig
from training.evaluation.predict import LoadedPolicy
from training.evaluation.reward_video import write_video

IMAGE_PREFIX = "observation.images."


@dataclass(frozen=True)
class Rollout:
    seed: int
    success: bool  # the simulator's success flag was raised (the episode then ends)
    length: int  # frames the policy acted on
    reward: tuple[float, ...]  # the reward head's estimate at each of those frames

    @property
    def record(self) -> dict:
        return {"seed": self.seed, "success": self.success, "length": self.length, "reward": list(self.reward)}


def env_config_for(policy_config, task: str, action_repeat: int, episode_length: int,
                   training_datasets: tuple[Path, ...] = ()) -> MetaWorldBenchEnvConfig:
    """The env a checkpoint was trained for: its cameras, image size and whether it reads the
    environment state come from its input features."""
    images = policy_config.image_features
    shapes = {tuple(feature.shape[1:]) for feature in images.values()}  # (height, width) per camera
    if len(shapes) != 1 or len(set(*shapes)) != 1:
        raise ConfigError(f"the checkpoint's cameras {sorted(images)} are not square views of one size: the "
                          "metaworld_bench env renders only those (data.generate --image-size, not --resolution)")
    (image_size, _), = shapes
    return MetaWorldBenchEnvConfig(
        task=task, cameras=",".join(key.removeprefix(IMAGE_PREFIX) for key in images), image_size=image_size,
        action_repeat=action_repeat, episode_length=episode_length,
        environment_state=policy_config.env_state_feature is not None,
        training_datasets=",".join(map(str, training_datasets)),
    )


@torch.no_grad()
def run_rollout(loaded: LoadedPolicy, env: MetaWorldBenchEnv, seed: int) -> tuple[Rollout, dict[str, np.ndarray]]:
    """One episode from `seed`: the rollout and the frames the policy saw, per camera (T, H, W, 3)."""
    from lerobot.envs.utils import preprocess_observation

    policy = loaded.policy
    policy.reset()
    observation, _ = env.reset(seed=seed)
    frames: dict[str, list[np.ndarray]] = {camera: [] for camera in observation["pixels"]}
    rewards, success = [], False
    for _ in range(env.episode_length):
        for camera, image in observation["pixels"].items():
            frames[camera].append(image)
        batch = preprocess_observation(observation)
        batch["task"] = [env.task_description]
        action, reward = policy.select_action_with_reward(loaded.preprocessor(batch))
        rewards.append(float(reward[0]))
        action = loaded.postprocessor(action)
        observation, _, terminated, truncated, info = env.step(action[0].cpu().numpy())
        success = bool(info["is_success"])
        if terminated or truncated:
            break
    rollout = Rollout(seed=seed, success=success, length=len(rewards), reward=tuple(rewards))
    return rollout, {camera: np.stack(images) for camera, images in frames.items()}


def run_rollouts(loaded: LoadedPolicy, env_config: MetaWorldBenchEnvConfig, seeds: list[int],
                 videos_dir: Path | None = None, videos: int = 0) -> list[Rollout]:
    """A rollout per seed; the first `videos` are written to `videos_dir` as MP4 with the reward
    drawn under the frames."""
    env = env_config.make()
    rollouts = []
    try:
        for index, seed in enumerate(seeds):
            rollout, frames = run_rollout(loaded, env, seed)
            rollouts.append(rollout)
            if index < videos:
                videos_dir.mkdir(parents=True, exist_ok=True)
                write_video(videos_dir / f"seed_{seed}.mp4", frames, {"prediction": np.array(rollout.reward)},
                            env_config.fps)
    finally:
        env.close()
    return rollouts

"""Roll a policy checkpoint out in the benchmark's env (`data.env`) and keep its reward per frame.

The env is the one `lerobot-eval --env.type=metaworld_bench` builds; observations go through
LeRobot's own `preprocess_observation` and the checkpoint's processors, as in `lerobot-eval`,
and a RewACT's action comes with its reward head's estimate from the same forward pass
(`select_action_with_reward`), so a rollout's trace is what the policy believed while acting.
A policy without a reward head (ACTvantage, ACT) only acts. A `Recording` saves the rollouts as
a dataset, the simulator's truth in its sidecar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from common.cli import ConfigError
from data.benchmark import EpisodeWriter
from data.env import GROUND_TRUTH, MetaWorldBenchEnv, MetaWorldBenchEnvConfig
from data.rollout import Episode, Frame, RolloutConfig
from training.evaluation.predict import LoadedPolicy
from training.evaluation.reward_video import write_video

IMAGE_PREFIX = "observation.images."
ROLLOUT_KIND = "policy"  # the ground-truth sidecar's `kind` of a recorded policy rollout


@dataclass(frozen=True)
class Rollout:
    seed: int
    success: bool  # the simulator flagged success on some frame (which ends a rollout that stops on success)
    length: int  # frames observed, the last one judged but not acted on
    reward: tuple[float, ...]  # the policy's reward head at each frame; empty for a policy without one

    @property
    def record(self) -> dict:
        return {"seed": self.seed, "success": self.success, "length": self.length, "reward": list(self.reward)}


@dataclass(frozen=True)
class Recording:
    """Rollouts saved as a LeRobot dataset with these views (rendered whatever the policy reads, so a
    state policy's rollouts can train and test a pixel reward head), the simulator's truth in the
    ground-truth sidecar."""

    out: Path
    cameras: tuple[str, ...]
    image_size: int
    environment_state: bool = False
    repo_id: str = "local/rollouts"

    def writer(self, env_config: MetaWorldBenchEnvConfig) -> EpisodeWriter:
        views = RolloutConfig(cameras=self.cameras, image_size=self.image_size, action_repeat=env_config.action_repeat)
        return EpisodeWriter(self.out, views, use_videos=True, environment_state=self.environment_state,
                             repo_id=self.repo_id, overwrite=True)

    def summary(self, env_config: MetaWorldBenchEnvConfig) -> dict:
        """The sidecar's description of how the rollouts were made."""
        return {"kind": ROLLOUT_KIND, "task": env_config.task, "action_repeat": env_config.action_repeat,
                "episode_length": env_config.episode_length}

    def views(self, frame: Frame) -> Frame:
        """`frame` with only the recorded views (the env also renders what the policy reads)."""
        return replace(frame, images={camera: frame.images[camera] for camera in self.cameras})


def env_config_for(policy_config, task: str, action_repeat: int, episode_length: int,
                   training_datasets: tuple[Path, ...] = (), recording: Recording | None = None,
                   video_views: tuple[str, ...] = ()) -> MetaWorldBenchEnvConfig:
    """The env a checkpoint was trained for: its cameras, image size and whether it reads the
    environment state come from its input features; a recording adds its views (same size). A
    policy on state with nothing recorded renders `video_views` (none: no view at all)."""
    images = policy_config.image_features
    shapes = {tuple(feature.shape[1:]) for feature in images.values()}  # (height, width) per camera
    if recording is not None:
        shapes.add((recording.image_size, recording.image_size))
    if not shapes:
        shapes.add((RolloutConfig.image_size, RolloutConfig.image_size))
    if len(shapes) != 1 or len(set(*shapes)) != 1:
        raise ConfigError(f"the checkpoint's cameras {sorted(images)} and the recorded views are not square views "
                          "of one size as data.generate records them")
    (image_size, _), = shapes
    cameras = [key.removeprefix(IMAGE_PREFIX) for key in images]
    cameras += [camera for camera in (recording.cameras if recording else ()) if camera not in cameras]
    cameras = cameras or list(video_views)
    return MetaWorldBenchEnvConfig(
        task=task, cameras=",".join(cameras), image_size=image_size,
        action_repeat=action_repeat, episode_length=episode_length,
        environment_state=policy_config.env_state_feature is not None or bool(recording and recording.environment_state),
        training_datasets=",".join(map(str, training_datasets)),
    )


@torch.no_grad()
def run_rollout(loaded: LoadedPolicy, env: MetaWorldBenchEnv, seed: int,
                on_frame: Callable[[Frame], None] | None = None, stop_on_success: bool = True) -> tuple[Rollout, Episode]:
    """One episode from `seed`: the rollout, and the simulator's truth per frame; each frame the
    policy observed (every rendered camera) goes to `on_frame` with the action taken on it. It ends
    on the frame the simulator calls a success (unless `stop_on_success` is off: then the policy
    acts on past it, which a stop rule needs to be scored), or after `env.episode_length` frames;
    that last frame is judged by the reward head too."""
    from lerobot.envs.utils import preprocess_observation

    policy = loaded.policy
    inputs = set(policy.config.input_features)
    policy.reset()
    observation, info = env.reset(seed=seed)
    episode = Episode(env.task, env.task_description, ROLLOUT_KIND, seed)
    rewards, succeeded = [], False
    while True:
        episode.add_truth(info[GROUND_TRUTH])
        succeeded |= bool(info["is_success"])
        batch = {key: value for key, value in preprocess_observation(observation).items() if key in inputs}
        batch["task"] = [env.task_description]
        if hasattr(policy, "select_action_with_reward"):
            action, reward = policy.select_action_with_reward(loaded.preprocessor(batch))
            rewards.append(float(reward[0]))
        else:
            action = policy.select_action(loaded.preprocessor(batch))
        # What the arm executes: the env clips every action to its [-1, 1] range, as data.generate records it.
        action = np.clip(loaded.postprocessor(action)[0].cpu().numpy(), -1.0, 1.0).astype(np.float32)
        if on_frame is not None:
            on_frame(Frame(observation["pixels"], observation["agent_pos"], observation.get("environment_state"),
                           action))
        if (stop_on_success and succeeded) or len(episode) == env.episode_length:
            break
        observation, _, _, _, info = env.step(action)
    rollout = Rollout(seed=seed, success=succeeded, length=len(episode), reward=tuple(rewards))
    return rollout, episode


def write_rollout_video(path: Path, rollout: Rollout, frames: list[Frame], fps: int) -> None:
    """`frames` of `rollout` as MP4, every camera side by side, the reward head's trace drawn under them."""
    views = {camera: np.stack([frame.images[camera] for frame in frames]) for camera in frames[0].images}
    curves = {"prediction": np.array(rollout.reward)} if rollout.reward else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, views, curves, fps)


def run_rollouts(loaded: LoadedPolicy, env_config: MetaWorldBenchEnvConfig, seeds: list[int],
                 videos_dir: Path | None = None, videos: int = 0, recording: Recording | None = None,
                 stop_on_success: bool = True) -> list[Rollout]:
    """A rollout per seed (`run_rollout`); the first `videos` are written to `videos_dir` as MP4 with
    the reward drawn under the frames, and with a `recording` every rollout is saved as a dataset."""
    env = env_config.make()
    writer = recording.writer(env_config) if recording is not None else None
    rollouts = []
    try:
        for index, seed in enumerate(seeds):
            frames: list[Frame] = []

            def on_frame(frame: Frame) -> None:
                if index < videos:
                    frames.append(frame)
                if writer is not None:
                    writer.add_frame(recording.views(frame), env.task_description)

            rollout, episode = run_rollout(loaded, env, seed, on_frame, stop_on_success)
            rollouts.append(rollout)
            if writer is not None:
                writer.save_episode(episode)
            if frames:
                write_rollout_video(videos_dir / f"seed_{seed}.mp4", rollout, frames, env_config.fps)
        if writer is not None:
            writer.publish(recording.summary(env_config))
    finally:
        env.close()
    return rollouts

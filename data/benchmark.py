"""A ground-truth benchmark: MetaWorld v3 rollouts -> a LeRobot v3 dataset + GT sidecar
(`python -m data.generate` is its command).

The dataset holds only what a robot would record (camera frames, state, action, task). The
simulator's truth goes to `<out>/ground_truth/` (format: `common.ground_truth`), which labelers
never read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.cli import ConfigError
from common.dataset_writer import create_dataset
from common.ground_truth import write_ground_truth
from common.staging import publish, staging_dir
from data.rollout import (ACTION_NAMES, ENV_STATE_NAMES, EPISODE_KINDS, FAILURE_KINDS, STATE_NAMES, Episode,
                          MetaWorldSim, RolloutConfig, silence_expert_warnings)

MAX_ATTEMPTS = 20
PRESETS = {
    # The bundled demo (data/demo_metaworld): two tasks, every failure kind, ~1 MB.
    "demo": dict(tasks=("pick-place-v3", "reach-v3"), successes=3, failures_per_kind=1),
}


@dataclass(frozen=True)
class GenerateConfig:
    out: Path
    tasks: tuple[str, ...] = ("pick-place-v3", "reach-v3")
    successes: int = 3
    failures_per_kind: int = 1
    failure_kinds: tuple[str, ...] = FAILURE_KINDS
    # When set, each task gets this many failures instead, kinds dealt round robin across tasks
    # (e.g. 3 tasks x 2 cover all four kinds at a lower failure share than one of each per task).
    failures_per_task: int | None = None
    rollout: RolloutConfig = RolloutConfig()
    seed: int = 0
    use_videos: bool = True
    # Also record `observation.environment_state` (object and goal positions) for policies that
    # learn from state; off keeps the pixel-only setting of the reward experiments.
    environment_state: bool = False
    repo_id: str = "local/metaworld_bench"

    def episode_plan(self) -> list[tuple[str, str, int]]:
        """(task, kind, index within kind) in dataset order: tasks interleaved, successes first."""
        plan, dealt = [], 0
        for task in self.tasks:
            plan += [(task, "success", i) for i in range(self.successes)]
            if self.failures_per_task is None:
                for kind in self.failure_kinds:
                    plan += [(task, kind, i) for i in range(self.failures_per_kind)]
                continue
            kinds = [self.failure_kinds[(dealt + j) % len(self.failure_kinds)] for j in range(self.failures_per_task)]
            dealt += self.failures_per_task
            plan += [(task, kind, kinds[:j].count(kind)) for j, kind in enumerate(kinds)]
        return plan


def episode_seed(base_seed: int, task: str, kind: str, index: int, attempt: int) -> int:
    """Seed that depends only on what the episode is, so subsets regenerate identically."""
    words = [base_seed, EPISODE_KINDS.index(kind), index, attempt, *task.encode()]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def features(rollout: RolloutConfig, use_videos: bool, environment_state: bool) -> dict:
    size = rollout.image_size
    visual = "video" if use_videos else "image"
    feats = {
        f"observation.images.{camera}": {
            "dtype": visual,
            "shape": (size, size, 3),
            "names": ["height", "width", "channels"],
        }
        for camera in rollout.cameras
    }
    feats["observation.state"] = {"dtype": "float32", "shape": (len(STATE_NAMES),), "names": STATE_NAMES}
    if environment_state:
        feats["observation.environment_state"] = {
            "dtype": "float32", "shape": (len(ENV_STATE_NAMES),), "names": ENV_STATE_NAMES,
        }
    feats["action"] = {"dtype": "float32", "shape": (len(ACTION_NAMES),), "names": ACTION_NAMES}
    return feats


def generate(config: GenerateConfig, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the dataset to `config.out`; built in a sibling temp dir and renamed when complete."""
    silence_expert_warnings()
    sims: dict[str, MetaWorldSim] = {}

    def episodes():
        for task, kind, index in tqdm(config.episode_plan(), desc="episodes", disable=not progress):
            sim = sims.get(task) or sims.setdefault(task, MetaWorldSim(task, config.rollout))
            yield _rollout_with_retries(sim, config, task, kind, index)

    try:
        return write_episodes(config.out, episodes(), config.rollout, use_videos=config.use_videos,
                              environment_state=config.environment_state, repo_id=config.repo_id,
                              summary=config_summary(config), overwrite=overwrite)
    finally:
        for sim in sims.values():
            sim.close()


def write_episodes(out: Path, episodes: Iterable[Episode], rollout: RolloutConfig, *, use_videos: bool,
                   environment_state: bool, repo_id: str, summary: dict, overwrite: bool = False) -> Path:
    """Save recorded episodes (any source: the scripted kinds, a policy's rollouts) as a LeRobot
    dataset at `out` with their truth in the ground-truth sidecar; built in a sibling temp dir and
    renamed when complete. Episodes are consumed one at a time, so memory does not grow with them."""
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass --overwrite to replace it)")
    staging = staging_dir(out)
    dataset = create_dataset(repo_id=repo_id, fps=rollout.fps, features=features(rollout, use_videos, environment_state),
                             root=staging, robot_type="sawyer", use_videos=use_videos)
    records = [_write_episode(dataset, episode, environment_state) for episode in episodes]
    if not records:
        raise ConfigError("nothing to write: no episodes")
    dataset.finalize()
    write_ground_truth(staging, records, summary)
    return publish(staging, out)


def config_summary(config: GenerateConfig) -> dict:
    summary = asdict(config)
    summary["out"] = str(config.out)
    return summary


def _rollout_with_retries(sim: MetaWorldSim, config: GenerateConfig, task: str, kind: str, index: int) -> Episode:
    for attempt in range(MAX_ATTEMPTS):
        episode = sim.rollout(kind, episode_seed(config.seed, task, kind, index, attempt))
        if episode is not None:
            return episode
    raise RuntimeError(f"could not produce a '{kind}' episode of {task} in {MAX_ATTEMPTS} attempts")


def _write_episode(dataset, episode: Episode, environment_state: bool) -> Episode:
    """Save the rollout as the dataset's next episode and drop its frames, which are in the
    dataset now, so memory does not grow with the episodes written; returns its truth."""
    for t in range(len(episode)):
        frame = {f"observation.images.{camera}": episode.images[camera][t] for camera in episode.images}
        frame["observation.state"] = episode.state[t]
        if environment_state:
            frame["observation.environment_state"] = episode.environment_state[t]
        frame["action"] = episode.action[t]
        frame["task"] = episode.task
        dataset.add_frame(frame)
    dataset.save_episode()
    episode.images = {}
    return episode

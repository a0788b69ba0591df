"""A ground-truth benchmark: MetaWorld v3 rollouts -> a LeRobot v3 dataset + GT sidecar
(`python -m data.generate` is its command).

The dataset holds only what a robot would record (camera frames, state, action, task). The
simulator's truth goes to `<out>/ground_truth/` (format: `common.ground_truth`), which labelers
never read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.cli import ConfigError
from common.dataset_writer import create_dataset
from common.ground_truth import write_ground_truth
from common.staging import publish, staging_dir
from data.rollout import (ACTION_NAMES, ENV_STATE_NAMES, EPISODE_KINDS, FAILURE_KINDS, STATE_NAMES, Episode, Frame,
                          MetaWorldSim, RolloutConfig, check_kind_applies, silence_expert_warnings)

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
    # Successes that take a detour first (data.rollout.DETOUR_KINDS), this many of each per task.
    success_kinds: tuple[str, ...] = ()
    successes_per_kind: int = 1
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
            plan += [(task, kind, i) for kind in self.success_kinds for i in range(self.successes_per_kind)]
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


def features(config: GenerateConfig) -> dict:
    height, width = config.rollout.resolution
    visual = "video" if config.use_videos else "image"
    feats = {
        f"observation.images.{camera}": {
            "dtype": visual,
            "shape": (height, width, 3),
            "names": ["height", "width", "channels"],
        }
        for camera in config.rollout.cameras
    }
    feats["observation.state"] = {"dtype": "float32", "shape": (len(STATE_NAMES),), "names": STATE_NAMES}
    if config.environment_state:
        feats["observation.environment_state"] = {
            "dtype": "float32", "shape": (len(ENV_STATE_NAMES),), "names": ENV_STATE_NAMES,
        }
    feats["action"] = {"dtype": "float32", "shape": (len(ACTION_NAMES),), "names": ACTION_NAMES}
    return feats


def generate(config: GenerateConfig, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the dataset to `config.out`; built in a sibling temp dir and renamed when complete."""
    out = config.out
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass --overwrite to replace it)")
    plan = config.episode_plan()
    if not plan:
        raise ConfigError("nothing to generate: the episode plan is empty")
    for task, kind in dict.fromkeys((task, kind) for task, kind, _ in plan):
        check_kind_applies(task, kind)
    staging = staging_dir(out)
    silence_expert_warnings()

    dataset = create_dataset(repo_id=config.repo_id, fps=config.rollout.fps, features=features(config), root=staging,
                             robot_type="sawyer", use_videos=config.use_videos)
    records = []
    sims: dict[str, MetaWorldSim] = {}
    try:
        for task, kind, index in tqdm(plan, desc="episodes", disable=not progress):
            sim = sims.get(task) or sims.setdefault(task, MetaWorldSim(task, config.rollout))
            records.append(_record_episode(dataset, sim, config, kind, index))
        dataset.finalize()
        write_ground_truth(staging, records, config_summary(config))
    finally:
        for sim in sims.values():
            sim.close()
    return publish(staging, out)


def config_summary(config: GenerateConfig) -> dict:
    summary = asdict(config)
    summary["out"] = str(config.out)
    return summary


def _record_episode(dataset, sim: MetaWorldSim, config: GenerateConfig, kind: str, index: int) -> Episode:
    """Roll out `kind` until the simulator agrees, each frame going to the dataset's episode buffer
    as it is rendered; a rejected rollout's buffer is discarded and the next seed tried. Returns the
    kept rollout's truth: no frame of it is held in memory."""

    def add(frame: Frame) -> None:
        dataset.add_frame(_lerobot_frame(frame, sim.task, config.environment_state))

    for attempt in range(MAX_ATTEMPTS):
        episode = sim.rollout(kind, episode_seed(config.seed, sim.spec.env_name, kind, index, attempt), on_frame=add)
        if episode is not None:
            dataset.save_episode()
            return episode
        dataset.clear_episode_buffer()
    raise RuntimeError(f"could not produce a '{kind}' episode of {sim.spec.env_name} in {MAX_ATTEMPTS} attempts")


def _lerobot_frame(frame: Frame, task: str, environment_state: bool) -> dict:
    """A rendered frame as `LeRobotDataset.add_frame` takes it."""
    record = {f"observation.images.{camera}": image for camera, image in frame.images.items()}
    record["observation.state"] = frame.state
    if environment_state:
        record["observation.environment_state"] = frame.environment_state
    record["action"] = frame.action
    record["task"] = task
    return record

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
                          MetaWorldSim, RolloutConfig, check_kind_applies, kind_mismatch, silence_expert_warnings)

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
    # Successes that take a detour first (data.rollout.DETOUR_KINDS), this many of each per task
    # that can show the kind (a drop needs a grasp, a misplacement an object: `kind_mismatch`).
    success_kinds: tuple[str, ...] = ()
    successes_per_kind: int = 1
    rollout: RolloutConfig = RolloutConfig()
    seed: int = 0
    use_videos: bool = True
    # Also record `observation.environment_state` (object and goal positions) for policies that
    # learn from state; off keeps the pixel-only setting of the reward experiments.
    environment_state: bool = False
    repo_id: str = "local/metaworld_bench"

    def detour_kinds(self, task: str) -> tuple[str, ...]:
        """The `success_kinds` that `task` can show."""
        return tuple(kind for kind in self.success_kinds if kind_mismatch(task, kind) is None)

    def episode_plan(self) -> list[tuple[str, str, int]]:
        """(task, kind, index within kind) in dataset order: tasks interleaved, successes first."""
        plan, dealt = [], 0
        for task in self.tasks:
            plan += [(task, "success", i) for i in range(self.successes)]
            plan += [(task, kind, i) for kind in self.detour_kinds(task) for i in range(self.successes_per_kind)]
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
    height, width = rollout.resolution
    visual = "video" if use_videos else "image"
    feats = {
        f"observation.images.{camera}": {
            "dtype": visual,
            "shape": (height, width, 3),
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
    plan = config.episode_plan()
    if not plan:
        raise ConfigError("nothing to generate: the episode plan is empty")
    for task, kind in dict.fromkeys((task, kind) for task, kind, _ in plan):
        check_kind_applies(task, kind)
    for kind in config.success_kinds:  # one the tasks cannot show at all is a mistake, not a skip
        if not any(kind_mismatch(task, kind) is None for task in config.tasks):
            raise ConfigError("; ".join(dict.fromkeys(kind_mismatch(task, kind) for task in config.tasks)))
    writer = EpisodeWriter(config.out, config.rollout, use_videos=config.use_videos,
                           environment_state=config.environment_state, repo_id=config.repo_id, overwrite=overwrite)
    silence_expert_warnings()
    sims: dict[str, MetaWorldSim] = {}
    try:
        for task, kind, index in tqdm(plan, desc="episodes", disable=not progress):
            sim = sims.get(task) or sims.setdefault(task, MetaWorldSim(task, config.rollout))
            _record_episode(writer, sim, config, kind, index)
    finally:
        for sim in sims.values():
            sim.close()
    return writer.publish(config_summary(config))


class EpisodeWriter:
    """A LeRobot dataset written frame by frame as episodes are rendered (the scripted kinds, a
    policy's rollouts), built in a sibling temp dir and published whole with the simulator's truth
    in its sidecar. Frames go to the dataset's episode buffer, so memory does not grow with them."""

    def __init__(self, out: Path, rollout: RolloutConfig, *, use_videos: bool, environment_state: bool,
                 repo_id: str, overwrite: bool = False):
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} already exists (pass --overwrite to replace it)")
        self.out, self.staging, self.environment_state = out, staging_dir(out), environment_state
        self.dataset = create_dataset(repo_id=repo_id, fps=rollout.fps,
                                      features=features(rollout, use_videos, environment_state), root=self.staging,
                                      robot_type="sawyer", use_videos=use_videos)
        self.records: list[Episode] = []

    def add_frame(self, frame: Frame, task: str) -> None:
        """`frame` as `LeRobotDataset.add_frame` takes it, into the current episode."""
        record = {f"observation.images.{camera}": image for camera, image in frame.images.items()}
        record["observation.state"] = frame.state
        if self.environment_state:
            record["observation.environment_state"] = frame.environment_state
        record["action"] = frame.action
        record["task"] = task
        self.dataset.add_frame(record)

    def save_episode(self, truth: Episode) -> None:
        """The frames added since the last episode become the next one; `truth` is its sidecar record."""
        self.dataset.save_episode()
        self.records.append(truth)

    def discard_episode(self) -> None:
        self.dataset.clear_episode_buffer()

    def publish(self, summary: dict) -> Path:
        """Finish the dataset, write the sidecar and move it to `out`."""
        if not self.records:
            raise ConfigError("nothing to write: no episodes")
        self.dataset.finalize()
        write_ground_truth(self.staging, self.records, summary)
        return publish(self.staging, self.out)


def config_summary(config: GenerateConfig) -> dict:
    summary = asdict(config)
    summary["out"] = str(config.out)
    return summary


def _record_episode(writer: EpisodeWriter, sim: MetaWorldSim, config: GenerateConfig, kind: str, index: int) -> None:
    """Roll out `kind` until the simulator agrees, then record that rollout: each frame goes to the
    writer as it is rendered, and no frame of it stays in memory. Seeds are judged first without
    rendering (the simulator is deterministic, and rendering is most of the cost); a recorded
    rollout the simulator rejects after all is discarded."""
    for attempt in range(MAX_ATTEMPTS):
        seed = episode_seed(config.seed, sim.spec.env_name, kind, index, attempt)
        if sim.rollout(kind, seed) is None:
            continue
        episode = sim.rollout(kind, seed, on_frame=lambda frame: writer.add_frame(frame, sim.task))
        if episode is not None:
            writer.save_episode(episode)
            return
        writer.discard_episode()
    raise RuntimeError(f"could not produce a '{kind}' episode of {sim.spec.env_name} in {MAX_ATTEMPTS} attempts")

"""What the experiments share: MetaWorld splits recorded once per work directory, the presets
that size them, resumable steps, and the small RewACT they train (settings recorded beside each
checkpoint, which is refused when trained otherwise)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from common.cli import ConfigError, parse_names
from common.dataset import EpisodeSource
from common.options import option
from data.benchmark import GenerateConfig, generate
from data.rollout import CAMERAS, FAILURE_KINDS, RolloutConfig
from training.evaluation.plots import pyplot

# RewACT sized for a 2-core CPU: the ResNet18 backbone stays, the transformer shrinks, and
# the learning rate rises from ACT's 1e-5 (at which the reward head barely moves in 1000 steps).
SMALL_REWACT = ["--policy.dim_model=128", "--policy.dim_feedforward=512", "--policy.n_encoder_layers=2",
                "--policy.chunk_size=20", "--policy.n_action_steps=20", "--policy.latent_dim=16",
                "--policy.optimizer_lr=3e-4", "--policy.optimizer_lr_backbone=1e-4"]


# The small reward VLM this project trained on MetaWorld (seed 100), which labels the experiments' data.
REWARD_VLM = Path(__file__).resolve().parents[2] / "models" / "metaworld-reward-vlm"

TRAINED_WITH = "trained_with.json"  # in each RewACT checkpoint directory: the settings it was trained with


@dataclass(frozen=True)
class Preset:
    tasks: tuple[str, ...]
    heldout_task: str
    train_successes: int  # per task
    train_failures: int  # per task, kinds dealt round robin over tasks
    heldout_successes: int
    heldout_failures_per_kind: int
    steps: int
    batch_size: int
    seeds: tuple[int, ...]  # RewACT training seeds of the headline rows (a), (b), (c)
    frontier: bool

TASKS = ("pick-place-v3", "push-v3", "reach-v3")


PRESETS = {
    # ~90 min on a 2-core CPU (RewACT trains at about 1 s per step here: 9 runs of 400 steps).
    "full": Preset(TASKS, "push-back-v3", 12, 4, 4, 2, steps=400, batch_size=16, seeds=(0, 1),
                   frontier=True),
    # ~20 min: the same composition, fewer episodes and steps, one seed.
    "quick": Preset(TASKS, "push-back-v3", 6, 2, 2, 1, steps=150, batch_size=16, seeds=(0,),
                    frontier=False),
    # Plumbing check for the test suite (~3 min); its numbers mean nothing. The frontier has its
    # own smoke test (tests/test_keyframe_frontier.py).
    "smoke": Preset(("reach-v3",), "push-v3", 1, 1, 1, 1, steps=2, batch_size=2, seeds=(0,),
                    frontier=False),
}


def step(name: str, done: Path, log: list, action) -> None:
    """Run `action` unless `done` exists; record how long it took."""
    start = time.perf_counter()
    if done.exists():
        print(f"[experiment] {name}: already done ({done})", flush=True)
    else:
        print(f"[experiment] {name} ...", flush=True)
        action()
    log.append({"step": name, "seconds": round(time.perf_counter() - start, 1)})


def run(command: list[str], log_file: Path) -> None:
    with log_file.open("w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed (exit {result.returncode}); see {log_file}")


def generate_splits(work: Path, preset: Preset, tasks: tuple[str, ...], heldout_task: str, data_seed: int,
                    rollout: RolloutConfig, timings: list) -> tuple[Path, Path, Path]:
    """The train, held-out and held-out-task datasets under `work` (generated once)."""
    train, heldout, heldout_task_root = work / "train", work / "heldout", work / "heldout_task"
    step("generate training episodes (unflagged failures)", train, timings, lambda: generate(GenerateConfig(
        out=train, tasks=tasks, successes=preset.train_successes, failures_per_task=preset.train_failures,
        rollout=rollout, seed=data_seed, repo_id="local/train")))
    for name, root, split_tasks, seed in (("held-out episodes", heldout, tasks, data_seed + 100),
                                          ("held-out task episodes", heldout_task_root, (heldout_task,),
                                           data_seed + 200)):
        step(f"generate {name}", root, timings, lambda root=root, split_tasks=split_tasks, seed=seed: generate(
            GenerateConfig(out=root, tasks=split_tasks, successes=preset.heldout_successes,
                           failures_per_kind=preset.heldout_failures_per_kind, rollout=rollout, seed=seed,
                           repo_id=f"local/{root.name}")))
    heldout_per_task = preset.heldout_successes + preset.heldout_failures_per_kind * len(FAILURE_KINDS)
    check_recorded_as(train, rollout, len(tasks) * (preset.train_successes + preset.train_failures))
    check_recorded_as(heldout, rollout, len(tasks) * heldout_per_task)
    check_recorded_as(heldout_task_root, rollout, heldout_per_task)
    return train, heldout, heldout_task_root


def check_recorded_as(root: Path, rollout: RolloutConfig, episodes: int) -> None:
    """A work directory reused with other views, image size or split size would silently mix runs."""
    source = EpisodeSource.open(root)
    features = source.meta.features
    recorded = {key.removeprefix("observation.images."): tuple(features[key]["shape"][:2])
                for key in features if key.startswith("observation.images.")}
    wanted = {camera: (rollout.image_size, rollout.image_size) for camera in rollout.cameras}
    if recorded != wanted or len(source.episode_indices) != episodes:
        raise ConfigError(f"{root} was recorded with views {recorded} and {len(source.episode_indices)} episodes, "
                          f"not {wanted} and {episodes}: choose another --work")


@dataclass(frozen=True)
class SplitOptions:
    """The MetaWorld splits an experiment records once in its work directory: how many, which views."""

    preset: str = option("full", help="how large the experiment is", choices=tuple(sorted(PRESETS)))
    work: Path = option(Path("outputs/experiment"), help="work directory: generated splits, labels, checkpoints")
    data_seed: int = option(300, help="seed of the training split; held-out +100, held-out task +200")
    image_size: int = option(RolloutConfig.image_size, help="pixels on a side of each recorded view")
    cameras: tuple[str, ...] = option(RolloutConfig.cameras, parse=parse_names,
                                      help=f"comma-separated views to record, from {','.join(CAMERAS)}")
    train_successes: int | None = option(None, help="training successes per task (default: the preset's)")
    train_failures: int | None = option(None, help="training failures per task, kinds dealt round robin "
                                                   "(default: the preset's)")

    def __post_init__(self):
        if unknown := sorted(set(self.cameras) - set(CAMERAS)):
            raise ConfigError(f"unknown camera(s) {', '.join(unknown)}; choose from {', '.join(CAMERAS)}")

    @property
    def sized_preset(self) -> Preset:
        """The preset with these split sizes."""
        preset = PRESETS[self.preset]
        return replace(preset, train_successes=self.train_successes or preset.train_successes,
                       train_failures=self.train_failures or preset.train_failures)

    @property
    def rollout(self) -> RolloutConfig:
        return RolloutConfig(cameras=self.cameras, image_size=self.image_size)


@dataclass(frozen=True)
class RewACTRunOptions:
    """How the experiment's small RewACT trains."""

    device: str = option("cpu", help="torch device the experiment runs on: cpu, cuda, cuda:1")
    batch_size: int | None = option(None, help="RewACT batch size (default: the preset's)")


def train_rewact(name: str, dataset: Path, label_args: list[str], out: Path, steps: int, batch_size: int,
                 device: str, seed: int, overrides: list[str], timings: list) -> str:
    """Train the experiment's small RewACT once; the reward source naming its checkpoint.

    The training settings are recorded beside the checkpoint, and a checkpoint trained otherwise
    is refused rather than scored as if it were this one.
    """
    settings = ["--dataset", str(dataset), *label_args, "--steps", str(steps), "--batch-size", str(batch_size),
                "--seed", str(seed), "--", *SMALL_REWACT, *overrides]
    recorded = out / TRAINED_WITH
    if recorded.is_file() and json.loads(recorded.read_text()) != settings:
        raise ConfigError(f"{out} was trained with {' '.join(json.loads(recorded.read_text()))}, not "
                          f"{' '.join(settings)}: choose another --work or remove it")
    command = [sys.executable, "-m", "training.train", *settings[:settings.index("--")], "--out", str(out),
               "--device", device, "--log-freq", "100", *settings[settings.index("--"):]]

    def train() -> None:
        shutil.rmtree(out, ignore_errors=True)
        run(command, out.parent / f"{out.name}.log")
        recorded.write_text(json.dumps(settings))

    step(f"train {name}", out / "checkpoints" / "last", timings, train)
    return f"rewact:{out / 'checkpoints' / 'last'}"


def settings_tag(preset: Preset, steps: int, batch_size: int, options: Sequence[str]) -> str:
    """A checkpoint directory suffix naming every RewACT setting that differs from the preset's."""
    tag = f"_{steps}steps" if steps != preset.steps else ""
    tag += f"_batch{batch_size}" if batch_size != preset.batch_size else ""
    return tag + (f"_{hashlib.sha1(' '.join(options).encode()).hexdigest()[:8]}" if options else "")


def plot_frontier(path: Path, rows: list[dict], panels: Sequence[tuple[str, str]]) -> None:
    """One panel per (metric, axis label): each row's estimate and interval against its progress
    calls per frame (log scale). Each scheme keeps one colour and marker across the panels and is
    named once, in a legend above them: schemes of nearly equal cost would bury names written
    beside their points."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.9), squeeze=False)
    markers = "osD^vP*Xh<>"
    calls = [row["calls_per_frame"] for row in rows]
    ticks = [tick for tick in (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
             if min(calls) / 2 <= tick <= max(calls) * 2]
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        for index, row in enumerate(rows):
            estimate, low, high = row[key]
            ax.errorbar([row["calls_per_frame"]], [estimate], yerr=[[estimate - low], [high - estimate]],
                        fmt=markers[index % len(markers)], color=f"C{index % 10}", capsize=3, label=row["scheme"])
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks], minor=False)
        ax.set_xticks([], minor=True)
        ax.set_xlabel("progress calls per frame")
        ax.set_ylabel(label)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=min(len(rows), 9), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=110)
    plt.close(fig)

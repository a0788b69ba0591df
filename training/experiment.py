"""Do the pipeline's labels beat interpolation on data with unflagged failures? One command, CPU.

    python -m training.experiment [--preset quick|full] [--work outputs/experiment]
        [--results docs/results/experiment_unflagged_failures] [--model DIR_OR_HUB_ID --device cuda]
        [--rows a,b,c --seeds 0] [--rewact-option=--policy.KEY=VALUE ...]
        [--cameras corner2,topview --label-cameras corner2,topview] [--train-successes N --train-failures N]

Splits (MetaWorld, disjoint seeds; the reward VLM was trained on seed 100 by `make reward-vlm`):
  train         expert successes plus ~25 % failures of all four kinds, nothing flagged: the
                labeler and RewACT see only frames, state, action and the task text
  heldout       new seeds: successes and every failure kind, on the training tasks
  heldout_task  a task that neither the reward VLM nor RewACT saw, reported on its own
Reward sources scored on the held-out splits: raw interpolation, raw `labeling.run` labels with
the reward VLM, and RewACT trained on (a) interpolation over every training episode (failures
imitated), (a') interpolation over the true successes only (oracle filtering), (b) the labels,
(b') the labels plus the pipeline's temporal-clip negatives, (c) ground truth, (d) ground truth
plus those negatives; (a), (b), (c) from several training seeds. The full preset also measures
the keyframe scheme's cost-quality frontier.
Finished steps are skipped when the command is run again; `--rows`/`--seeds` train and score a
subset, and `--steps`, `--batch-size` or `--rewact-option` train every chosen row again with a
RewACT setting changed (in checkpoint directories named by the settings that differ from the
preset's, kept apart from the plain ones; a checkpoint trained otherwise is never reused).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from common.cli import ConfigError, run_cli
from common.dataset import EpisodeSource
from common.ground_truth import read_ground_truth
from common.label_files import SUMMARY_FILE, read_outcomes, read_summary
from data.generate import GenerateConfig, generate
from data.rollout import CAMERAS, FAILURE_KINDS, RolloutConfig
from training.augment import augmented_dataset, clip_episodes
from training.compare import compare, load_source

REWARD_VLM = Path(__file__).resolve().parents[1] / "models" / "metaworld-reward-vlm"
REWARD_VLM_TRAIN_SEED = 100  # outputs/reward_vlm/train in the Makefile's reward-vlm target
# RewACT sized for a 2-core CPU: the ResNet18 backbone stays, the transformer shrinks, and
# the learning rate rises from ACT's 1e-5 (at which the reward head barely moves in 1000 steps).
SMALL_REWACT = ["--policy.dim_model=128", "--policy.dim_feedforward=512", "--policy.n_encoder_layers=2",
                "--policy.chunk_size=20", "--policy.n_action_steps=20", "--policy.latent_dim=16",
                "--policy.optimizer_lr=3e-4", "--policy.optimizer_lr_backbone=1e-4"]
TRAINED_WITH = "trained_with.json"  # in each RewACT checkpoint directory: the settings it was trained with
# Keyframe schemes of the cost-quality frontier, in order: name -> (initial, max keyframes), or None
# for labeling.run's defaults (6/12), whose held-out labels the experiment has already made.
FRONTIER = {"3 keyframes": (3, 6), "6 keyframes (default)": None, "12 keyframes": (12, 24),
            "every frame": (100_000, 100_000)}


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
    # Plumbing check for the test suite (~3 min); its numbers mean nothing.
    "smoke": Preset(("reach-v3",), "push-v3", 1, 1, 1, 1, steps=2, batch_size=2, seeds=(0,),
                    frontier=True),
}


ROWS = ("a", "a'", "b", "b'", "c", "d")  # the RewACT rows, named by their tags in the variant names below
HEADLINE_ROWS = ("a", "b", "c")
PAIRED_ROWS = (("b", "a"),)  # the labels against interpolation, seed by seed, with paired intervals


def row_of(variant: str) -> str:
    """The tag of a RewACT variant: "(b') RewACT on labels + negatives" -> "b'"."""
    return variant.split()[0].strip("()")


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


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """How the generated splits are recorded: views, image size and the training split's size."""
    parser.add_argument("--image-size", type=int, default=RolloutConfig.image_size)
    parser.add_argument("--cameras", default=",".join(RolloutConfig.cameras),
                        help=f"comma-separated views to record, from {','.join(CAMERAS)}")
    parser.add_argument("--train-successes", type=int, help="training successes per task (default: the preset's)")
    parser.add_argument("--train-failures", type=int, help="training failures per task, kinds dealt round robin "
                        "(default: the preset's)")


def data_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Preset, RolloutConfig]:
    """The preset with the command line's split sizes, and the recording settings."""
    cameras = tuple(args.cameras.split(","))
    if unknown := sorted(set(cameras) - set(CAMERAS)):
        parser.error(f"unknown camera(s) {', '.join(unknown)}; choose from {', '.join(CAMERAS)}")
    preset = PRESETS[args.preset]
    preset = replace(preset, train_successes=args.train_successes or preset.train_successes,
                     train_failures=args.train_failures or preset.train_failures)
    return preset, RolloutConfig(cameras=cameras, image_size=args.image_size)


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


def settings_tag(preset: Preset, steps: int, batch_size: int, options: list[str]) -> str:
    """A checkpoint directory suffix naming every RewACT setting that differs from the preset's."""
    tag = f"_{steps}steps" if steps != preset.steps else ""
    tag += f"_batch{batch_size}" if batch_size != preset.batch_size else ""
    return tag + (f"_{hashlib.sha1(' '.join(options).encode()).hexdigest()[:8]}" if options else "")


def rewards_with_imitation(rewards: dict[int, np.ndarray], success: dict[int, bool]) -> pd.DataFrame:
    """(episode_index, frame_index, reward, imitate): only successful episodes are imitated."""
    return pd.concat([pd.DataFrame({"episode_index": e, "frame_index": np.arange(len(r)), "reward": r,
                                    "imitate": success[e]}) for e, r in rewards.items()], ignore_index=True)


def headline_spread(metrics: dict[str, dict], variants: dict[str, list[str]]) -> dict[str, dict]:
    """Per variant and metric: mean of the seeds' point estimates and their min and max."""
    spread = {}
    for variant, names in variants.items():
        points = {key: [metrics[name][key][0] for name in names] for key in metrics[names[0]]}
        spread[variant] = {key: [float(np.mean(v)), float(np.min(v)), float(np.max(v))] for key, v in points.items()}
    return spread


def spread_markdown(spread: dict[str, dict], seeds: tuple[int, ...]) -> str:
    keys = [("mae", "MAE ↓"), ("spearman", "Spearman ↑"), ("voc", "VOC ↑"), ("auroc", "AUROC ↑"),
            ("false_success_at_95", "false success @95 % TPR ↓")]
    lines = [f"Mean over RewACT training seeds {', '.join(map(str, seeds))} [min, max]:", "",
             "| variant | " + " | ".join(label for _, label in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for variant, values in spread.items():
        cells = [f"{values[k][0]:.2f} [{values[k][1]:.2f}, {values[k][2]:.2f}]" for k, _ in keys if k in values]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def frontier_rows(heldout: EpisodeSource, labeled: dict[str, Path], out: Path, seed: int) -> list[dict]:
    """Label MAE and failure AUROC against progress calls per frame, one row per keyframe scheme."""
    report = compare(heldout, {name: f"labels:{path}" for name, path in labeled.items()},
                     heldout.episode_indices, out, samples=1000, seed=seed)
    rows = []
    for name, path in labeled.items():
        summary = read_summary(path)
        metrics = report["metrics"][name]
        rows.append({"scheme": name, "calls_per_frame": summary["progress_calls_per_labeled_frame"],
                     "mae": metrics["mae"], "auroc": metrics["auroc"], "voc": metrics["voc"]})
    plot_frontier(out / "frontier.png", rows)
    lines = ["| keyframe scheme | progress calls per frame | MAE (1-5) ↓ | AUROC ↑ | VOC ↑ |", "|---|---|---|---|---|"]
    lines += [f"| {r['scheme']} | {r['calls_per_frame']:.3f} | " + " | ".join(
        f"{r[k][0]:.2f} [{r[k][1]:.2f}, {r[k][2]:.2f}]" for k in ("mae", "auroc", "voc")) + " |" for r in rows]
    (out / "frontier.md").write_text("\n".join(lines) + "\n")
    return rows


def plot_frontier(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    calls = [r["calls_per_frame"] for r in rows]
    for ax, key, label in ((axes[0], "mae", "label MAE (1-5) ↓"), (axes[1], "auroc", "failure AUROC ↑")):
        values = np.array([r[key] for r in rows])
        ax.errorbar(calls, values[:, 0], yerr=[values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]], fmt="o-")
        for r, x, y in zip(rows, calls, values[:, 0]):
            ax.annotate(r["scheme"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("progress calls per frame")
        ax.set_ylabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.experiment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--work", type=Path, default=Path("outputs/experiment"))
    parser.add_argument("--results", type=Path, default=Path("docs/results/experiment_unflagged_failures"))
    parser.add_argument("--model", default=str(REWARD_VLM), help="VLM for labeling.run (default: the reward VLM "
                        "trained here on MetaWorld seed 100)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", help="comma-separated training tasks (default: the preset's)")
    parser.add_argument("--heldout-task", help="a task kept out of training (default: the preset's)")
    parser.add_argument("--steps", type=int, help="RewACT training steps (default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="RewACT batch size (default: the preset's)")
    add_data_arguments(parser)
    parser.add_argument("--label-cameras", help="comma-separated views labeling.run shows the VLM (default: all "
                        "recorded); the reward VLM was trained on corner2,topview")
    parser.add_argument("--rows", help=f"comma-separated RewACT rows to train, from {','.join(ROWS)} (default: all)")
    parser.add_argument("--seeds", help="comma-separated RewACT seeds of the headline rows (default: the preset's)")
    parser.add_argument("--rewact-option", action="append", default=[], metavar="--policy.KEY=VALUE",
                        help="a lerobot-train override added to every RewACT row, e.g. "
                        "--rewact-option=--policy.reward_balance=label_frequency (repeatable)")
    parser.add_argument("--data-seed", type=int, default=300, help="train; held-out +100; held-out task +200")
    args = parser.parse_args(argv)
    preset, rollout = data_settings(parser, args)
    if args.seeds:
        preset = replace(preset, seeds=tuple(int(seed) for seed in args.seeds.split(",")))
    rows = tuple(args.rows.split(",")) if args.rows else ROWS
    if unknown := sorted(set(rows) - set(ROWS)):
        parser.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    tasks = tuple(args.tasks.split(",")) if args.tasks else preset.tasks
    heldout_task, steps = args.heldout_task or preset.heldout_task, args.steps or preset.steps
    batch_size = args.batch_size or preset.batch_size
    if heldout_task in tasks:
        parser.error(f"the held-out task {heldout_task} is also a training task")
    if REWARD_VLM_TRAIN_SEED in (args.data_seed, args.data_seed + 100, args.data_seed + 200):
        parser.error(f"seed {REWARD_VLM_TRAIN_SEED} is the reward VLM's training split; choose another --data-seed")
    work, timings = args.work, []
    work.mkdir(parents=True, exist_ok=True)
    train, heldout, heldout_task_root = generate_splits(work, preset, tasks, heldout_task, args.data_seed,
                                                        rollout, timings)

    label_cameras = ["--cameras", *args.label_cameras.split(",")] if args.label_cameras else []

    def label(dataset: Path, out: Path, extra: list[str]) -> None:
        step(f"labeling.run on {dataset.name} -> {out.name}", out, timings, lambda: run(
            [sys.executable, "-m", "labeling.run", "--dataset", str(dataset), "--out", str(out), "--model", args.model,
             "--device", args.device, "--image-size", str(args.image_size), "--quiet", *label_cameras, *extra],
            work / f"label_{out.name}.log"))

    # Every stage, whatever the model declares: rows (b') and (d) need the temporal clips of the
    # negatives stage, and the committed results were labeled so.
    label(train, work / "train_labeled", ["--stages", "rewrite,progress,negatives,validate"])
    label(heldout, work / "heldout_labeled", ["--stages", "progress"])
    label(heldout_task_root, work / "heldout_task_labeled", ["--stages", "progress"])

    train_source = EpisodeSource.open(train)
    truth_frames, truth_episodes = read_ground_truth(train)
    truth = {e: frames.sort_values("frame_index").progress.to_numpy()
             for e, frames in truth_frames.groupby("episode_index")}
    labels = load_source(f"labels:{work / 'train_labeled'}", train_source, train_source.episode_indices)
    clips = clip_episodes(work / "train_labeled")
    # Imitated: what the labeling run judged a success, or what the simulator says succeeded.
    true_success = dict(zip(truth_episodes.episode_index, truth_episodes.outcome == "success", strict=True))
    for name, rewards, success in (("labels", labels, read_outcomes(work / "train_labeled")),
                                   ("truth", truth, true_success)):
        out = work / f"train_{name}_with_negatives"
        step(f"add temporal-clip negatives to the {name}", out, timings, lambda out=out, rewards=rewards,
             success=success: augmented_dataset(train, clips, out, rewards_with_imitation(rewards, success)))
    successes = ",".join(str(e) for e in truth_episodes[truth_episodes.outcome == "success"].episode_index)

    variants = {  # name -> (dataset, training.train arguments, lerobot overrides)
        "(a) RewACT on interpolation": (train, ["--label-source", "interpolation"], []),
        "(a') RewACT on interpolation, true successes only": (
            train, ["--label-source", "interpolation", "--episodes", successes], []),
        "(b) RewACT on labels": (work / "train_labeled", ["--label-source", "dataset"], []),
        "(b') RewACT on labels + negatives": (work / "train_labels_with_negatives", [
            "--label-source", "labels", "--labels-path", str(work / "train_labels_with_negatives" / "labels.parquet")], []),
        "(c) RewACT on ground truth": (train, ["--label-source", "ground_truth"], []),
        "(d) RewACT on ground truth + negatives": (work / "train_truth_with_negatives", [
            "--label-source", "labels", "--labels-path", str(work / "train_truth_with_negatives" / "labels.parquet")], []),
    }
    runs = {}  # source name -> (variant, seed)
    for variant in variants:
        if row_of(variant) not in rows:
            continue
        headline = row_of(variant) in HEADLINE_ROWS
        for seed in preset.seeds if headline else preset.seeds[:1]:
            runs[f"{variant} [seed {seed}]" if headline and len(preset.seeds) > 1 else variant] = (variant, seed)

    # Rows trained with other settings live beside the preset's, so a re-run never mixes them.
    tag = settings_tag(preset, steps, batch_size, args.rewact_option)
    sources = {"interpolation (raw)": "interpolation"}
    for name, (variant, seed) in runs.items():
        dataset, label_args, variant_overrides = variants[variant]
        checkpoint_dir = work / f"rewact_{row_of(variant).replace("'", "_prime")}_seed{seed}{tag}"
        sources[name] = train_rewact(name, dataset, label_args, checkpoint_dir, steps, batch_size,
                                     args.device, seed, [*variant_overrides, *args.rewact_option], timings)

    headline = {variant: [n for n, (v, _) in runs.items() if v == variant]
                for variant in variants if row_of(variant) in HEADLINE_ROWS and row_of(variant) in rows}
    trained = {(row_of(variant), seed): name for name, (variant, seed) in runs.items()}
    pairs = [(trained[first, seed], trained[second, seed]) for first, second in PAIRED_ROWS for seed in preset.seeds
             if (first, seed) in trained and (second, seed) in trained]
    reports = {}
    for split, root, labeled in (("heldout", heldout, "heldout_labeled"),
                                 ("heldout_task", heldout_task_root, "heldout_task_labeled")):
        start = time.perf_counter()
        source = EpisodeSource.open(root)
        split_sources = {"interpolation (raw)": sources["interpolation (raw)"],
                         "reward VLM labels (raw)": f"labels:{work / labeled}",
                         **{k: v for k, v in sources.items() if k != "interpolation (raw)"}}
        out = args.results / split
        reports[split] = compare(source, split_sources, source.episode_indices, out, samples=1000, seed=0,
                                 pairs=pairs)
        spread = headline_spread(reports[split]["metrics"], headline)
        (out / "seeds.md").write_text(spread_markdown(spread, preset.seeds) + "\n")
        reports[split]["seed_spread"] = spread
        (out / "results.json").write_text(json.dumps(reports[split], indent=2))
        timings.append({"step": f"compare on {split}", "seconds": round(time.perf_counter() - start, 1)})

    frontier = None
    if preset.frontier:
        labeled = {}
        for name, scheme in FRONTIER.items():
            labeled[name] = work / ("heldout_labeled" if scheme is None else f"heldout_labeled_{scheme[0]}")
            if scheme is not None:
                label(heldout, labeled[name], ["--stages", "progress", "--initial-keyframes", str(scheme[0]),
                                               "--max-keyframes", str(scheme[1])])
        frontier = frontier_rows(EpisodeSource.open(heldout), labeled, args.results / "frontier", seed=0)

    record = {
        "command": "python -m training.experiment " + " ".join(argv if argv is not None else sys.argv[1:]),
        "preset": args.preset, "arguments": {k: str(v) for k, v in vars(args).items()},
        "seeds": {"train": args.data_seed, "heldout": args.data_seed + 100, "heldout_task": args.data_seed + 200,
                  "reward_vlm_train": REWARD_VLM_TRAIN_SEED, "rewact": list(preset.seeds)},
        "reward_vlm": args.model, "tasks": list(tasks), "heldout_task": heldout_task,
        "train_kinds": truth_episodes.kind.value_counts().to_dict(),
        "heldout_kinds": read_ground_truth(heldout)[1].kind.value_counts().to_dict(),
        "temporal_clip_negatives": len(clips), "rewact_overrides": [*SMALL_REWACT, *args.rewact_option], "steps": steps,
        "frontier": frontier, "timings": timings,
        "labeling_summaries": {path.name: read_summary(path) for path in sorted(work.glob("*_labeled*"))
                               if (path / SUMMARY_FILE).is_file()},
    }
    (args.results / "experiment.json").write_text(json.dumps(record, indent=2))
    for split in reports:
        print(f"## {split}\n" + (args.results / split / "results.md").read_text())
        print((args.results / split / "seeds.md").read_text())
    print(f"total {sum(t['seconds'] for t in timings) / 60:.1f} min; wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

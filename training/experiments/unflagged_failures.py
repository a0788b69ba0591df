"""Do the pipeline's labels beat interpolation on data with unflagged failures? One command, CPU.

    python -m training.experiments.unflagged_failures [--preset quick|full] [--work outputs/experiment]
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
the keyframe scheme's cost-quality frontier on the held-out split (`training.experiments.keyframe_frontier`).
Finished steps are skipped when the command is run again; `--rows`/`--seeds` train and score a
subset, and `--steps`, `--batch-size` or `--rewact-option` train every chosen row again with a
RewACT setting changed (in checkpoint directories named by the settings that differ from the
preset's, kept apart from the plain ones; a checkpoint trained otherwise is never reused).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from common.cli import ConfigError, parse_ints, parse_names, run_cli
from common.dataset import EpisodeSource
from common.ground_truth import read_ground_truth, read_ground_truth_by_episode
from common.label_files import SUMMARY_FILE, read_outcomes, read_summary
from common.options import as_record, command_line, option, parse_options
from training.evaluation.scoring import compare, load_source
from training.experiments.augment import augmented_dataset, clip_episodes
from training.experiments.workbench import (PRESETS, REWARD_VLM, SMALL_REWACT, Preset, RewACTRunOptions,
                                           SplitOptions, generate_splits, run, settings_tag, step,
                                           train_rewact)

PROG = "python -m training.experiments.unflagged_failures"
REWARD_VLM_TRAIN_SEED = 100  # outputs/reward_vlm/train in the Makefile's reward-vlm target
# The keyframe frontier on the held-out split (training.experiments.keyframe_frontier): these
# schemes against scoring every frame, the reference on sub-second episodes.
FRONTIER_SCHEMES = ("3/6", "6/12", "12/24")


ROWS = ("a", "a'", "b", "b'", "c", "d")  # the RewACT rows, named by their tags in the variant names below
HEADLINE_ROWS = ("a", "b", "c")
PAIRED_ROWS = (("b", "a"),)  # the labels against interpolation, seed by seed, with paired intervals


def row_of(variant: str) -> str:
    """The tag of a RewACT variant: "(b') RewACT on labels + negatives" -> "b'"."""
    return variant.split()[0].strip("()")


@dataclass(frozen=True)
class ExperimentOptions:
    """Do the pipeline's labels beat interpolation on data with unflagged failures? One command, CPU."""

    data: SplitOptions = field(default_factory=SplitOptions)
    rewact: RewACTRunOptions = field(default_factory=RewACTRunOptions)
    results: Path = option(Path("docs/results/experiment_unflagged_failures"),
                           help="where the reports and experiment.json go")
    model: str = option(str(REWARD_VLM), help="VLM for labeling.run; the default is the reward VLM trained here "
                                              "on MetaWorld seed 100")
    tasks: tuple[str, ...] | None = option(None, parse=parse_names,
                                           help="comma-separated training tasks (default: the preset's)")
    heldout_task: str | None = option(None, help="a task kept out of training (default: the preset's)")
    steps: int | None = option(None, help="RewACT training steps (default: the preset's)")
    label_cameras: tuple[str, ...] = option((), parse=parse_names, help="comma-separated views labeling.run "
                                            "shows the VLM (default: all recorded); the reward VLM was trained "
                                            "on corner2,topview")
    rows: tuple[str, ...] = option(ROWS, parse=parse_names, help="comma-separated RewACT rows to train")
    seeds: tuple[int, ...] | None = option(None, parse=parse_ints,
                                           help="comma-separated RewACT seeds of the headline rows (default: the preset's)")
    rewact_option: tuple[str, ...] = option((), metavar="--policy.KEY=VALUE", help="a lerobot-train override added "
                                            "to every RewACT row, e.g. --rewact-option=--policy.reward_balance="
                                            "label_frequency (repeatable)")

    def __post_init__(self):
        if unknown := sorted(set(self.rows) - set(ROWS)):
            raise ConfigError(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
        if self.heldout_task_name in self.training_tasks:
            raise ConfigError(f"the held-out task {self.heldout_task_name} is also a training task")
        if REWARD_VLM_TRAIN_SEED in (self.data.data_seed, self.data.data_seed + 100, self.data.data_seed + 200):
            raise ConfigError(f"seed {REWARD_VLM_TRAIN_SEED} is the reward VLM's training split; "
                              "choose another --data-seed")

    @property
    def preset(self) -> Preset:
        """The preset with this command's split sizes and RewACT seeds."""
        preset = self.data.sized_preset
        return replace(preset, seeds=self.seeds or preset.seeds)

    @property
    def training_tasks(self) -> tuple[str, ...]:
        return self.tasks or PRESETS[self.data.preset].tasks

    @property
    def heldout_task_name(self) -> str:
        return self.heldout_task or PRESETS[self.data.preset].heldout_task


def with_negatives_dir(work: Path, rewards: str) -> Path:
    """The training split copied with temporal-clip negatives, its `rewards` ("labels" or "truth") beside it."""
    return work / f"train_{rewards}_with_negatives"


def row_variants(train: Path, work: Path, successes: str) -> dict[str, tuple[Path, list[str]]]:
    """Each RewACT row: the dataset it trains on and `training.train`'s label arguments.

    `successes` is the comma-separated true successes of `train`, which row (a') alone imitates;
    (b') and (d) train on the copies with temporal-clip negatives that `augmented_dataset` wrote
    under `work`.
    """
    def with_negatives(name: str) -> tuple[Path, list[str]]:
        dataset = with_negatives_dir(work, name)
        return dataset, ["--label-source", "labels", "--labels-path", str(dataset / "labels.parquet")]

    return {
        "(a) RewACT on interpolation": (train, ["--label-source", "interpolation"]),
        "(a') RewACT on interpolation, true successes only": (
            train, ["--label-source", "interpolation", "--episodes", successes]),
        "(b) RewACT on labels": (work / "train_labeled", ["--label-source", "dataset"]),
        "(b') RewACT on labels + negatives": with_negatives("labels"),
        "(c) RewACT on ground truth": (train, ["--label-source", "ground_truth"]),
        "(d) RewACT on ground truth + negatives": with_negatives("truth"),
    }


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


def frontier_command(heldout: Path, work: Path, results: Path, model: str, device: str, image_size: int,
                     label_cameras: tuple[str, ...]) -> list[str]:
    """`keyframe_frontier` on the held-out split: every scheme beside scoring every frame."""
    return [sys.executable, "-m", "training.experiments.keyframe_frontier", "--dataset", str(heldout),
            "--work", str(work), "--results", str(results), "--model", model, "--device", device,
            "--image-size", str(image_size), "--schemes", ",".join(FRONTIER_SCHEMES), "--dense-every", "1",
            *(["--label-cameras", ",".join(label_cameras)] if label_cameras else [])]


def main(argv: list[str] | None = None) -> int:
    options = parse_options(ExperimentOptions, argv, prog=PROG)
    preset, data, device = options.preset, options.data, options.rewact.device
    tasks, heldout_task, rows = options.training_tasks, options.heldout_task_name, options.rows
    steps, batch_size = options.steps or preset.steps, options.rewact.batch_size or preset.batch_size
    work, timings = data.work, []
    work.mkdir(parents=True, exist_ok=True)
    train, heldout, heldout_task_root = generate_splits(work, preset, tasks, heldout_task, data.data_seed,
                                                        data.rollout, timings)

    label_cameras = ["--cameras", *options.label_cameras] if options.label_cameras else []

    def label(dataset: Path, out: Path, extra: list[str]) -> None:
        step(f"labeling.run on {dataset.name} -> {out.name}", out, timings, lambda: run(
            [sys.executable, "-m", "labeling.run", "--dataset", str(dataset), "--out", str(out), "--model", options.model,
             "--device", device, "--image-size", str(data.image_size), "--quiet", *label_cameras, *extra],
            work / f"label_{out.name}.log"))

    # Every stage, whatever the model declares: rows (b') and (d) need the temporal clips of the
    # negatives stage, and the committed results were labeled so.
    label(train, work / "train_labeled", ["--stages", "rewrite,progress,negatives,validate"])
    label(heldout, work / "heldout_labeled", ["--stages", "progress"])
    label(heldout_task_root, work / "heldout_task_labeled", ["--stages", "progress"])

    train_source = EpisodeSource.open(train)
    truth_frames, truth_episodes = read_ground_truth_by_episode(train)
    truth = {e: frames.progress.to_numpy() for e, frames in truth_frames.items()}
    labels = load_source(f"labels:{work / 'train_labeled'}", train_source, train_source.episode_indices)
    clips = clip_episodes(work / "train_labeled")
    # Imitated: what the labeling run judged a success, or what the simulator says succeeded.
    true_success = dict(zip(truth_episodes.episode_index, truth_episodes.outcome == "success", strict=True))
    for name, rewards, success in (("labels", labels, read_outcomes(work / "train_labeled")),
                                   ("truth", truth, true_success)):
        out = with_negatives_dir(work, name)
        step(f"add temporal-clip negatives to the {name}", out, timings, lambda out=out, rewards=rewards,
             success=success: augmented_dataset(train, clips, out, rewards_with_imitation(rewards, success)))
    successes = ",".join(str(e) for e in truth_episodes[truth_episodes.outcome == "success"].episode_index)

    variants = row_variants(train, work, successes)
    runs = {}  # source name -> (variant, seed)
    for variant in variants:
        if row_of(variant) not in rows:
            continue
        headline = row_of(variant) in HEADLINE_ROWS
        for seed in preset.seeds if headline else preset.seeds[:1]:
            runs[f"{variant} [seed {seed}]" if headline and len(preset.seeds) > 1 else variant] = (variant, seed)

    # Rows trained with other settings live beside the preset's, so a re-run never mixes them.
    tag = settings_tag(preset, steps, batch_size, options.rewact_option)
    sources = {"interpolation (raw)": "interpolation"}
    for name, (variant, seed) in runs.items():
        dataset, label_args = variants[variant]
        checkpoint_dir = work / f"rewact_{row_of(variant).replace("'", "_prime")}_seed{seed}{tag}"
        sources[name] = train_rewact(name, dataset, label_args, checkpoint_dir, steps, batch_size,
                                     device, seed, list(options.rewact_option), timings)

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
        out = options.results / split
        reports[split] = compare(source, split_sources, source.episode_indices, out, samples=1000, seed=0,
                                 pairs=pairs)
        spread = headline_spread(reports[split]["metrics"], headline)
        (out / "seeds.md").write_text(spread_markdown(spread, preset.seeds) + "\n")
        reports[split]["seed_spread"] = spread
        (out / "results.json").write_text(json.dumps(reports[split], indent=2))
        timings.append({"step": f"compare on {split}", "seconds": round(time.perf_counter() - start, 1)})

    frontier = None
    if preset.frontier:
        out = options.results / "frontier"
        step("keyframe frontier on heldout", out / "results.json", timings, lambda: run(
            frontier_command(heldout, work / "frontier", out, options.model, device, data.image_size,
                             options.label_cameras), work / "frontier.log"))
        frontier = json.loads((out / "results.json").read_text())["rows"]

    record = {
        "command": command_line(PROG, argv),
        "preset": data.preset, "options": as_record(options),
        "seeds": {"train": data.data_seed, "heldout": data.data_seed + 100, "heldout_task": data.data_seed + 200,
                  "reward_vlm_train": REWARD_VLM_TRAIN_SEED, "rewact": list(preset.seeds)},
        "reward_vlm": options.model, "tasks": list(tasks), "heldout_task": heldout_task,
        "train_kinds": truth_episodes.kind.value_counts().to_dict(),
        "heldout_kinds": read_ground_truth(heldout)[1].kind.value_counts().to_dict(),
        "temporal_clip_negatives": len(clips), "rewact_overrides": [*SMALL_REWACT, *options.rewact_option], "steps": steps,
        "frontier": frontier, "timings": timings,
        "labeling_summaries": {path.name: read_summary(path) for path in sorted(work.glob("*_labeled*"))
                               if (path / SUMMARY_FILE).is_file()},
    }
    (options.results / "experiment.json").write_text(json.dumps(record, indent=2))
    for split in reports:
        print(f"## {split}\n" + (options.results / split / "results.md").read_text())
        print((options.results / split / "seeds.md").read_text())
    print(f"total {sum(t['seconds'] for t in timings) / 60:.1f} min; wrote {options.results}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

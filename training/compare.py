"""Score reward sources against simulator ground truth (or, without it, against each other).

    python -m training.compare --dataset outputs/heldout --out docs/results/run1 \
        --source interpolation=interpolation \
        --source vlm=labels:outputs/heldout_labeled \
        --source rewact_interp=rewact:outputs/train/interp/checkpoints/last \
        --source mine=labels:my_rewards.parquet --source keys=keypoints:reward_keypoints.json

A source is NAME=KIND[:PATH], KIND[:PATH] as every tool here names reward sources
(`common.reward_sources`: interpolation, keypoints, dataset, labels, ground_truth, rewact).
`--pair A B` (repeatable) also reports metric(A) - metric(B) with a paired bootstrap interval:
both scored on the same resampled episodes, so it can separate sources whose own intervals
overlap. Writes results.md, results.json, curves.png and metrics.png to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

import training.predict  # noqa: F401  (registers the `rewact` reward source)
from common.cli import DatasetError, parse_episodes, run_cli
from common.dataset import EpisodeSource
from common.ground_truth import GROUND_TRUTH_DIR, has_ground_truth, read_ground_truth
from common.reward_sources import LabelError, read_rewards
from training.metrics import EpisodeTruth, agreement, bootstrap, paired_bootstrap

HEADLINE = [("mae", "MAE (1-5) ↓"), ("exact", "exact ↑"), ("within_one", "within-1 ↑"), ("spearman", "Spearman ↑"),
            ("kendall", "Kendall τ ↑"), ("voc", "VOC ↑"), ("auroc", "AUROC ↑"), ("f1", "F1 ↑"),
            ("false_success_rate", "false success ↓"), ("false_success_at_95", "false success @95 % TPR ↓")]
PAIRED = [("mae", "Δ MAE (1-5)"), ("voc", "Δ VOC"), ("auroc", "Δ AUROC"),
          ("false_success_at_95", "Δ false success @95 % TPR")]


def load_truth(source: EpisodeSource, episodes: list[int]) -> list[EpisodeTruth] | None:
    if not has_ground_truth(source.root):
        return None
    frames, kinds = read_ground_truth(source.root)
    kinds = kinds.set_index("episode_index")
    by_episode = dict(tuple(frames.groupby("episode_index")))
    truth = []
    for episode in episodes:
        rows = by_episode[episode].sort_values("frame_index")
        truth.append(EpisodeTruth(episode, rows.progress.to_numpy(), rows.score.to_numpy(),
                                  bool(kinds.loc[episode, "outcome"] == "success"), str(kinds.loc[episode, "kind"])))
    return truth


def load_source(spec: str, source: EpisodeSource, episodes: list[int]) -> dict[int, np.ndarray]:
    """Per-episode rewards in [0, 1] of one source, checked against the dataset's episodes."""
    try:
        table = read_rewards(spec, source.meta, episodes=episodes)
    except LabelError as err:
        raise DatasetError(f"source '{spec}': {err}") from err
    lengths = {e: source.episode(e).length for e in episodes}
    _require(spec, [e for e in episodes if e not in set(table.episode_index)])
    rewards = {}
    for episode, rows in table[table.episode_index.isin(episodes)].groupby("episode_index"):
        values = rows.sort_values("frame_index").reward.to_numpy(dtype=float)
        if len(values) != lengths[episode]:
            raise DatasetError(f"source '{spec}': episode {episode} has {len(values)} rewards, "
                               f"the dataset has {lengths[episode]} frames")
        rewards[int(episode)] = values
    return rewards


def _require(spec: str, missing: list[int]) -> None:
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DatasetError(f"source '{spec}' does not cover {len(missing)} episode(s): {shown}")


def markdown(results: dict[str, dict], truth: list[EpisodeTruth]) -> str:
    kinds = sorted({e.kind for e in truth if not e.success})
    lines = [f"{len(truth)} episodes ({sum(e.success for e in truth)} successes, "
             f"{sum(not e.success for e in truth)} failures: {', '.join(kinds)}); 95 % bootstrap intervals over episodes.",
             "", "| source | " + " | ".join(label for _, label in HEADLINE) + " |",
             "|---|" + "---|" * len(HEADLINE)]
    for name, metrics in results.items():
        lines.append(f"| {name} | " + " | ".join(_cell(metrics[key]) for key, _ in HEADLINE) + " |")
    lines += ["", "Failure detection per failure kind (final-frame reward, successes vs that kind):", "",
              "| source | " + " | ".join(f"AUROC {k} ↑ | false success {k} ↓" for k in kinds) + " |",
              "|---|" + "---|---|" * len(kinds)]
    for name, metrics in results.items():
        cells = [f"{_cell(metrics[f'auroc[{k}]'])} | {_cell(metrics[f'false_success_rate[{k}]'])}" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_markdown(paired: dict[str, dict]) -> str:
    lines = ["Paired differences (A - B, both on the same resampled episodes; an interval clear of 0 "
             "separates the two):", "", "| A - B | " + " | ".join(label for _, label in PAIRED) + " |",
             "|---|" + "---|" * len(PAIRED)]
    lines += [f"| {pair} | " + " | ".join(_cell(metrics[key]) for key, _ in PAIRED) + " |"
              for pair, metrics in paired.items()]
    return "\n".join(lines)


def _cell(value: tuple[float, float, float]) -> str:
    estimate, low, high = value
    return "n/a" if np.isnan(estimate) else f"{estimate:.2f} [{low:.2f}, {high:.2f}]"


def plot_curves(path: Path, truth: list[EpisodeTruth], sources: dict[str, dict[int, np.ndarray]], fps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []
    for kind in ["success", *sorted({e.kind for e in truth} - {"success"})]:
        shown += [e for e in truth if e.kind == kind][:2 if kind == "success" else 1]
    columns = 3
    rows = -(-len(shown) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.8 * rows), squeeze=False)
    for ax, episode in zip(axes.flat, shown, strict=False):
        time = np.arange(len(episode.progress)) / fps
        ax.plot(time, episode.progress, color="black", linewidth=2.5, label="ground truth")
        for name, rewards in sources.items():
            ax.plot(time, rewards[episode.index], label=name, linewidth=1.3)
        ax.set(title=f"episode {episode.index}: {episode.kind}", ylim=(-0.05, 1.05), xlabel="s")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_metrics(path: Path, results: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["exact", "within_one", "spearman", "auroc", "f1"]
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(keys) * len(results) / 3), 3.4))
    width = 0.8 / len(results)
    for i, (name, metrics) in enumerate(results.items()):
        estimates = np.array([metrics[k][0] for k in keys])
        errors = np.abs(np.array([[metrics[k][1] for k in keys], [metrics[k][2] for k in keys]]) - estimates)
        ax.bar(np.arange(len(keys)) + i * width, np.nan_to_num(estimates), width, yerr=np.nan_to_num(errors),
               label=name, capsize=2)
    ax.set_xticks(np.arange(len(keys)) + width * (len(results) - 1) / 2, keys)
    ax.set(ylim=(-0.2, 1.05), ylabel="higher is better")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(source: EpisodeSource, specs: dict[str, str], episodes: list[int], out: Path,
            samples: int = 1000, seed: int = 0, pairs: Sequence[tuple[str, str]] = ()) -> dict:
    """Score every source; `pairs` (A, B) of source names also get metric(A) - metric(B), paired."""
    if unknown := sorted({name for pair in pairs for name in pair} - set(specs)):
        raise DatasetError(f"--pair names {', '.join(unknown)}, which is not a --source name")
    rewards = {name: load_source(spec, source, episodes) for name, spec in specs.items()}
    out.mkdir(parents=True, exist_ok=True)
    truth = load_truth(source, episodes)
    if truth is None:
        names = list(rewards)
        pairs = {f"{a} vs {b}": agreement(rewards[a], rewards[b]) for i, a in enumerate(names) for b in names[i + 1:]}
        report = {"ground_truth": False, "agreement": pairs}
        text = ["This dataset has no ground truth: only agreement between sources is reported.", "",
                "| sources | MAE (1-5) | Spearman |", "|---|---|---|"]
        text += [f"| {pair} | {v['mae']:.2f} | {v['spearman']:.2f} |" for pair, v in pairs.items()]
        (out / "results.md").write_text("\n".join(text) + "\n")
    else:
        results = {name: bootstrap(truth, values, samples, seed) for name, values in rewards.items()}
        paired = {f"{a} - {b}": paired_bootstrap(truth, rewards[a], rewards[b], samples, seed) for a, b in pairs}
        report = {"ground_truth": True, "episodes": episodes, "bootstrap_samples": samples, "seed": seed,
                  "metrics": {n: {k: list(v) for k, v in m.items()} for n, m in results.items()},
                  "paired": {n: {k: list(v) for k, v in m.items()} for n, m in paired.items()}}
        text = markdown(results, truth) + ("\n\n" + paired_markdown(paired) if paired else "")
        (out / "results.md").write_text(text + "\n")
        plot_curves(out / "curves.png", truth, rewards, source.fps)
        plot_metrics(out / "metrics.png", results)
    report["sources"] = specs
    (out / "results.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--revision", help="hub dataset: branch, tag or commit (default: LeRobot's codebase version tag)")
    parser.add_argument("--source", action="extend", nargs="+", required=True, metavar="NAME=KIND[:PATH]",
                        help="one or more per flag; the flag may be repeated")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--episodes", help="e.g. 0,3,5-9 (default: all)")
    parser.add_argument("--pair", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="two source names: report metric(A) - metric(B) with a paired interval (repeatable)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    specs = {}
    for item in args.source:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise DatasetError(f"--source '{item}' should be NAME=KIND[:PATH]")
        specs[name] = spec
    source = EpisodeSource.open(args.dataset, args.revision)
    episodes = parse_episodes(args.episodes) or source.episode_indices
    for episode in episodes:
        source.episode(episode)
    source.fetch(episodes, folders=[GROUND_TRUTH_DIR])  # reward sources read them through LeRobot's readers
    report = compare(source, specs, episodes, args.out, args.bootstrap, args.seed, [tuple(p) for p in args.pair])
    print((args.out / "results.md").read_text())
    plots = ", curves.png, metrics.png" if report["ground_truth"] else ""
    print(f"wrote {args.out}/results.md, results.json{plots}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

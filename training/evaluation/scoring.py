"""Score reward sources against simulator ground truth (or, without it, against each other):
per-episode metrics with bootstrap intervals, paired differences, curves and a results page.
`training.compare` is its command."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import training.evaluation.predict  # noqa: F401  (registers the `rewact` reward source)
from common.cli import DatasetError
from common.dataset import EpisodeSource
from common.ground_truth import has_ground_truth, read_ground_truth_by_episode
from common.reward_sources import LabelError, missing_episodes, read_rewards
from training.evaluation.metrics import EpisodeTruth, agreement, bootstrap, paired_bootstrap
from training.evaluation.plots import pyplot

HEADLINE = [("mae", "MAE (1-5) ↓"), ("exact", "exact ↑"), ("within_one", "within-1 ↑"), ("spearman", "Spearman ↑"),
            ("kendall", "Kendall τ ↑"), ("voc", "VOC ↑"), ("auroc", "AUROC ↑"), ("f1", "F1 ↑"),
            ("false_success_rate", "false success ↓"), ("false_success_at_95", "false success @95 % TPR ↓")]
PAIRED = [("mae", "Δ MAE (1-5)"), ("voc", "Δ VOC"), ("auroc", "Δ AUROC"),
          ("false_success_at_95", "Δ false success @95 % TPR")]


def load_truth(source: EpisodeSource, episodes: list[int]) -> list[EpisodeTruth] | None:
    if not has_ground_truth(source.root):
        return None
    by_episode, kinds = read_ground_truth_by_episode(source.root)
    kinds = kinds.set_index("episode_index")
    truth = []
    for episode in episodes:
        rows = by_episode[episode]
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
    if missing := [e for e in episodes if e not in set(table.episode_index)]:
        raise DatasetError(missing_episodes(spec, missing))
    rewards = {}
    for episode, rows in table[table.episode_index.isin(episodes)].groupby("episode_index"):
        values = rows.sort_values("frame_index").reward.to_numpy(dtype=float)
        if len(values) != lengths[episode]:
            raise DatasetError(f"source '{spec}': episode {episode} has {len(values)} rewards, "
                               f"the dataset has {lengths[episode]} frames")
        rewards[int(episode)] = values
    return rewards


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
    plt = pyplot()

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
    plt = pyplot()

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

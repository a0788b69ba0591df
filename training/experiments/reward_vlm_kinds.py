"""Does a reward VLM label every kind of episode right? Held-out numbers per kind, a row per model.

    python -m training.experiments.reward_vlm_kinds --dataset outputs/reward_vlm_detours/heldout \
        --models today=models/metaworld-reward-vlm,detours=outputs/reward_vlm_detours/model \
        [--work outputs/reward_vlm_kinds] [--results docs/results/reward_vlm_kinds] [--episodes 0-9]

Each model labels the episodes of a generated benchmark (`data.generate`, its simulator truth
beside it) through `labeling.run --stages progress` with the run's defaults; the labeler sees
the pixels and the task only. Per model and kind (the successes' kinds, hesitation, recovered
drop, ..., and the failures'): label MAE (1-5); whether the labels end right (a success at the
top score, a failure below it); for successes whose truth dips, the share whose labels show
the dip (its bottom within a level of the true one) and the share that also end at the top
score. Over every episode: MAE and the final frame's failure AUROC. 95 % bootstrap intervals
over episodes. Labeled models are kept in the work directory: running again only scores.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.cli import ConfigError, parse_names, run_cli
from common.dataset import EpisodeSource
from common.ground_truth import require_ground_truth
from common.label_files import frames_file
from common.options import as_record, command_line, option, parse_options
from common.scale import nearest_score
from training.evaluation.metrics import SUCCESS_SCORE, EpisodeTruth, bootstrap, bootstrap_share, dip_hits
from training.evaluation.plots import pyplot
from training.evaluation.scoring import load_source, load_truth
from training.experiments.workbench import run, step

PROG = "python -m training.experiments.reward_vlm_kinds"
NAN = (math.nan, math.nan, math.nan)


def parse_models(spec: str) -> tuple[tuple[str, str], ...]:
    """'today=models/a,new=outputs/b' -> (('today', 'models/a'), ('new', 'outputs/b'))."""
    models = []
    for item in parse_names(spec):
        name, _, path = item.partition("=")
        if not name or not path:
            raise ConfigError(f"--models takes NAME=PATH pairs, got '{item}'")
        models.append((name, path))
    return tuple(models)


@dataclass(frozen=True)
class KindsOptions:
    """Does a reward VLM label every kind of episode right? Held-out numbers per kind, a row per model."""

    dataset: Path = option(help="a data.generate benchmark (its ground_truth/ sidecar scores the labels)")
    models: tuple[tuple[str, str], ...] = option(parse=parse_models, help="comma-separated NAME=PATH (or hub id) "
                                                 "of the VLMs to compare, e.g. today=models/metaworld-reward-vlm")
    work: Path = option(Path("outputs/reward_vlm_kinds"), help="each model's labels; kept and reused")
    results: Path = option(Path("docs/results/reward_vlm_kinds"), help="where the table, plot and results.json go")
    episodes: str | None = option(None, help="e.g. 0-11 (default: all)")
    device: str = option("cpu", help="torch device labeling.run uses: cpu, cuda")
    image_size: int = option(96, help="pixels on a side of what the VLM sees (the reward VLM's training size)")
    samples: int = option(1000, help="bootstrap resamples")
    seed: int = option(0, help="bootstrap seed")

    def __post_init__(self):
        require_ground_truth(self.dataset)
        names = [name for name, _ in self.models]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"--models needs one or more distinct names, got {', '.join(names) or 'none'}")


def kind_row(kind: str, episodes: list[EpisodeTruth], rewards: dict[int, np.ndarray], samples: int,
             seed: int) -> dict:
    """One kind's numbers under one model's labels."""
    labels = {e.index: nearest_score(rewards[e.index]) for e in episodes}
    ends_right = np.array([(labels[e.index][-1] == SUCCESS_SCORE) == e.success for e in episodes], dtype=float)
    visible, recovered = dip_hits(episodes, labels)
    return {"kind": kind, "episodes": len(episodes), "success": episodes[0].success,
            "mae": bootstrap(episodes, rewards, samples, seed)["mae"],
            "ends_right": bootstrap_share(ends_right, samples, seed),
            "dip_episodes": len(visible),
            "dip_visible": bootstrap_share(visible, samples, seed) if len(visible) else NAN,
            "dip_recall": bootstrap_share(recovered, samples, seed) if len(visible) else NAN}


def model_rows(truth: list[EpisodeTruth], rewards: dict[int, np.ndarray], samples: int, seed: int) -> dict:
    kinds = sorted({e.kind for e in truth}, key=lambda k: (not any(e.success for e in truth if e.kind == k), k))
    overall = bootstrap(truth, rewards, samples, seed)
    return {"mae": overall["mae"], "auroc": overall["auroc"],
            "kinds": [kind_row(kind, [e for e in truth if e.kind == kind], rewards, samples, seed) for kind in kinds]}


def markdown(results: dict[str, dict], episodes: int) -> str:
    def cell(value) -> str:
        return "n/a" if math.isnan(value[0]) else f"{value[0]:.2f} [{value[1]:.2f}, {value[2]:.2f}]"

    lines = [f"{episodes} held-out episodes; 95 % bootstrap intervals over episodes.", "",
             "| model | MAE (1-5) ↓ | failure AUROC ↑ |", "|---|---|---|"]
    lines += [f"| {name} | {cell(r['mae'])} | {cell(r['auroc'])} |" for name, r in results.items()]
    lines += ["", "| model | kind | episodes | MAE (1-5) ↓ | ends right ↑ | dip visible ↑ | dip visible, ends at 5 ↑ |",
              "|---" * 7 + "|"]
    for name, r in results.items():
        for row in r["kinds"]:
            dips = f" (of {row['dip_episodes']})" if row["dip_episodes"] else ""
            lines.append(f"| {name} | {row['kind']}{'' if row['success'] else ' (failure)'} | {row['episodes']} | "
                         f"{cell(row['mae'])} | {cell(row['ends_right'])} | {cell(row['dip_visible'])}{dips} | "
                         f"{cell(row['dip_recall'])} |")
    return "\n".join(lines) + "\n"


def plot(path: Path, results: dict[str, dict]) -> None:
    plt = pyplot()

    kinds = [row["kind"] for row in next(iter(results.values()))["kinds"]]
    panels = (("mae", "label MAE (1-5) ↓"), ("ends_right", "ends right ↑"), ("dip_recall", "dip visible, ends at 5 ↑"))
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5))
    width = 0.8 / len(results)
    for axis, (key, title) in zip(axes, panels, strict=True):
        for offset, (name, r) in enumerate(results.items()):
            values = np.array([row[key] for row in r["kinds"]], dtype=float)
            x = np.arange(len(kinds)) + (offset - (len(results) - 1) / 2) * width
            errors = np.abs(values[:, 1:].T - values[:, 0])
            axis.bar(x, values[:, 0], width, yerr=np.nan_to_num(errors), capsize=2, label=name)
        axis.set_xticks(np.arange(len(kinds)), kinds, rotation=35, ha="right", fontsize=8)
        axis.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(KindsOptions, argv, prog=PROG)
    source = EpisodeSource.open(options.dataset)
    options.work.mkdir(parents=True, exist_ok=True)
    timings: list = []
    picked = ["--episodes", options.episodes] if options.episodes else []
    labeled = {}
    for name, model in options.models:
        out = options.work / "".join(c if c.isalnum() else "_" for c in name)
        labeled[name] = out
        step(f"label with {name}", out, timings, lambda out=out, model=model: run(
            [sys.executable, "-m", "labeling.run", "--dataset", str(options.dataset), "--out", str(out),
             "--model", model, "--device", options.device, "--image-size", str(options.image_size),
             "--stages", "progress", "--quiet", *picked], out.with_name(out.name + ".log")))
    start = time.perf_counter()
    episodes = sorted(set(pd.read_parquet(frames_file(next(iter(labeled.values()))), columns=["episode_index"])
                          .episode_index.astype(int)))  # the source's numbering, as the sidecar keeps it
    truth = load_truth(source, episodes)
    results = {name: model_rows(truth, load_source(f"labels:{path}", source, episodes), options.samples, options.seed)
               for name, path in labeled.items()}
    timings.append({"step": "score", "seconds": round(time.perf_counter() - start, 1)})
    options.results.mkdir(parents=True, exist_ok=True)
    (options.results / "kinds.md").write_text(markdown(results, len(episodes)))
    plot(options.results / "kinds.png", results)
    record = {"command": command_line(PROG, argv), "options": as_record(options), "episodes": episodes,
              "results": results, "timings": timings}
    (options.results / "results.json").write_text(json.dumps(record, indent=2))
    print((options.results / "kinds.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""How many progress calls does a long episode need? The keyframe scheme's cost-quality frontier.

    python -m training.experiments.keyframe_frontier --dataset DIR [--preset full|smoke]
        [--work outputs/keyframe_frontier] [--results docs/results/keyframe_frontier]
        [--model DIR_OR_HUB_ID --device cuda] [--episodes 0-11] [--label-cameras corner2,topview]
        [--schemes 6/12,0.25/s+gaps2s] [--dense-every 8]

Each keyframe scheme labels the same episodes of a generated benchmark (`data.generate`, with
its simulator truth beside it) through `labeling.run --stages progress`; every scheme reads one
answer cache, so a keyframe two schemes share is asked once. Per scheme: progress calls per
frame and per episode-second; label MAE against the simulator's progress, its difference from
dense scoring (paired); final-frame AUROC of successes against failures; and on successes
whose truth dips (an object dropped, then regrasped) the share whose labels show the dip
(`training.evaluation.metrics.dip_visible`) and the share that also end at the top score
(`dip_recovered`). 95 % bootstrap intervals over episodes. Dense scoring is a keyframe every
`--dense-every` frames, no refinement. Every scheme is filled the same way (`--fill`), so the
rows differ only in where the model is asked.
Labeled schemes are kept in the work directory: running the command again only scores.
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
from common.ground_truth import require_ground_truth, sidecar_dir
from common.options import as_record, command_line, option, parse_options
from common.scale import nearest_score
from training.evaluation.metrics import SUCCESS_SCORE, bootstrap, bootstrap_share, dip_hits, paired_bootstrap
from training.evaluation.scoring import load_source, load_truth
from training.experiments.workbench import plot_frontier, run, step

PROG = "python -m training.experiments.keyframe_frontier"
REWARD_VLM = Path(__file__).resolve().parents[2] / "models" / "metaworld-reward-vlm"
DENSE = "dense"
# A keyframe scheme: labeling.run's progress options. Every scheme names its keyframe counts,
# rate and gap rule, so a change of those defaults never changes what a row measured.
# "I/M": I initial keyframes, at most M calls (6/12: the scheme until issue 22); "r/s": r initial
# keyframes per second of episode (floors 6/12, cap 48); "+gapsNs": gaps over N s split.
COUNT_ONLY = {"--keyframes-per-second": "0", "--max-gap-seconds": "0"}
SCHEMES = {
    "3/6": {"--initial-keyframes": "3", "--max-keyframes": "6", **COUNT_ONLY},
    "6/12": {"--initial-keyframes": "6", "--max-keyframes": "12", **COUNT_ONLY},
    "12/24": {"--initial-keyframes": "12", "--max-keyframes": "24", **COUNT_ONLY},
    "0.25/s": {"--initial-keyframes": "6", "--max-keyframes": "12", "--keyframes-per-second": "0.25",
               "--max-gap-seconds": "0"},
    "0.25/s+gaps2s": {"--initial-keyframes": "6", "--max-keyframes": "12", "--keyframes-per-second": "0.25",
                         "--max-gap-seconds": "2"},
    "0.5/s": {"--initial-keyframes": "6", "--max-keyframes": "12", "--keyframes-per-second": "0.5",
              "--max-gap-seconds": "0"},
    "0.5/s+gaps2s": {"--initial-keyframes": "6", "--max-keyframes": "12", "--keyframes-per-second": "0.5",
                        "--max-gap-seconds": "2"},
    "1/s": {"--initial-keyframes": "6", "--max-keyframes": "12", "--keyframes-per-second": "1",
            "--max-gap-seconds": "0"},
}
PRESETS = {
    "full": (DENSE, *SCHEMES),  # the reference first
    # Plumbing check for the test suite: two schemes on the episodes given; its numbers mean nothing.
    "smoke": (DENSE, "6/12"),
}
PANELS = (("mae", "label MAE (1-5) ↓"), ("auroc", "failure AUROC ↑"), ("dip_visible", "dip visible ↑"),
          ("dip_recall", "dip visible, ends at 5 ↑"))


@dataclass(frozen=True)
class FrontierOptions:
    """How many progress calls does a long episode need? The keyframe scheme's cost-quality frontier."""

    dataset: Path = option(help="a data.generate benchmark (its ground_truth/ sidecar scores the labels)")
    preset: str = option("full", choices=tuple(PRESETS), help="which schemes: full, or smoke (two, a plumbing check)")
    schemes: tuple[str, ...] = option((), parse=parse_names, help="comma-separated schemes of the preset to run "
                                      "(default: all of them; dense is always run, as the reference)")
    work: Path = option(Path("outputs/keyframe_frontier"), help="labels of every scheme and their shared answer cache")
    results: Path = option(Path("docs/results/keyframe_frontier"), help="where the table, plot and results.json go")
    model: str = option(str(REWARD_VLM), help="VLM for labeling.run; the default is the reward VLM trained here")
    device: str = option("cpu", help="torch device labeling.run uses: cpu, cuda")
    image_size: int = option(96, help="pixels on a side of what the VLM sees (the reward VLM's training size)")
    label_cameras: tuple[str, ...] = option((), parse=parse_names, help="comma-separated views shown to the VLM "
                                            "(default: all recorded)")
    episodes: str | None = option(None, help="e.g. 0-11 (default: all)")
    fill: str = option("piecewise", help="the fill every scheme uses")
    dense_every: int = option(4, help="dense scoring: a keyframe every this many frames")
    samples: int = option(1000, help="bootstrap resamples")
    seed: int = option(0, help="bootstrap seed")

    def __post_init__(self):
        require_ground_truth(self.dataset)
        if unknown := sorted(set(self.schemes) - set(PRESETS[self.preset])):
            raise ConfigError(f"unknown scheme(s) {', '.join(unknown)}; "
                              f"the preset has {', '.join(PRESETS[self.preset])}")
        if self.dense_every < 1:
            raise ConfigError(f"dense_every must be at least 1, got {self.dense_every}")


def scheme_arguments(name: str, fps: int, dense_every: int) -> dict[str, str]:
    """labeling.run's progress options of a scheme. Dense: a keyframe every `dense_every` frames
    through the per-second rate, with nothing left for refinement to find."""
    if name != DENSE:
        return SCHEMES[name]
    return {"--initial-keyframes": "1", "--max-keyframes": "1", "--keyframes-per-second": str(fps / dense_every),
            "--keyframe-cap": "100000", "--jump-threshold": "5", "--dip-threshold": "5", "--max-gap-seconds": "0"}


def calls_per_episode(labeled: Path) -> pd.Series:
    """Progress calls of each episode: its scored keyframes, readable or not."""
    keyframes = pd.read_parquet(labeled / "labels" / "keyframes.parquet", columns=["episode_index"])
    return keyframes.groupby("episode_index").size()


def scheme_row(name: str, labeled: Path, source: EpisodeSource, episodes: list[int], dense: dict[int, np.ndarray],
               samples: int, seed: int) -> dict:
    """One scheme's cost and quality, with intervals over episodes."""
    truth = load_truth(source, episodes)
    rewards = load_source(f"labels:{labeled}", source, episodes)
    metrics = bootstrap(truth, rewards, samples, seed)
    calls = calls_per_episode(labeled).reindex(episodes, fill_value=0)
    frames = sum(len(e.score) for e in truth)
    successes = [e for e in truth if e.success]
    labels = {e.index: nearest_score(rewards[e.index]) for e in truth}
    ends_at_top = np.array([labels[e.index][-1] == SUCCESS_SCORE for e in successes], dtype=float)
    visible, recovered = dip_hits(truth, labels)
    nan = (math.nan, math.nan, math.nan)
    return {
        "scheme": name, "calls": int(calls.sum()), "calls_per_frame": float(calls.sum() / frames),
        "calls_per_episode_second": float(calls.sum() / (frames / source.fps)),
        "mae": metrics["mae"], "auroc": metrics["auroc"],
        "mae_minus_dense": paired_bootstrap(truth, rewards, dense, samples, seed)["mae"],
        "ends_at_top": bootstrap_share(ends_at_top, samples, seed) if len(successes) else nan,
        "dip_visible": bootstrap_share(visible, samples, seed) if len(visible) else nan,
        "dip_recall": bootstrap_share(recovered, samples, seed) if len(visible) else nan,
        "dip_episodes": len(visible), "successes": len(successes),
    }


def markdown(rows: list[dict], episodes: int, seconds: float, dense_every: int) -> str:
    def cell(value: tuple[float, float, float]) -> str:
        return "n/a" if math.isnan(value[0]) else f"{value[0]:.2f} [{value[1]:.2f}, {value[2]:.2f}]"

    lines = [f"{episodes} episodes, {seconds:.0f} s of recording; dense = a keyframe every {dense_every} frames. "
             "95 % bootstrap intervals over episodes.", "",
             "| scheme | calls / frame | calls / episode-second | MAE (1-5) ↓ | MAE − dense | AUROC ↑ | "
             "successes ending at 5 ↑ | dip visible ↑ | dip visible, ends at 5 ↑ |", "|---" * 9 + "|"]
    lines += [f"| {r['scheme']} | {r['calls_per_frame']:.4f} | {r['calls_per_episode_second']:.2f} | "
              f"{cell(r['mae'])} | {cell(r['mae_minus_dense'])} | {cell(r['auroc'])} | {cell(r['ends_at_top'])} | "
              f"{cell(r['dip_visible'])} | {cell(r['dip_recall'])} (of {r['dip_episodes']}) |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    options = parse_options(FrontierOptions, argv, prog=PROG)
    source = EpisodeSource.open(options.dataset)
    timings: list = []
    options.work.mkdir(parents=True, exist_ok=True)
    cameras = ["--cameras", *options.label_cameras] if options.label_cameras else []
    picked = ["--episodes", options.episodes] if options.episodes else []
    labeled = {}
    for name in [n for n in PRESETS[options.preset] if not options.schemes or n in options.schemes or n == DENSE]:
        arguments = scheme_arguments(name, source.fps, options.dense_every)
        out = options.work / "".join(c if c.isalnum() else "_" for c in name)
        labeled[name] = out
        step(f"label with {name}", out, timings, lambda out=out, arguments=arguments: run(
            [sys.executable, "-m", "labeling.run", "--dataset", str(options.dataset), "--out", str(out),
             "--model", options.model, "--device", options.device, "--image-size", str(options.image_size),
             "--stages", "progress", "--cache-dir", str(options.work / "answers"), "--fill", options.fill, "--quiet",
             *cameras, *picked, *[part for item in arguments.items() for part in item]],
            options.work / f"{out.name}.log"))
    episodes = sorted(calls_per_episode(labeled[DENSE]).index.astype(int))
    dense = load_source(f"labels:{labeled[DENSE]}", source, episodes)
    start = time.perf_counter()
    rows = [scheme_row(name, path, source, episodes, dense, options.samples, options.seed)
            for name, path in labeled.items()]
    timings.append({"step": "score", "seconds": round(time.perf_counter() - start, 1)})
    seconds = sum(source.episode(e).length for e in episodes) / source.fps
    options.results.mkdir(parents=True, exist_ok=True)
    (options.results / "frontier.md").write_text(markdown(rows, len(episodes), seconds, options.dense_every))
    plot_frontier(options.results / "frontier.png", rows, PANELS)
    generated = sidecar_dir(options.dataset) / "config.json"  # how data.generate recorded it, seeds included
    record = {"command": command_line(PROG, argv), "options": as_record(options), "episodes": episodes,
              "dataset_generated_with": json.loads(generated.read_text()) if generated.is_file() else None,
              "fps": source.fps, "seconds": seconds, "bootstrap_seed": options.seed,
              "schemes": {name: scheme_arguments(name, source.fps, options.dense_every) for name in labeled},
              "rows": rows, "timings": timings}
    (options.results / "results.json").write_text(json.dumps(record, indent=2))
    print((options.results / "frontier.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

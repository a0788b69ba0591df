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

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import DatasetError, parse_episodes, run_cli
from common.dataset import REVISION_HELP, EpisodeSource
from common.ground_truth import GROUND_TRUTH_DIR
from common.options import option, parse_options
from training.evaluation.scoring import compare


@dataclass(frozen=True)
class CompareOptions:
    """Score reward sources against simulator ground truth (or, without it, against each other)."""

    dataset: str = option(help="hub repo id or local LeRobot dataset directory")
    source: tuple[str, ...] = option(help="NAME=KIND[:PATH], one or more per flag; the flag may be repeated",
                                     metavar="NAME=KIND[:PATH]")
    out: Path = option(help="directory for results.md, results.json and the plots")
    revision: str | None = option(None, help=REVISION_HELP)
    episodes: list[int] | None = option(None, help="e.g. 0,3,5-9 (default: all)", parse=parse_episodes)
    pair: tuple[tuple[str, str], ...] = option((), help="two source names: report metric(A) - metric(B) with a "
                                                        "paired interval (repeatable)", metavar=("A", "B"))
    bootstrap: int = option(1000, help="bootstrap resamples")
    seed: int = option(0, help="bootstrap seed")

    def specs(self) -> dict[str, str]:
        specs = {}
        for item in self.source:
            name, sep, spec = item.partition("=")
            if not sep or not name or not spec:
                raise DatasetError(f"--source '{item}' should be NAME=KIND[:PATH]")
            specs[name] = spec
        return specs


def main(argv: list[str] | None = None) -> int:
    options = parse_options(CompareOptions, argv, prog="python -m training.compare")
    specs = options.specs()
    source = EpisodeSource.open(options.dataset, options.revision)
    episodes = options.episodes or source.episode_indices
    for episode in episodes:
        source.episode(episode)
    source.fetch(episodes, folders=[GROUND_TRUTH_DIR])  # reward sources read them through LeRobot's readers
    report = compare(source, specs, episodes, options.out, options.bootstrap, options.seed, options.pair)
    print((options.out / "results.md").read_text())
    plots = ", curves.png, metrics.png" if report["ground_truth"] else ""
    print(f"wrote {options.out}/results.md, results.json{plots}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Per-frame advantages of a dataset from a reward source, for ACTvantage (`--policy.type=actvantage`).

    python -m training.advantage --dataset outputs/labeled --values labels:outputs/labeled \
        --n-step 50 --positive-fraction 0.7 [--out outputs/labeled/advantages.parquet]

Writes the advantage table (`common.advantages`; by default where ACTvantage looks for it, the
dataset's root), a histogram of the advantages beside it (.png) and what made it (.json).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from common.advantages import default_path
from common.cli import ConfigError, run_cli
from common.dataset import EpisodeSource
from common.options import as_record, option, parse_options
from common.reward_sources import read_rewards
from rewact.labels import episode_spans
from training.policies.advantages import compute_advantages, episode_outcomes, plot_histogram


@dataclass(frozen=True)
class AdvantageOptions:
    """Per-frame advantages of a dataset from a reward source, for ACTvantage."""

    dataset: str = option(help="local LeRobot dataset directory or hub repo id")
    values: str = option(help="the value of each frame, any reward source: labels:DIR|rewact:CKPT|ground_truth|"
                              "interpolation|keypoints:PATH|dataset")
    n_step: int = option(50, help="frames ahead the advantage looks")
    positive_fraction: float = option(0.7, help="share of frames conditioned positive: those above the "
                                                "(1 - F) quantile of the advantages")
    out: Path | None = option(None, help="advantage table to write (default: <dataset>/advantages.parquet, "
                                         "where ACTvantage reads it)")

    def __post_init__(self):
        if self.n_step < 1:
            raise ConfigError(f"--n-step must be >= 1, got {self.n_step}")
        if not 0.0 < self.positive_fraction < 1.0:
            raise ConfigError(f"--positive-fraction must be in (0, 1), got {self.positive_fraction}")


def main(argv: list[str] | None = None) -> int:
    options = parse_options(AdvantageOptions, argv, prog="python -m training.advantage")
    source = EpisodeSource.open(options.dataset)
    out = options.out or default_path(source.root)
    values = read_rewards(options.values, source.meta)
    outcomes = episode_outcomes(options.values, source.root)
    advantages = compute_advantages(values, episode_spans(source.meta), outcomes, options.n_step,
                                    options.positive_fraction)
    out.parent.mkdir(parents=True, exist_ok=True)
    advantages.table.to_parquet(out, index=False)
    plot_histogram(advantages, out.with_suffix(".png"), f"{source.repo_id}: {options.values}, N = {options.n_step}")
    summary = {"options": as_record(options), "frames": len(advantages.table),
               "episodes": int(advantages.table["episode_index"].nunique()), "threshold": advantages.threshold,
               "positive_fraction": advantages.positive_fraction,
               "failed_episodes": None if outcomes is None else sorted(e for e, ok in outcomes.items() if not ok)}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    print(f"{summary['frames']} frames of {summary['episodes']} episodes, "
          f"{advantages.positive_fraction:.0%} positive (advantage > {advantages.threshold:.4f}): {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""What limits RewACT's reward head when its labels are perfect? A small ablation, CPU.

    python -m training.experiments.ceiling [--work outputs/experiment] [--preset full]
        [--results docs/results/experiment_unflagged_failures/ceiling] [--cameras corner2,behindGripper]

RewACT is trained on the simulator's ground truth (row (c) of `training.experiments.unflagged_failures`, seed 0, on
the same splits: generated here if `--work` lacks them) with one setting changed at a time:
more steps, a heavier reward loss, the head reading the encoder's image tokens instead of the
decoder's action query, and a reward loss that weighs each fifth of the reward range alike.
`--cameras` and the split sizes record other splits (in a new `--work`). Every variant is scored
on the held-out seeds with bootstrap intervals, overall and per failure kind. The pipeline's rows
cannot beat this ceiling, so it is raised first. Finished steps are skipped when the command is
run again.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from common.cli import ConfigError, parse_ints, run_cli
from common.dataset import EpisodeSource
from common.options import as_record, command_line, option, parse_options
from training.evaluation.scoring import compare
from training.experiments.workbench import RewACTRunOptions, SplitOptions, generate_splits, train_rewact

# name -> (steps as a multiple of the preset's, lerobot overrides); the first is the experiment's (c).
VARIANTS = {
    "ground truth (the experiment's (c))": (1.0, []),
    "2.5x steps": (2.5, []),
    "reward loss weight 10": (1.0, ["--policy.reward_loss_weight=10"]),
    "head on encoder image tokens": (1.0, ["--policy.reward_features=encoder_images"]),
    "reward loss balanced over label values": (1.0, ["--policy.reward_balance=label_frequency"]),
}
SEED = 0
PROG = "python -m training.experiments.ceiling"


@dataclass(frozen=True)
class CeilingOptions:
    """What limits RewACT's reward head when its labels are perfect? A small ablation, CPU."""

    data: SplitOptions = field(default_factory=SplitOptions)
    rewact: RewACTRunOptions = field(default_factory=RewACTRunOptions)
    results: Path = option(Path("docs/results/experiment_unflagged_failures/ceiling"),
                           help="where results.md, results.json and the plots go")
    variants: tuple[int, ...] = option(tuple(range(len(VARIANTS))), parse=parse_ints,
                                       help="comma-separated indices into the variant list")

    def __post_init__(self):
        if unknown := sorted(set(self.variants) - set(range(len(VARIANTS)))):
            raise ConfigError(f"unknown variant(s) {', '.join(map(str, unknown))}; choose from 0-{len(VARIANTS) - 1}")


def main(argv: list[str] | None = None) -> int:
    options = parse_options(CeilingOptions, argv, prog=PROG)
    data, timings = options.data, []
    preset = data.sized_preset
    batch_size = options.rewact.batch_size or preset.batch_size
    data.work.mkdir(parents=True, exist_ok=True)
    train, heldout, _ = generate_splits(data.work, preset, preset.tasks, preset.heldout_task, data.data_seed,
                                        data.rollout, timings)
    sources, settings = {"interpolation (raw)": "interpolation"}, {}
    for index in options.variants:
        name = list(VARIANTS)[index]
        scale, overrides = VARIANTS[name]
        steps = max(1, round(preset.steps * scale))
        sources[name] = train_rewact(name, train, ["--label-source", "ground_truth"], data.work / f"ceiling_{index}",
                                     steps, batch_size, options.rewact.device, SEED, overrides, timings)
        settings[name] = {"steps": steps, "overrides": overrides}
    source = EpisodeSource.open(heldout)
    report = compare(source, sources, source.episode_indices, options.results, samples=1000, seed=0)
    report.update({"command": command_line(PROG, argv), "options": as_record(options), "variants": settings, "rewact_seed": SEED,
                   "data_seed": data.data_seed, "timings": timings})
    (options.results / "results.json").write_text(json.dumps(report, indent=2))
    print((options.results / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

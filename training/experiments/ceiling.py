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

import argparse
import json
import sys
from pathlib import Path

from common.cli import run_cli
from common.dataset import EpisodeSource
from training.evaluation.scoring import compare
from training.experiments.workbench import PRESETS, add_data_arguments, data_settings, generate_splits, train_rewact

# name -> (steps as a multiple of the preset's, lerobot overrides); the first is the experiment's (c).
VARIANTS = {
    "ground truth (the experiment's (c))": (1.0, []),
    "2.5x steps": (2.5, []),
    "reward loss weight 10": (1.0, ["--policy.reward_loss_weight=10"]),
    "head on encoder image tokens": (1.0, ["--policy.reward_features=encoder_images"]),
    "reward loss balanced over label values": (1.0, ["--policy.reward_balance=label_frequency"]),
}
SEED = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.experiments.ceiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--work", type=Path, default=Path("outputs/experiment"))
    parser.add_argument("--results", type=Path, default=Path("docs/results/experiment_unflagged_failures/ceiling"))
    parser.add_argument("--variants", help="comma-separated indices into the variant list (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, help="RewACT batch size (default: the preset's)")
    add_data_arguments(parser)
    parser.add_argument("--data-seed", type=int, default=300)
    args = parser.parse_args(argv)
    (preset, rollout), timings = data_settings(parser, args), []
    batch_size = args.batch_size or preset.batch_size
    args.work.mkdir(parents=True, exist_ok=True)
    train, heldout, _ = generate_splits(args.work, preset, preset.tasks, preset.heldout_task, args.data_seed,
                                        rollout, timings)
    chosen = list(VARIANTS) if not args.variants else [list(VARIANTS)[int(i)] for i in args.variants.split(",")]
    sources, settings = {"interpolation (raw)": "interpolation"}, {}
    for name in chosen:
        index = list(VARIANTS).index(name)
        scale, overrides = VARIANTS[name]
        steps = max(1, round(preset.steps * scale))
        sources[name] = train_rewact(name, train, ["--label-source", "ground_truth"], args.work / f"ceiling_{index}",
                                     steps, batch_size, args.device, SEED, overrides, timings)
        settings[name] = {"steps": steps, "overrides": overrides}
    source = EpisodeSource.open(heldout)
    report = compare(source, sources, source.episode_indices, args.results, samples=1000, seed=0)
    report.update({"command": "python -m training.experiments.ceiling " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "variants": settings, "rewact_seed": SEED, "data_seed": args.data_seed, "timings": timings})
    (args.results / "results.json").write_text(json.dumps(report, indent=2))
    print((args.results / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

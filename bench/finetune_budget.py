"""Does `make reward-vlm` train the small reward VLM within its 30-minute CPU budget?

    python bench/finetune_budget.py [--steps 30] [--budget-min 30] [--planned-steps 2000]

Trains the from-scratch small model for a few steps on the bundled demo with the settings
`make reward-vlm` uses (96 px, two cameras tiled, batch 8, soft targets), measures the time
per step in this run and prints the projected training time of the planned steps as a ratio
of the budget (below 1 fits).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from training.finetune_vlm import main as finetune

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo_metaworld"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--planned-steps", type=int, default=2000)
    parser.add_argument("--budget-min", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "model"
        finetune(["--dataset", str(DEMO), "--labels", "ground_truth", "--init", "small", "--soft-targets",
                  "--steps", str(args.steps), "--examples", "256", "--batch-size", "8", "--image-size", "96",
                  "--warmup-steps", "5", "--out", str(out), "--quiet"])
        summary = json.loads((out / "training_summary.json").read_text())
    per_step = summary["train_wall_s"] / summary["steps"]
    projected_min = per_step * args.planned_steps / 60
    print(f"small model: {summary['parameters']:,} parameters, {per_step:.3f} s/step (batch 8, {args.steps} steps)")
    print(f"projected {args.planned_steps} steps: {projected_min:.1f} min; "
          f"budget ratio {projected_min / args.budget_min:.2f} (<= 1 fits {args.budget_min:g} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

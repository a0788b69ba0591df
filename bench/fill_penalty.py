"""Which turn penalty should the piecewise fill use? The same answers, filled with each.

    python bench/fill_penalty.py --labeled OUT --dataset DIR [--penalties 0.125,0.25,0.5,1,2,4]

Reads the keyframe answers of a `labeling.run` output (`labels/keyframes.parquet`) made on a
generated benchmark, fills every episode again with the isotonic fill and the piecewise fill at
each penalty (no model call), and prints the metrics of `training.compare` against the
simulator's truth, with 95 % bootstrap intervals over episodes, plus, of the successes whose
truth dips, how many the labels show the dip of and how many they show the dip of and end at the
top score (`training.evaluation.metrics.dip_hits`).
Choose the penalty on a split that the reported numbers do not come from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.dataset import EpisodeSource  # noqa: E402
from common.scale import HIGHEST, LOWEST, nearest_score, score_to_reward  # noqa: E402
from labeling.progress import fill_frames  # noqa: E402
from training.evaluation.metrics import bootstrap, dip_hits, dipping_successes  # noqa: E402
from training.evaluation.scoring import load_truth  # noqa: E402

COLUMNS = ("mae", "within_one", "spearman", "auroc", "false_success_at_95")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labeled", type=Path, required=True, help="a labeling.run output on --dataset")
    parser.add_argument("--dataset", type=Path, required=True, help="the generated benchmark it labeled")
    parser.add_argument("--penalties", default="0.125,0.25,0.5,1,2,4")
    args = parser.parse_args()
    source = EpisodeSource.open(args.dataset)
    keyframes = pd.read_parquet(args.labeled / "labels" / "keyframes.parquet").dropna(subset=["expected"])
    episodes = sorted(int(e) for e in keyframes.episode_index.unique())
    truth = load_truth(source, episodes)
    scored = {e: dict(zip(rows.frame, rows.expected, strict=True)) for e, rows in keyframes.groupby("episode_index")}
    fills = {"isotonic": ("isotonic", 0.0)} | {f"piecewise {p}": ("piecewise", float(p))
                                               for p in args.penalties.split(",")}
    dips = dipping_successes(truth)
    print(f"{len(truth)} episodes ({len(dips)} successes whose truth dips); 95 % bootstrap intervals over episodes\n")
    print("| fill | " + " | ".join(COLUMNS) + " | dips visible | dips visible, ends at 5 |")
    print("|---|" + "---|" * (len(COLUMNS) + 2))
    for name, (mode, penalty) in fills.items():
        # the labels' rewards, as labeling.run writes them: the filled expectation rounded to a score
        rewards = {e.index: score_to_reward(np.clip(np.rint(fill_frames(len(e.score), scored[e.index], mode, penalty)),
                                                    LOWEST, HIGHEST)) for e in truth}
        metrics = bootstrap(truth, rewards)
        visible, recovered = dip_hits(truth, {e.index: nearest_score(rewards[e.index]) for e in truth})
        cells = [f"{metrics[c][0]:.3f} [{metrics[c][1]:.2f}, {metrics[c][2]:.2f}]" for c in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + f" | {visible.sum():.0f}/{len(dips)} | {recovered.sum():.0f}/{len(dips)} |")


if __name__ == "__main__":
    main()

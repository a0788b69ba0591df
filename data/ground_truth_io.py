"""The ground-truth sidecar: `<dataset>/ground_truth/{frames,episodes}.parquet` + `config.json`.

Kept outside LeRobot's `data/`, `meta/` and `videos/` so nothing that reads the dataset as a
LeRobot dataset (the labeling pipeline included) sees it. Only evaluation and the explicit
`ground_truth` label source of experiments open it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

GROUND_TRUTH_DIR = "ground_truth"


def write_ground_truth(root: Path, episodes: Sequence, config: dict) -> None:
    """Write per-frame and per-episode truth for `episodes`, indexed as they were saved."""
    frames, rows = [], []
    for episode_index, episode in enumerate(episodes):
        n = len(episode)
        frames.append(
            pd.DataFrame(
                {
                    "episode_index": episode_index,
                    "frame_index": range(n),
                    "progress": episode.progress,
                    "score": episode.score,
                    "success": episode.success,
                    "obj_to_target": episode.obj_to_target,
                    "tcp_to_obj": episode.tcp_to_obj,
                    "grasped": episode.grasped,
                }
            )
        )
        rows.append(
            {
                "episode_index": episode_index,
                "env_name": episode.env_name,
                "task": episode.task,
                "kind": episode.kind,
                "outcome": episode.outcome,
                "seed": episode.seed,
                "length": n,
                "first_success_frame": episode.first_success_frame,
                "final_score": episode.score[-1],
            }
        )
    directory = Path(root) / GROUND_TRUTH_DIR
    directory.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_parquet(directory / "frames.parquet", index=False)
    pd.DataFrame(rows).to_parquet(directory / "episodes.parquet", index=False)
    (directory / "config.json").write_text(json.dumps(config, indent=2, default=str))


def read_ground_truth(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frames, episodes) of a generated dataset; FileNotFoundError names what is missing."""
    directory = Path(root) / GROUND_TRUTH_DIR
    if not (directory / "frames.parquet").is_file():
        raise FileNotFoundError(f"{root} has no ground truth ({directory}/frames.parquet missing)")
    return pd.read_parquet(directory / "frames.parquet"), pd.read_parquet(directory / "episodes.parquet")

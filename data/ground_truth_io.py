"""Writes the ground-truth sidecar of a generated benchmark (format and reader: `rewact.ground_truth`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from rewact.ground_truth import sidecar_dir


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
    directory = sidecar_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_parquet(directory / "frames.parquet", index=False)
    pd.DataFrame(rows).to_parquet(directory / "episodes.parquet", index=False)
    (directory / "config.json").write_text(json.dumps(config, indent=2, default=str))


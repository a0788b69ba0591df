"""The benchmark's ground-truth sidecar: `<dataset>/ground_truth/{frames,episodes}.parquet`.

Written by `python -m data.generate`, outside LeRobot's `meta/`, `data/` and `videos/` so
nothing that reads the dataset as a LeRobot dataset sees it. Read only by evaluation and by
the explicit `ground_truth` label source of experiments; the labeling pipeline never reads it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

GROUND_TRUTH_DIR = "ground_truth"


def sidecar_dir(root: str | Path) -> Path:
    return Path(root) / GROUND_TRUTH_DIR


def has_ground_truth(root: str | Path) -> bool:
    return (sidecar_dir(root) / "frames.parquet").is_file()


def read_ground_truth(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frames, episodes) of a generated dataset; FileNotFoundError names what is missing.

    frames: episode_index, frame_index, progress, score, success, obj_to_target, tcp_to_obj, grasped
    episodes: episode_index, env_name, task, kind, outcome, seed, length, first_success_frame, final_score
    """
    directory = sidecar_dir(root)
    if not has_ground_truth(root):
        raise FileNotFoundError(f"{root} has no ground truth ({directory}/frames.parquet missing)")
    return pd.read_parquet(directory / "frames.parquet"), pd.read_parquet(directory / "episodes.parquet")

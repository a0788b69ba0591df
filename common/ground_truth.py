"""The benchmark's ground-truth sidecar: `<dataset>/ground_truth/{frames,episodes}.parquet`.

Written by `python -m data.generate`, outside LeRobot's `meta/`, `data/` and `videos/` so
nothing that reads the dataset as a LeRobot dataset sees it. Read only by evaluation and by
the explicit `ground_truth` reward source of experiments; the labeling pipeline never reads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from common.cli import ConfigError

GROUND_TRUTH_DIR = "ground_truth"


def sidecar_dir(root: str | Path) -> Path:
    return Path(root) / GROUND_TRUTH_DIR


def has_ground_truth(root: str | Path) -> bool:
    return (sidecar_dir(root) / "frames.parquet").is_file()


def require_ground_truth(root: str | Path) -> None:
    """ConfigError unless `root` is a generated benchmark, with simulator truth to score against."""
    if not has_ground_truth(root):
        raise ConfigError(f"{root} has no ground truth (ground_truth/frames.parquet): generate it with "
                          "python -m data.generate")


def read_ground_truth(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frames, episodes) of a generated dataset; FileNotFoundError names what is missing.

    frames: episode_index, frame_index, progress, score, success, obj_to_target, tcp_to_obj, grasped
    episodes: episode_index, env_name, task, kind, outcome, seed, length, first_success_frame, final_score,
        dip_peak_frame, dip_min_frame, dip_depth (the deepest fall of true progress before the first
        success, when it falls at least one score level: the frame of the peak before it, of its
        minimum, and the levels it falls; -1, -1, 0 otherwise. Sidecars written before these
        columns existed lack them.)
    """
    directory = sidecar_dir(root)
    if not has_ground_truth(root):
        raise FileNotFoundError(f"{root} has no ground truth ({directory}/frames.parquet missing)")
    return pd.read_parquet(directory / "frames.parquet"), pd.read_parquet(directory / "episodes.parquet")


def read_ground_truth_by_episode(root: str | Path) -> tuple[dict[int, pd.DataFrame], pd.DataFrame]:
    """(frames of each episode in frame order, by episode index; episodes) of a generated dataset."""
    frames, episodes = read_ground_truth(root)
    by_episode = {int(e): rows.sort_values("frame_index") for e, rows in frames.groupby("episode_index")}
    return by_episode, episodes


def write_ground_truth(root: Path, episodes: Sequence, config: dict) -> None:
    """Write per-frame and per-episode truth for `episodes` (rollouts with the per-frame arrays
    and episode fields named in `read_ground_truth`, and a `dip` with peak_frame, min_frame and
    depth, or None), indexed as they were saved."""
    frames, rows = [], []
    for episode_index, episode in enumerate(episodes):
        n = len(episode)
        frames.append(pd.DataFrame({
            "episode_index": episode_index, "frame_index": range(n), "progress": episode.progress,
            "score": episode.score, "success": episode.success, "obj_to_target": episode.obj_to_target,
            "tcp_to_obj": episode.tcp_to_obj, "grasped": episode.grasped,
        }))
        rows.append({
            "episode_index": episode_index, "env_name": episode.env_name, "task": episode.task, "kind": episode.kind,
            "outcome": episode.outcome, "seed": episode.seed, "length": n,
            "first_success_frame": episode.first_success_frame, "final_score": episode.score[-1],
            **_dip_columns(episode.dip),
        })
    directory = sidecar_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_parquet(directory / "frames.parquet", index=False)
    pd.DataFrame(rows).to_parquet(directory / "episodes.parquet", index=False)
    (directory / "config.json").write_text(json.dumps(config, indent=2, default=str))


def _dip_columns(dip) -> dict:
    if dip is None or dip.depth < 1:
        return {"dip_peak_frame": -1, "dip_min_frame": -1, "dip_depth": 0}
    return {"dip_peak_frame": dip.peak_frame, "dip_min_frame": dip.min_frame, "dip_depth": dip.depth}

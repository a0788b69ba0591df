"""The per-frame advantage table, named once for its writer (`python -m training.advantage`) and
its reader (ACTvantage's processor, `--policy.type=actvantage`).

    <dataset root>/advantages.parquet   the default place; any path with --policy.advantage_path
        index           LeRobot's global frame index
        episode_index, frame_index
        value           the reward source's value of the frame, in [0, 1]
        advantage       n-step advantage of the frame
        positive        the binarised condition ACTvantage trains on (+1 if true, -1 if false)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from common.cli import UserError

ADVANTAGES_FILE = "advantages.parquet"
COLUMNS = ("index", "episode_index", "frame_index", "value", "advantage", "positive")


class AdvantageError(UserError, ValueError):
    """Advantages that are missing or do not fit the dataset."""


def default_path(dataset_root: str | Path) -> Path:
    return Path(dataset_root) / ADVANTAGES_FILE


def read_advantages(path: str | Path, dataset_root: str | Path) -> pd.DataFrame:
    """The table at `path`, checked for its columns; the error names the command that writes it."""
    file = Path(path)
    if not file.is_file():
        raise AdvantageError(
            f"no advantages at {file}; compute them with `python -m training.advantage --dataset {dataset_root} "
            f"--values labels:DIR|rewact:CKPT|ground_truth|interpolation`, or pass --policy.advantage_path"
        )
    table = pd.read_parquet(file)
    missing = sorted(set(COLUMNS) - set(table.columns))
    if missing:
        raise AdvantageError(f"{file} lacks column(s) {missing}; write it with `python -m training.advantage`")
    return table

"""One vocabulary of reward sources. RewACT's training (`--policy.label_source`),
`training.compare --source`, `training.visualize` and the reward-VLM trainer all name a source
as KIND[:PATH] and read it here, as rows of (episode_index, frame_index, reward[, imitate])
with reward in [0, 1].

    interpolation      rewACT's linear ramp, from the episode lengths
    keypoints:PATH     rewACT keypoint JSON, interpolated between keys
    dataset            the dataset's own `next.reward` (what `labeling.run` writes into its output)
    labels:PATH        a `labeling.run` output directory, or a parquet of
                       (episode_index, frame_index, reward[, imitate])
From a `labeling.run` output (`dataset` on one, or `labels:DIR`), `imitate` is the run's outcome
verdict per episode (`common.label_files.read_outcomes`).
    ground_truth       the simulator sidecar of a generated benchmark (experiments only)
    rewact:CHECKPOINT  a trained RewACT's predictions (registered by `training.evaluation.predict`)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from common import label_files
from common.cli import UserError
from common.dataset import episode_table
from common.ground_truth import read_ground_truth

INTERPOLATION_SPAN = (0.05, 0.95)  # rewACT's ramp: 0 until 5 % of the episode, 1 from 95 %
NEEDS_PATH = ("keypoints", "labels", "rewact")
# What RewACT can train on: every kind read from files (not another model's predictions).
TRAINING_SOURCES = ("interpolation", "keypoints", "dataset", "labels", "ground_truth")
# A reader gets the source's PATH (or None), the dataset's LeRobot metadata and the caller's options.
Reader = Callable[..., pd.DataFrame]
_READERS: dict[str, Reader] = {}


class LabelError(UserError, ValueError):
    """Labels that cannot be read, or cannot supervise the reward head as asked."""


def register(kind: str) -> Callable[[Reader], Reader]:
    def add(reader: Reader) -> Reader:
        _READERS[kind] = reader
        return reader

    return add


def source_kinds() -> tuple[str, ...]:
    return tuple(_READERS)


def parse_source(spec: str) -> tuple[str, str | None]:
    """'labels:outputs/run' -> ('labels', 'outputs/run'); checks the kind and its path."""
    kind, _, path = spec.partition(":")
    if kind not in _READERS:
        raise LabelError(f"unknown reward source '{kind}' in '{spec}'; choose from {', '.join(_READERS)}")
    if kind in NEEDS_PATH and not path:
        raise LabelError(f"reward source '{kind}' needs a path: {kind}:PATH")
    return kind, path or None


def read_rewards(spec: str, dataset_meta, **options) -> pd.DataFrame:
    """Rows (episode_index, frame_index, reward[, imitate]) of a source over a dataset.
    `options` go to the reader (e.g. interpolation's start and end)."""
    kind, path = parse_source(spec)
    return _READERS[kind](path, dataset_meta, **options)


def missing_episodes(spec: str, missing: list[int], limit: int = 10) -> str:
    """What every consumer of a reward source says when it lacks episodes: the count and the first few."""
    shown = ", ".join(map(str, missing[:limit])) + (f", ... (+{len(missing) - limit})" if len(missing) > limit else "")
    return f"label source '{spec}' has no labels for {len(missing)} episode(s): {shown}"


def episode_lengths(dataset_meta) -> dict[int, int]:
    return {episode: int(row["length"]) for episode, row in episode_table(dataset_meta).items()}


def interpolation_targets(length: int, start: float = INTERPOLATION_SPAN[0], end: float = INTERPOLATION_SPAN[1]) -> np.ndarray:
    """rewACT's ramp: 0 until `start` of the episode, 1 from `end`, linear between."""
    position = np.arange(length) / max(length - 1, 1)
    return np.clip((position - start) / (end - start), 0.0, 1.0).astype(np.float32)


def keypoint_targets(length: int, keypoints: dict[int, float]) -> np.ndarray:
    """Piecewise-linear through the keypoints, 0 at frame 0 unless given, flat after the last."""
    points = {0: 0.0, **keypoints}
    frames = np.array(sorted(points), dtype=np.float64)
    values = np.array([points[int(f)] for f in frames], dtype=np.float64)
    return np.interp(np.arange(length), frames, values).astype(np.float32)


def frames_from(targets: dict[int, np.ndarray]) -> pd.DataFrame:
    """Per-episode reward arrays as rows."""
    if not targets:
        return pd.DataFrame({"episode_index": [], "frame_index": [], "reward": []})
    return pd.concat([pd.DataFrame({"episode_index": e, "frame_index": np.arange(len(r)), "reward": r})
                      for e, r in targets.items()], ignore_index=True)


@register("interpolation")
def _interpolation(path, dataset_meta, start: float = INTERPOLATION_SPAN[0],
                   end: float = INTERPOLATION_SPAN[1], **_) -> pd.DataFrame:
    return frames_from({e: interpolation_targets(n, start, end) for e, n in episode_lengths(dataset_meta).items()})


@register("keypoints")
def _keypoints(path, dataset_meta, **_) -> pd.DataFrame:
    try:
        keypoints = label_files.read_keypoints(path)
    except ValueError as err:
        raise LabelError(str(err)) from err
    return frames_from({e: keypoint_targets(n, keypoints[e])
                        for e, n in episode_lengths(dataset_meta).items() if e in keypoints})


@register("dataset")
def _dataset(path, dataset_meta, **_) -> pd.DataFrame:
    if label_files.REWARD not in dataset_meta.features:
        raise LabelError("reward source 'dataset' needs a `next.reward` feature (run `python -m labeling.run` "
                         "first, or choose another source)")
    files = sorted((Path(dataset_meta.root) / "data").rglob("*.parquet"))
    # `labeling.run` marks frames it could not label; their episodes count as unlabeled.
    has_mask = label_files.LABELED in dataset_meta.features
    columns = ["episode_index", "frame_index", label_files.REWARD] + ([label_files.LABELED] if has_mask else [])
    frame = pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)
    # LeRobot stores a (1,)-shaped feature as a length-1 array per row, or as a scalar.
    for column in columns[2:]:
        frame[column] = [float(np.asarray(v).reshape(-1)[0]) for v in frame[column]]
    if has_mask:
        unlabeled = frame.loc[frame[label_files.LABELED] == 0, "episode_index"].unique()
        frame = frame[~frame.episode_index.isin(unlabeled)].drop(columns=label_files.LABELED)
    frame = frame.rename(columns={label_files.REWARD: "reward"})
    if label_files.frames_file(dataset_meta.root).is_file():  # a labeling.run output: its verdicts decide
        frame = with_outcomes(frame, labeled_outcomes(dataset_meta.root, dataset_meta.root))
    return frame


@register("labels")
def _labels(path, dataset_meta, **_) -> pd.DataFrame:
    """A `labeling.run` output (its labels/frames.parquet) or a labels parquet; unlabeled rows dropped."""
    file = label_files.frames_file(path) if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise LabelError(f"labels not found: {path} is neither a labeling.run output nor a parquet file")
    frame = pd.read_parquet(file)
    missing = {"episode_index", "frame_index", "reward"} - set(frame.columns)
    if missing:
        raise LabelError(f"{file} lacks column(s) {sorted(missing)}")
    columns = ["episode_index", "frame_index", "reward"] + (["imitate"] if "imitate" in frame else [])
    frame = frame[columns].dropna(subset=["reward"]).reset_index(drop=True)
    if not Path(path).is_dir():
        return frame
    if _is_output_of(path, dataset_meta.root):  # the output's labels, read for the output itself
        number = label_files.read_output_numbering(path)
        frame = frame.assign(episode_index=frame.episode_index.map(number))
    return with_outcomes(frame, labeled_outcomes(path, dataset_meta.root))


def labeled_outcomes(labeled_dir, dataset_root) -> dict[int, bool]:
    """A `labeling.run` output's outcomes in the numbering of the dataset they are read for: the
    source's (labels/), or the output's own when that dataset is the output."""
    try:
        outcomes = label_files.read_outcomes(labeled_dir)
        if not _is_output_of(labeled_dir, dataset_root):
            return outcomes
        number = label_files.read_output_numbering(labeled_dir)
    except ValueError as err:
        raise LabelError(str(err)) from err
    return {number[e]: success for e, success in outcomes.items()}


def _is_output_of(labeled_dir, dataset_root) -> bool:
    return Path(labeled_dir).resolve() == Path(dataset_root).resolve()


def with_outcomes(frame: pd.DataFrame, outcomes: dict[int, bool]) -> pd.DataFrame:
    """Rows of a `labeling.run` output with `imitate` = its episode's outcome verdict, so a
    failure the labels flagged trains the reward head but is never imitated."""
    return frame.assign(imitate=[outcomes.get(int(e), False) for e in frame.episode_index])


@register("ground_truth")
def _ground_truth(path, dataset_meta, **_) -> pd.DataFrame:
    try:
        frames = read_ground_truth(dataset_meta.root)[0]
    except FileNotFoundError as err:
        raise LabelError(str(err)) from err
    return frames[["episode_index", "frame_index", "progress"]].rename(columns={"progress": "reward"})

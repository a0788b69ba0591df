"""Reward targets for every frame of a dataset, from any label source, as one lookup table.

The table is indexed by LeRobot's global frame `index` (which survives LeRobot's batch
conversion) and holds, per frame: the reward target in [0, 1], whether the frame has a label
at all, and whether it may train the action loss (frames of failed episodes may not).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rewact.ground_truth import read_ground_truth


class LabelError(ValueError):
    """Labels that cannot supervise the reward head as asked."""


@dataclass
class RewardTable:
    reward: torch.Tensor  # float32 (N,), target in [0, 1]
    labeled: torch.Tensor  # bool (N,), frame takes part in the reward loss
    imitate: torch.Tensor  # bool (N,), frame takes part in the action loss

    def lookup(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = index.long().cpu()
        if index.numel() and int(index.max()) >= len(self.reward):
            raise LabelError(f"frame index {int(index.max())} beyond the {len(self.reward)} labelled frames")
        return self.reward[index], self.labeled[index], self.imitate[index]


@dataclass(frozen=True)
class EpisodeSpan:
    index: int
    start: int  # global index of the first frame
    length: int


def episode_spans(dataset_meta) -> list[EpisodeSpan]:
    return [
        EpisodeSpan(int(row["episode_index"]), int(row["dataset_from_index"]), int(row["length"]))
        for row in dataset_meta.episodes.to_list()
    ]


def interpolation_targets(length: int, start: float = 0.05, end: float = 0.95) -> np.ndarray:
    """rewACT's ramp: 0 until `start` of the episode, 1 from `end`, linear between."""
    position = np.arange(length) / max(length - 1, 1)
    return np.clip((position - start) / (end - start), 0.0, 1.0).astype(np.float32)


def keypoint_targets(length: int, keypoints: dict[int, float]) -> np.ndarray:
    """Piecewise-linear through the keypoints, 0 at frame 0 unless given, flat after the last."""
    points = {0: 0.0, **keypoints}
    frames = np.array(sorted(points), dtype=np.float64)
    values = np.array([points[int(f)] for f in frames], dtype=np.float64)
    return np.interp(np.arange(length), frames, values).astype(np.float32)


def read_keypoints(path: str | Path) -> dict[int, dict[int, float]]:
    """rewACT keypoint JSON, either `{ep: {frame: r}}` or `{ep: {"keypoints": [{frame_index, reward}]}}`."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise LabelError(f"cannot read keypoints {path}: {err}") from err
    episodes = {}
    for episode, entry in raw.items():
        if isinstance(entry, dict) and "keypoints" in entry:
            episodes[int(episode)] = {int(k["frame_index"]): float(k["reward"]) for k in entry["keypoints"]}
        else:
            episodes[int(episode)] = {int(frame): float(reward) for frame, reward in entry.items()}
    return episodes


def write_keypoints(path: str | Path, keypoints: dict[int, dict[int, float]]) -> None:
    payload = {
        str(episode): {"keypoints": [{"frame_index": f, "reward": r} for f, r in sorted(points.items())]}
        for episode, points in sorted(keypoints.items())
    }
    Path(path).write_text(json.dumps(payload, indent=2))


def per_frame_labels(config, dataset_meta) -> pd.DataFrame:
    """(episode_index, frame_index, reward) rows of the configured source, before validation."""
    spans = episode_spans(dataset_meta)
    source = config.label_source
    if source == "interpolation":
        return _frames_from(
            spans, lambda s: interpolation_targets(s.length, config.interpolation_start, config.interpolation_end)
        )
    if source == "keypoints":
        keypoints = read_keypoints(config.labels_path)
        return _frames_from([s for s in spans if s.index in keypoints], lambda s: keypoint_targets(s.length, keypoints[s.index]))
    if source == "dataset":
        return _read_dataset_rewards(dataset_meta)
    if source == "labels":
        return _read_parquet(config.labels_path, ("episode_index", "frame_index", "reward"))
    if source == "ground_truth":
        try:
            frames = read_ground_truth(dataset_meta.root)[0]
        except FileNotFoundError as err:
            raise LabelError(str(err)) from err
        return frames[["episode_index", "frame_index", "progress"]].rename(columns={"progress": "reward"})
    raise LabelError(f"unknown label source '{source}'")


def build_reward_table(config, dataset_meta) -> RewardTable:
    """Validate the source's labels against the dataset and lay them out by global frame index."""
    spans = episode_spans(dataset_meta)
    labels = per_frame_labels(config, dataset_meta)
    rewards = labels["reward"].to_numpy(dtype=np.float64)
    if len(rewards) and (np.isnan(rewards).any() or rewards.min() < 0.0 or rewards.max() > 1.0):
        bad = labels.loc[~((labels.reward >= 0) & (labels.reward <= 1)), ["episode_index", "frame_index", "reward"]]
        first = bad.iloc[0]
        raise LabelError(
            f"{len(bad)} labels outside [0, 1] (first: episode {int(first.episode_index)} frame "
            f"{int(first.frame_index)} = {first.reward}); rescale them, e.g. (score - 1) / 4"
        )
    by_episode = dict(tuple(labels.groupby("episode_index")))
    missing = [s.index for s in spans if s.index not in by_episode]
    if missing and not config.skip_unlabeled_episodes:
        raise LabelError(
            f"label source '{config.label_source}' has no labels for {len(missing)} episode(s): "
            f"{_short_list(missing)}; label them or pass --policy.skip_unlabeled_episodes=true"
        )
    threshold = config.imitate_min_final_reward
    if threshold is None:
        threshold = 1.0 if config.label_source == "ground_truth" else 0.0
    total = max(s.start + s.length for s in spans)
    reward = torch.zeros(total, dtype=torch.float32)
    labeled = torch.zeros(total, dtype=torch.bool)
    imitate = torch.ones(total, dtype=torch.bool)
    for span in spans:
        if span.index not in by_episode:
            continue
        episode = by_episode[span.index].sort_values("frame_index")
        frames = episode["frame_index"].to_numpy()
        if len(frames) != span.length or not np.array_equal(frames, np.arange(span.length)):
            raise LabelError(
                f"episode {span.index}: labels cover {len(frames)} frames, the dataset has {span.length}"
            )
        values = torch.from_numpy(episode["reward"].to_numpy(dtype=np.float32))
        reward[span.start : span.start + span.length] = values
        labeled[span.start : span.start + span.length] = True
        ends_solved = float(values[-1]) >= threshold - 1e-6
        explicit = episode["imitate"].to_numpy(dtype=bool) if "imitate" in episode else None
        imitate[span.start : span.start + span.length] = (
            torch.from_numpy(explicit) if explicit is not None else torch.tensor(ends_solved)
        )
    return RewardTable(reward=reward, labeled=labeled, imitate=imitate)


def _frames_from(spans: list[EpisodeSpan], targets) -> pd.DataFrame:
    columns = {"episode_index": [], "frame_index": [], "reward": []}
    for span in spans:
        columns["episode_index"] += [span.index] * span.length
        columns["frame_index"] += list(range(span.length))
        columns["reward"] += targets(span).tolist()
    return pd.DataFrame(columns)


def _read_parquet(path: str | Path, required: tuple[str, ...]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"label file not found: {path}")
    frame = pd.read_parquet(path)
    needed = {"episode_index", "frame_index", *required}
    if not needed <= set(frame.columns):
        raise LabelError(f"{path} lacks column(s) {sorted(needed - set(frame.columns))}")
    return frame


def _read_dataset_rewards(dataset_meta) -> pd.DataFrame:
    if "next.reward" not in dataset_meta.features:
        raise LabelError(
            "label_source 'dataset' needs a `next.reward` feature (run `python -m labeling.run` first, "
            "or choose another --policy.label_source)"
        )
    files = sorted((Path(dataset_meta.root) / "data").rglob("*.parquet"))
    # `labeling.run` marks frames it could not label; their episodes count as unlabeled.
    has_mask = "reward.labeled" in dataset_meta.features
    columns = ["episode_index", "frame_index", "next.reward"] + (["reward.labeled"] if has_mask else [])
    frame = pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)
    # LeRobot stores a (1,)-shaped feature as a length-1 array per row, or as a scalar.
    for column in columns[2:]:
        frame[column] = [float(np.asarray(v).reshape(-1)[0]) for v in frame[column]]
    if has_mask:
        unlabeled = frame.loc[frame["reward.labeled"] == 0, "episode_index"].unique()
        frame = frame[~frame.episode_index.isin(unlabeled)].drop(columns="reward.labeled")
    return frame.rename(columns={"next.reward": "reward"})


def _short_list(items: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, items[:limit]))
    return shown + (f", ... (+{len(items) - limit})" if len(items) > limit else "")

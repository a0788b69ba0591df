"""Reward targets for every frame of a dataset, from any reward source (`common.reward_sources`),
as one lookup table.

The table is indexed by LeRobot's global frame `index` (which survives LeRobot's batch
conversion) and holds, per frame: the reward target in [0, 1], whether the frame has a label
at all, whether it may train the action loss (frames of failed episodes may not), and its
weight in the reward loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from common.dataset import episode_table
from common.reward_sources import NEEDS_PATH, LabelError, missing_episodes, read_rewards


@dataclass
class RewardTable:
    reward: torch.Tensor  # float32 (N,), target in [0, 1]
    labeled: torch.Tensor  # bool (N,), frame takes part in the reward loss
    imitate: torch.Tensor  # bool (N,), frame takes part in the action loss
    weight: torch.Tensor  # float32 (N,), weight in the reward loss (mean 1 over labelled frames)

    def lookup(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        index = index.long().cpu()
        if index.numel() and int(index.max()) >= len(self.reward):
            raise LabelError(f"frame index {int(index.max())} beyond the {len(self.reward)} labelled frames")
        return self.reward[index], self.labeled[index], self.imitate[index], self.weight[index]


@dataclass(frozen=True)
class EpisodeSpan:
    index: int
    start: int  # global index of the first frame
    length: int


def episode_spans(dataset_meta) -> list[EpisodeSpan]:
    return [EpisodeSpan(episode, int(row["dataset_from_index"]), int(row["length"]))
            for episode, row in episode_table(dataset_meta).items()]


def per_frame_labels(config, dataset_meta) -> pd.DataFrame:
    """(episode_index, frame_index, reward[, imitate]) rows of the configured source, before validation."""
    spec = config.label_source + (f":{config.labels_path}" if config.label_source in NEEDS_PATH else "")
    return read_rewards(spec, dataset_meta, start=config.interpolation_start, end=config.interpolation_end)


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
        raise LabelError(f"{missing_episodes(config.label_source, missing)}; "
                         "label them or pass --policy.skip_unlabeled_episodes=true")
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
    weight = balance_weights(reward, labeled, config.reward_balance_bins if config.reward_balance != "none" else 0)
    return RewardTable(reward=reward, labeled=labeled, imitate=imitate, weight=weight)


def balance_weights(reward: torch.Tensor, labeled: torch.Tensor, bins: int) -> torch.Tensor:
    """Per-frame reward-loss weights giving each of `bins` equal slices of [0, 1] the same total
    weight among labelled frames (empty slices get none); `bins` 0: every frame weighs 1."""
    weight = labeled.float()
    if bins == 0 or not labeled.any():
        return weight
    slice_of = (reward * bins).long().clamp(max=bins - 1)
    counts = torch.bincount(slice_of[labeled], minlength=bins).float()
    weight[labeled] = 1.0 / counts[slice_of[labeled]]
    return weight * labeled.sum() / weight.sum()

"""Turn `labeling.run`'s temporal-clip negatives into extra failure episodes for RewACT.

RewACT reads no instruction, so a negative can only teach it through its frames: each kept
temporal clip (the first `end + 1` real frames of a successful episode, which stop part
way) becomes an episode of its own that trains the reward head and is masked out of the
action loss. Frames are copied from the source dataset, not synthesised.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from common.dataset import EpisodeSource
from common.dataset_writer import create_dataset
from common.staging import publish, staging_dir

STATE, ACTION = "observation.state", "action"


def clip_episodes(labeled_dir: Path) -> pd.DataFrame:
    """The temporal clips that validation did not drop: (episode, end) pairs."""
    negatives = pd.read_parquet(Path(labeled_dir) / "labels" / "negatives.parquet")
    if negatives.empty:
        return pd.DataFrame(columns=["episode", "end"])
    kept = negatives[(negatives.origin == "temporal_clip") & (negatives.status != "dropped")]
    return kept[["episode", "end"]].reset_index(drop=True)


def augmented_dataset(source_root: Path, clips: pd.DataFrame, out: Path, rewards: pd.DataFrame) -> Path:
    """Copy every episode of the source, then each clip as a new episode; write `<out>/labels.parquet`.

    `rewards` holds (episode_index, frame_index, reward[, imitate]) for the source episodes
    (without `imitate` every source episode is imitated); clip frames take the reward of the
    frame they copy and `imitate=False`.

    Episodes stream one at a time: each source episode is decoded once, written, and its clips
    are cut from it at once into a second dataset, which LeRobot's `aggregate_datasets` then
    appends after the source episodes. Memory holds one episode, not every clipped one.
    """
    from lerobot.datasets.aggregate import aggregate_datasets

    source = EpisodeSource.open(source_root)
    staging, parts = staging_dir(out), out.with_name(out.name + ".parts")  # parts: the two datasets aggregated
    shutil.rmtree(parts, ignore_errors=True)
    features = {k: v for k, v in source.meta.features.items()
                if k.startswith("observation.") or k == ACTION}
    columns = [key for key in (STATE, ACTION) if key in features]
    copies, cuts = (create_dataset(repo_id=f"local/{name}", fps=source.fps, features=features, root=parts / name,
                                   robot_type=source.meta.robot_type, use_videos=bool(source.meta.video_keys))
                    for name in ("episodes", "clips"))
    ends = clips.groupby("episode", sort=False).end.agg(list)
    labels, clip_labels = [], []
    for episode in source.episode_indices:
        frames, rows, task = source.frames(episode), source.rows(episode, columns), source.episode(episode).task
        own = rewards[rewards.episode_index == episode].sort_values("frame_index")
        _write_episode(copies, frames, rows, task, len(rows))
        imitate = own.imitate.to_numpy(dtype=bool) if "imitate" in own else True
        labels.append(pd.DataFrame({"episode_index": episode, "frame_index": np.arange(len(rows)),
                                    "reward": own.reward.to_numpy(), "imitate": imitate}))
        for end in ends.get(episode, []):
            _write_episode(cuts, frames, rows, task, int(end) + 1)
            clip_labels.append(pd.DataFrame({"episode_index": len(source.episode_indices) + len(clip_labels),
                                             "frame_index": np.arange(int(end) + 1),
                                             "reward": own.reward.to_numpy()[: int(end) + 1], "imitate": False}))
        del frames
    written = [dataset for dataset in (copies, cuts) if dataset.meta.total_episodes]
    for dataset in (copies, cuts):
        dataset.finalize()
    aggregate_datasets([d.repo_id for d in written], f"local/{out.name}", roots=[d.root for d in written],
                       aggr_root=staging)
    pd.concat(labels + clip_labels, ignore_index=True).to_parquet(staging / "labels.parquet", index=False)
    shutil.rmtree(parts)
    return publish(staging, out)


def _write_episode(target, frames: dict[str, np.ndarray], rows: pd.DataFrame, task: str, length: int) -> None:
    """The first `length` frames of a decoded episode as one new episode of `target`."""
    for t in range(length):
        frame = {key: images[t] for key, images in frames.items()}
        frame |= {key: np.asarray(rows[key].iloc[t], dtype=np.float32) for key in rows.columns}
        target.add_frame(frame | {"task": task})
    target.save_episode()

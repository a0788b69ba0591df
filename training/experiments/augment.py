"""Turn `labeling.run`'s temporal-clip negatives into extra failure episodes for RewACT.

RewACT reads no instruction, so a negative can only teach it through its frames: each kept
temporal clip (the first `end + 1` real frames of a successful episode, which stop part
way) becomes an episode of its own that trains the reward head and is masked out of the
action loss. Frames are copied from the source dataset, not synthesised.
"""

from __future__ import annotations

from collections import Counter
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
    """
    source = EpisodeSource.open(source_root)
    staging = staging_dir(out)
    features = {k: v for k, v in source.meta.features.items()
                if k.startswith("observation.") or k == ACTION}
    target = create_dataset(repo_id=f"local/{out.name}", fps=source.fps, features=features, root=staging,
                            robot_type=source.meta.robot_type, use_videos=bool(source.meta.video_keys))
    table = pd.concat([pd.read_parquet(f) for f in sorted((source.root / "data").rglob("*.parquet"))])
    plan = [(e, source.episode(e).length - 1, True) for e in source.episode_indices]
    plan += [(int(row.episode), int(row.end), False) for row in clips.itertuples()]
    clips_left = Counter(int(episode) for episode in clips.episode)
    decoded = {}  # an episode's frames, kept until its last clip is cut: each video is decoded once
    labels = []
    for new_index, (episode, end, imitate) in enumerate(plan):
        frames = decoded[episode] if episode in decoded else source.frames(episode)
        if imitate and clips_left[episode]:
            decoded[episode] = frames
        if not imitate:
            clips_left[episode] -= 1
            if not clips_left[episode]:
                del decoded[episode]
        rows = table[table.episode_index == episode].sort_values("frame_index").iloc[: end + 1]
        for t in range(end + 1):
            frame = {key: frames[key][t] for key in source.camera_keys}
            for key in (STATE, ACTION):
                if key in features:
                    frame[key] = np.asarray(rows[key].iloc[t], dtype=np.float32)
            frame["task"] = source.episode(episode).task
            target.add_frame(frame)
        target.save_episode()
        own = rewards[rewards.episode_index == episode].sort_values("frame_index").iloc[: end + 1]
        imitated = own.imitate.to_numpy(dtype=bool) if imitate and "imitate" in own else imitate
        labels.append(pd.DataFrame({"episode_index": new_index, "frame_index": np.arange(end + 1),
                                    "reward": own.reward.to_numpy(), "imitate": imitated}))
    target.finalize()
    pd.concat(labels, ignore_index=True).to_parquet(staging / "labels.parquet", index=False)
    return publish(staging, out)

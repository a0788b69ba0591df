"""Stage 5: a new LeRobot dataset with reward features, the sidecar, rewACT keypoints, and
the progress parquet of LeRobot's RA-BC sample weighting (`sarm_progress.parquet`).

Everything is built in `<out>.partial` and renamed to `<out>` only when complete, so a
crash never leaves a directory that looks like a finished labeling.

Per frame, the dataset gains `next.reward` = (score - 1) / 4 of the discrete label,
`reward.score` (1-5, 0 where unlabeled), `reward.expected` (the expected score, 1-5) and
`reward.labeled` (1/0). The sidecar `labels/` holds every keyframe answer, negative, verdict and rewrite,
with the model, backend and prompt hash that produced it, each episode's outcome verdict
(`episodes.parquet`), and the episodes skipped as unreadable; `labels/provenance.json` holds
the run's settings and times. The outcomes and rewards are also written where rewACT's
tooling reads them (`candywrapper_plugins/`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from common.dataset import EpisodeSource
from common.label_files import (CANDYWRAPPER_OUTCOMES_FILE, CANDYWRAPPER_REWARDS_DIR, EPISODES_FILE, EXPECTED,
                                FRAMES_FILE, KEYPOINTS_FILE, LABELED, LABELS_DIR, RABC_PROGRESS_FILE, REWARD,
                                REWARD_FEATURES, SCORE, SUMMARY_FILE, write_keypoints)
from common.scale import score_to_reward
from common.staging import publish, staging_dir
from labeling.calls import PHASES, CallStats
from labeling.pipeline import LabeledEpisodes
from labeling.records import EpisodeLabels, TaskRewrite


def frame_table(source: EpisodeSource, labels: dict[int, EpisodeLabels], outcomes: dict[int, bool]) -> pd.DataFrame:
    rows = []
    for episode, label in sorted(labels.items()):
        start = source.episode(episode).start
        labeled = ~np.isnan(label.expected)
        rows.append(pd.DataFrame({
            "episode_index": episode,
            "frame_index": np.arange(label.length),
            "index": start + np.arange(label.length),
            "score": label.score,
            "expected": label.expected,
            "reward": np.where(labeled, score_to_reward(label.score.astype(float)), np.nan),
            "labeled": labeled,
            "is_keyframe": np.isin(np.arange(label.length), list(label.keyframes)),
            "instruction": label.instruction,
            "success": outcomes[episode],  # the episode's outcome verdict
        }))
    return pd.concat(rows, ignore_index=True)


def episode_table(result: LabeledEpisodes, threshold: float, number: dict[int, int],
                  reviewed: set[int] = frozenset()) -> pd.DataFrame:
    """Every episode of the run: its outcome verdict and what it rests on (the final expected
    score, or a reviewer's verdict for the `reviewed` episodes), or why it got no labels; and its
    index in the output dataset (`number`)."""
    rows = [{"episode_index": episode, "labeled": True, "success": result.outcomes[episode],
             "final_expected": float(label.expected[-1]),
             "reason": "set in review" if episode in reviewed else
                       f"final expected score {label.expected[-1]:.2f} "
                       f"{'>=' if result.outcomes[episode] else '<'} {threshold:g}"}
            for episode, label in result.labels.items()]
    rows += [{"episode_index": episode, "labeled": False, "success": False, "final_expected": np.nan, "reason": reason}
             for episode, reason in result.skipped.items()]
    table = pd.DataFrame(rows, columns=["episode_index", "labeled", "success", "final_expected", "reason"]).astype(
        {"episode_index": "int64", "labeled": bool, "success": bool, "final_expected": "float64"}
    ).sort_values("episode_index", ignore_index=True)
    return table.assign(output_episode_index=table["episode_index"].map(number).astype("int64"))


def write_outputs(out: Path, source: EpisodeSource, result: LabeledEpisodes, rewrites: dict[str, TaskRewrite],
                  provenance: dict, summary: dict, overwrite: bool = False, stats: CallStats | None = None) -> Path:
    """`result.skipped`: episodes left unlabeled (frames or answers unreadable), and why.

    The output dataset holds the run's episodes (labeled or skipped), numbered 0..n-1 in the
    source's order, as `sarm_progress.parquet` is; the sidecar keeps the source's numbering.
    `stats`: the run's counters, when this is the run's own write: the time spent here is its
    `write` phase, and the summary gets the seconds of every phase (`seconds`), the write's
    included in `elapsed_s`."""
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass --overwrite to replace it)")
    if stats is None:
        staging = _write_staging(out, source, result, rewrites, provenance)
    else:
        with stats.timed("write"):
            staging = _write_staging(out, source, result, rewrites, provenance)
        summary = summary | {"seconds": {phase: round(stats.seconds[phase], 3) for phase in PHASES},
                             "elapsed_s": round(summary["elapsed_s"] + stats.seconds["write"], 2)}
    (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return publish(staging, out)


def _write_staging(out: Path, source: EpisodeSource, result: LabeledEpisodes, rewrites: dict[str, TaskRewrite],
                   provenance: dict) -> Path:
    """Everything of the output but its summary, in `<out>.partial`."""
    staging = staging_dir(out)

    labels, negatives, verdicts, skipped = result.labels, result.negatives, result.verdicts, result.skipped
    frames = frame_table(source, labels, result.outcomes)
    episodes = sorted({*labels, *skipped})
    renumbered = write_dataset(staging, source, episodes, frames)
    number = {episode: new for new, episode in enumerate(episodes)}  # source episode -> output episode

    identity = {"model": provenance["backend"]["model"], "backend": provenance["backend"]["backend"]}
    used = provenance["prompts_used"]
    # A temporal clip's score comes from the progress labels; a counterfactual's from its own prompt.
    negative_prompt = {"temporal_clip": used["progress"], "counterfactual": used["counterfactual"]}
    sidecar = staging / LABELS_DIR
    sidecar.mkdir()
    frames.to_parquet(sidecar / FRAMES_FILE, index=False)
    keyframes = [_keyframe_row(label, k) for label in labels.values() for k in label.keyframes.values()]
    tables = {
        "keyframes": _table(keyframes, identity, [used["progress"]] * len(keyframes)),
        "negatives": _table([asdict(n) for n in negatives], identity, [negative_prompt[n.origin] for n in negatives]),
        "verdicts": _table([asdict(v) for v in verdicts], identity, [used["validate"]] * len(verdicts)),
        "tasks": _table([asdict(r) for r in rewrites.values()], identity, [used["rewrite"]] * len(rewrites)),
    }
    for name, table in tables.items():
        table.to_parquet(sidecar / f"{name}.parquet", index=False)
    pd.DataFrame({"episode_index": pd.Series(list(skipped), dtype="int64"),
                  "reason": pd.Series(list(skipped.values()), dtype="str")}).to_parquet(
        sidecar / "skipped.parquet", index=False)
    threshold = provenance["config"]["outcome"]["success_min_final_expected"]
    reviewed = {int(v["episode"]) for v in provenance.get("corrections", {}).get("verdicts", [])}
    episode_table(result, threshold, number, reviewed).to_parquet(sidecar / EPISODES_FILE, index=False)
    (sidecar / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str))

    rabc_progress(renumbered).to_parquet(staging / RABC_PROGRESS_FILE, index=False)

    # rewACT's files sit beside the output dataset and are read with it: its numbering.
    keypoints = {number[episode]: step_keypoints(label.score) for episode, label in labels.items() if label.labeled}
    (staging / KEYPOINTS_FILE).parent.mkdir(parents=True, exist_ok=True)
    write_keypoints(staging / KEYPOINTS_FILE, keypoints)
    write_candywrapper(staging, renumbered, result, number)
    return staging


def write_dataset(root: Path, source: EpisodeSource, episodes: list[int], frames: pd.DataFrame) -> pd.DataFrame:
    """`episodes` of the source as a new LeRobot dataset at `root` with the reward features of
    `frames` (0 where a frame has no label); returns `frames` in the new dataset's numbering.

    One data file at a time is read (only the rows of `episodes`), renumbered and written with
    the reward columns. Video files are hard-linked, or copied across file systems: labels
    change no pixel, and each episode's frames stay at the timestamps its metadata gives."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from lerobot.datasets.feature_utils import get_hf_features_from_features

    source.fetch(episodes)
    table = source.meta.episodes.data.table
    table = table.filter(pc.is_in(table["episode_index"], pa.array(episodes, pa.int64()))).sort_by("episode_index")
    old = table["episode_index"].to_numpy()
    lengths = table["length"].to_numpy()
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    shift = dict(zip(old.tolist(), (starts - table["dataset_from_index"].to_numpy()).tolist(), strict=True))
    renumber = dict(zip(old.tolist(), range(len(old)), strict=True))
    for name, values in (("episode_index", np.arange(len(old))), ("dataset_from_index", starts),
                         ("dataset_to_index", starts + lengths), ("meta/episodes/chunk_index", 0),
                         ("meta/episodes/file_index", 0)):
        column = pa.array(np.broadcast_to(values, len(old)), table.schema.field(name).type)
        table = table.set_column(table.schema.get_field_index(name), name, column)
    episodes_file = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    episodes_file.parent.mkdir(parents=True)
    pq.write_table(table, episodes_file)

    renumbered = frames.assign(index=frames["index"] + frames["episode_index"].map(shift),
                               episode_index=frames["episode_index"].map(renumber))
    values = {name: np.zeros(int(lengths.sum()), dtype=np.float32 if spec["dtype"] == "float32" else np.int64)
              for name, spec in REWARD_FEATURES.items()}
    index = renumbered["index"].to_numpy()
    values[REWARD][index] = np.nan_to_num(renumbered["reward"].to_numpy())
    values[SCORE][index] = renumbered["score"].to_numpy()
    values[EXPECTED][index] = np.nan_to_num(renumbered["expected"].to_numpy())
    values[LABELED][index] = renumbered["labeled"].to_numpy()

    features = {**{k: v for k, v in source.meta.features.items() if k not in REWARD_FEATURES}, **REWARD_FEATURES}
    schema = get_hf_features_from_features(features).arrow_schema
    for relative in sorted({source.meta.get_data_file_path(e) for e in episodes}):
        data = pq.read_table(source.root / relative, filters=[("episode_index", "in", episodes)])
        moved = np.array([shift[e] for e in data["episode_index"].to_pylist()], dtype=np.int64)
        data = data.set_column(data.schema.get_field_index("index"), "index", pc.add(data["index"], pa.array(moved)))
        new_index = data["index"].to_numpy()
        data = data.set_column(data.schema.get_field_index("episode_index"), "episode_index",
                               pa.array([renumber[e] for e in data["episode_index"].to_pylist()], pa.int64()))
        columns = {name: data[name] for name in data.column_names if name not in REWARD_FEATURES}
        columns |= {name: pa.array(values[name][new_index]) for name in REWARD_FEATURES}
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns).select(schema.names).cast(schema), root / relative)

    for relative in sorted({source.meta.get_video_file_path(e, key) for e in episodes for key in source.meta.video_keys}):
        _link_or_copy(source.root / relative, root / relative)

    info = json.loads((source.root / "meta" / "info.json").read_text())
    info.update(features={**{k: v for k, v in info["features"].items() if k not in REWARD_FEATURES},
                          **{k: {**v, "shape": list(v["shape"])} for k, v in REWARD_FEATURES.items()}},
                total_episodes=len(old), total_frames=int(lengths.sum()), splits={"train": f"0:{len(old)}"})
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    for name in ("tasks.parquet", "stats.json"):
        if (source.root / "meta" / name).is_file():
            shutil.copyfile(source.root / "meta" / name, root / "meta" / name)
    return renumbered


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src.resolve(), dst)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(src, dst)


def rabc_progress(frames: pd.DataFrame) -> pd.DataFrame:
    """Progress per frame in LeRobot's RA-BC schema: the discrete label as `progress_sparse`
    ((score - 1) / 4), the expected score as `progress_dense`; NaN where unlabeled.

    RA-BC weights a sample by the progress its action chunk makes (0 where progress falls) and
    imitates a frame missing from the file at full weight. A failed episode's actions should not be
    imitated at all, so its frames are written as progress falling from 1 to 0 over the episode:
    every chunk loses progress and gets weight 0 (only the last frame, which has no chunk ahead,
    keeps a soft weight). Its labels as scored are in `labels/frames.parquet`."""
    sparse = frames["reward"].to_numpy(dtype=np.float64).copy()
    dense = np.where(frames["labeled"], score_to_reward(frames["expected"].to_numpy()), np.nan)
    failed = (frames["labeled"] & ~frames["success"]).to_numpy()
    lengths = frames.groupby("episode_index")["frame_index"].transform("size").to_numpy()
    falling = 1.0 - frames["frame_index"].to_numpy() / np.maximum(lengths - 1, 1)
    sparse[failed] = dense[failed] = falling[failed]
    return pd.DataFrame({
        "index": frames["index"].astype("int64"),
        "episode_index": frames["episode_index"].astype("int64"),
        "frame_index": frames["frame_index"].astype("int64"),
        "progress_sparse": sparse,
        "progress_dense": dense,
    })


def write_candywrapper(root: Path, frames: pd.DataFrame, result: LabeledEpisodes, number: dict[int, int]) -> None:
    """The outcomes and rewards in the files rewACT's own tooling (robocandywrapper plugins)
    reads: `episode_outcome/outcomes.json` (skipped episodes "unknown") and one
    `labelled_rewards/episode_NNNNNN.parquet` per labeled episode (global `frame_index`, `reward`),
    in the output dataset's numbering (`frames` renumbered, `number`: source -> output episode)."""
    verdicts = {number[e]: "success" if ok else "failure" for e, ok in result.outcomes.items()}
    verdicts |= {number[e]: "unknown" for e in result.skipped}
    outcomes = root / CANDYWRAPPER_OUTCOMES_FILE
    outcomes.parent.mkdir(parents=True)
    outcomes.write_text(json.dumps([{"episode_index": e, "outcome": o} for e, o in sorted(verdicts.items())], indent=2))
    rewards = root / CANDYWRAPPER_REWARDS_DIR
    rewards.mkdir(parents=True)
    for episode, rows in frames.groupby("episode_index"):
        table = pd.DataFrame({"frame_index": rows["index"].astype("int64"), "reward": rows["reward"].astype("float64")})
        table.to_parquet(rewards / f"episode_{int(episode):06d}.parquet", index=False)


def step_keypoints(score: np.ndarray) -> dict[int, float]:
    """rewACT keypoints whose linear interpolation reproduces the step labels exactly:
    the first and last frame, and both frames around every change of score."""
    frames = {0, len(score) - 1}
    for change in np.flatnonzero(np.diff(score)) + 1:
        frames |= {int(change) - 1, int(change)}
    return {f: float(score_to_reward(np.array(float(score[f])))) for f in sorted(frames)}


def _keyframe_row(label: EpisodeLabels, keyframe) -> dict:
    row = {"episode_index": label.episode, **asdict(keyframe)}
    row["context"] = list(keyframe.context)
    row["probs"] = list(keyframe.probs) if keyframe.probs else None
    row["model_score"] = row.pop("score")
    return row


def _table(rows: list[dict], identity: dict, prompts: list[dict]) -> pd.DataFrame:
    """Rows with the model, backend and prompt (name, content hash) behind each of them."""
    table = pd.DataFrame(rows)
    for key, value in identity.items():
        table[key] = value
    table["prompt"] = [prompt["name"] for prompt in prompts]
    table["prompt_sha256"] = [prompt["sha256"] for prompt in prompts]
    return table

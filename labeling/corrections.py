"""A reviewer's corrections applied to a labeling run's output, without asking the model again
(`python -m labeling.correct`, and `labeling.run --corrections`).

`corrections.json` is what the review page (`labeling.report`) exports:

    {"format": "labeling-corrections/1", "dataset": "local/demo",
     "keyframes": [{"episode": 3, "frame": 12, "score": 4}],  # a keyframe's score (any frame becomes one)
     "verdicts": [{"episode": 3, "success": false}],           # an episode's outcome
     "dropped": [5]}                                           # episodes to leave unlabeled

A corrected keyframe refills its episode with the progress stage's own fill; the output stage's
writer then rewrites the dataset features, the sidecar, the keypoints and the RA-BC progress;
verdicts are set in `labels/episodes.parquet`; and the corrections are recorded in provenance.
They are also kept beside the answer cache (`<out>.cache/corrections.json`, merged with any
earlier ones), so a later `labeling.run` on the same output, which rebuilds the labels from the
cached answers, applies them again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from common.cli import ConfigError, DatasetError
from common.dataset import EpisodeSource
from common.label_files import LABELS_DIR, frames_file, read_outcomes, read_summary
from common.options import from_record
from common.scale import HIGHEST, LOWEST
from labeling.output import write_outputs
from labeling.pipeline import LabeledEpisodes
from labeling.config import LabelingConfig
from labeling.progress import RETIRED_FILLS, apply_fill
from labeling.records import EpisodeLabels, KeyframeScore, NegativeRecord, TaskRewrite, Verdict
from labeling.review_page import default_cache_dir, write_report

FORMAT = "labeling-corrections/1"
STORED_FILE = "corrections.json"  # beside the answer cache
DROPPED_REASON = "dropped in review"


@dataclass(frozen=True)
class Corrections:
    """A reviewer's corrections to one labeling output."""

    keyframes: dict[tuple[int, int], int] = field(default_factory=dict)  # (episode, frame) -> score 1-5
    verdicts: dict[int, bool] = field(default_factory=dict)  # episode -> success
    dropped: frozenset[int] = frozenset()
    dataset: str | None = None  # the labeled dataset's repo id, to catch a file meant for another output

    @classmethod
    def read(cls, path: str | Path) -> Corrections:
        """Raises ConfigError (naming the file and the problem) for a file that is not corrections."""
        try:
            raw = json.loads(Path(path).read_text())
            if raw.get("format") != FORMAT:
                raise ValueError(f"format is {raw.get('format')!r}, expected {FORMAT!r}")
            keyframes = {(int(k["episode"]), int(k["frame"])): int(k["score"]) for k in raw.get("keyframes", [])}
            verdicts = {int(v["episode"]): v["success"] for v in raw.get("verdicts", [])}
            dropped = frozenset(int(e) for e in raw.get("dropped", []))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise ConfigError(f"cannot read corrections {path}: {err}") from err
        bad_score = next((s for s in keyframes.values() if not LOWEST <= s <= HIGHEST), None)
        if bad_score is not None:
            raise ConfigError(f"{path}: keyframe score {bad_score} is outside {LOWEST}-{HIGHEST}")
        if any(not isinstance(success, bool) for success in verdicts.values()):
            raise ConfigError(f"{path}: a verdict's success must be true or false")
        return cls(keyframes, verdicts, dropped, raw.get("dataset"))

    def merged(self, newer: Corrections) -> Corrections:
        """These corrections with `newer` on top (newer wins where both say something)."""
        return Corrections({**self.keyframes, **newer.keyframes}, {**self.verdicts, **newer.verdicts},
                           self.dropped | newer.dropped, newer.dataset or self.dataset)

    def of(self, episodes: set[int]) -> Corrections:
        """The corrections about these episodes only."""
        return Corrections({key: s for key, s in self.keyframes.items() if key[0] in episodes},
                           {e: v for e, v in self.verdicts.items() if e in episodes}, self.dropped & episodes,
                           self.dataset)

    def as_dict(self) -> dict:
        return {
            "format": FORMAT, "dataset": self.dataset,
            "keyframes": [{"episode": e, "frame": f, "score": s} for (e, f), s in sorted(self.keyframes.items())],
            "verdicts": [{"episode": e, "success": s} for e, s in sorted(self.verdicts.items())],
            "dropped": sorted(self.dropped),
        }

    def __bool__(self) -> bool:
        return bool(self.keyframes or self.verdicts or self.dropped)


def correct_labels(result: LabeledEpisodes, config: LabelingConfig, dataset: str, cache_dir: Path,
                   new: Path | None = None) -> Corrections:
    """Apply the corrections kept beside the answer cache, with the file `new` merged in, to a run's
    labels; the merged corrections are kept for later runs once they fit these labels."""
    path = cache_dir / STORED_FILE
    stored = Corrections.read(path) if path.is_file() else Corrections()
    added = Corrections.read(new) if new is not None else Corrections()
    # Stored corrections of episodes this run left out wait for a run that has them; new ones must fit.
    corrections = stored.of(set(result.labels) | set(result.skipped)).merged(added)
    apply_corrections(corrections, result, config, dataset)
    if new is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored.merged(added).as_dict(), indent=2))
    return corrections


def apply_corrections(corrections: Corrections, result: LabeledEpisodes, config: LabelingConfig,
                      dataset: str) -> None:
    """Set the reviewer's keyframe scores, refill those episodes and decide their outcome again,
    set the reviewer's verdicts, and leave dropped episodes unlabeled (as a skipped episode is).
    Raises DatasetError for a correction that does not fit the labels."""
    if corrections.dataset and corrections.dataset != dataset:
        raise DatasetError(f"these corrections are for {corrections.dataset}, this output labels {dataset}")
    for episode in sorted(corrections.dropped):
        if episode not in result.labels and episode not in result.skipped:
            raise DatasetError(f"cannot drop episode {episode}: this output has no such episode")
        result.labels.pop(episode, None)
        result.outcomes.pop(episode, None)
        result.skipped.setdefault(episode, DROPPED_REASON)
    result.negatives = [n for n in result.negatives if n.episode not in corrections.dropped]
    result.verdicts = [v for v in result.verdicts if v.episode not in corrections.dropped]
    unlabeled = sorted(set(corrections.verdicts) - set(result.labels) - corrections.dropped)
    if unlabeled:
        raise DatasetError(f"cannot set the verdict of episode {unlabeled[0]}: it has no labels")
    refill = set()
    for (episode, frame), score in sorted(corrections.keyframes.items()):
        if episode in corrections.dropped:
            continue
        labels = result.labels.get(episode)
        if labels is None:
            raise DatasetError(f"cannot correct episode {episode}: it has no labels")
        if not 0 <= frame < labels.length:
            raise DatasetError(f"episode {episode} has no frame {frame} (it has {labels.length})")
        keyframe = labels.keyframes.get(frame) or KeyframeScore(frame=frame, context=(frame,), score=None,
                                                                 expected=None)
        keyframe.score, keyframe.expected, keyframe.source, keyframe.reason = score, float(score), "review", None
        labels.keyframes[frame] = keyframe
        refill.add(episode)
    for episode in refill:
        apply_fill(result.labels[episode], config.progress)
        result.outcomes[episode] = config.outcome.succeeded(result.labels[episode])
    result.outcomes |= {e: v for e, v in corrections.verdicts.items() if e not in corrections.dropped}


def correction_record(corrections: Corrections) -> dict:
    """What provenance keeps of the corrections applied to an output."""
    return {**corrections.as_dict(), "applied": datetime.now(UTC).isoformat()}


def read_output(out: Path, source: EpisodeSource) -> tuple[LabeledEpisodes, dict[str, TaskRewrite]]:
    """The labels, negatives, verdicts, rewrites and skipped episodes an output holds, as the
    pipeline's records, so the output stage can write them again."""
    sidecar = out / LABELS_DIR
    frames = pd.read_parquet(frames_file(out))
    keyframes = pd.read_parquet(sidecar / "keyframes.parquet")
    labels = {}
    for episode, curve in frames.groupby("episode_index"):
        episode = int(episode)
        label = EpisodeLabels(episode, source.episode(episode).length, str(curve["instruction"].iloc[0]),
                              expected=curve["expected"].to_numpy(dtype=float),
                              score=curve["score"].to_numpy(dtype=int))
        for row in keyframes[keyframes["episode_index"] == episode].to_dict("records"):
            label.keyframes[int(row["frame"])] = KeyframeScore(
                frame=int(row["frame"]), context=tuple(int(f) for f in row["context"]),
                score=None if pd.isna(row["model_score"]) else int(row["model_score"]),
                expected=None if pd.isna(row["expected"]) else float(row["expected"]),
                probs=None if row["probs"] is None else tuple(float(p) for p in row["probs"]),
                reason=row["reason"], source=row["source"])
        labels[episode] = label
    skipped = pd.read_parquet(sidecar / "skipped.parquet")
    result = LabeledEpisodes(labels, read_outcomes(out), _records(sidecar / "negatives.parquet", NegativeRecord),
                             _records(sidecar / "verdicts.parquet", Verdict),
                             dict(zip(skipped["episode_index"].astype(int), skipped["reason"], strict=True)))
    rewrites = {r.original: r for r in _records(sidecar / "tasks.parquet", TaskRewrite)}
    return result, rewrites


def _records(path: Path, cls: type) -> list:
    """Rows of a sidecar table as records of `cls` (the columns the writer added left out)."""
    names = [f.name for f in fields(cls)]
    table = pd.read_parquet(path)
    if table.empty:
        return []
    return [cls(**{name: _plain(row[name]) for name in names if name in row}) for row in table.to_dict("records")]


def _plain(value):
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)  # an int column with missing values reads back as floats
    return value.item() if isinstance(value, np.generic) else value


def correct_output(out: Path, corrections_path: Path, cache_dir: Path | None = None) -> Corrections:
    """Merge `corrections_path` into the stored corrections and rewrite the output with them all."""
    if not frames_file(out).is_file():
        raise DatasetError(f"{out} is not a labeling.run output (no {frames_file(out).relative_to(out)})")
    cache_dir = cache_dir or default_cache_dir(out)
    provenance = json.loads((out / LABELS_DIR / "provenance.json").read_text())
    source = EpisodeSource.open(provenance["dataset"]["root"])  # the output is written from it, as by the run
    result, rewrites = read_output(out, source)
    corrections = correct_labels(result, saved_config(provenance["config"]),
                                 provenance["dataset"]["repo_id"], cache_dir, corrections_path)
    provenance["corrections"] = correction_record(corrections)
    summary = read_summary(out) | skip_counts(result)
    write_outputs(out, source, result, rewrites, provenance, summary, overwrite=True)
    write_report(out, cache_dir)
    return corrections


def saved_config(record: dict) -> LabelingConfig:
    """The settings an output was labeled with, as its provenance saved them; a fill since retired
    becomes its successor, so corrected episodes of an older output can be refilled."""
    progress = record.get("progress", {})
    if progress.get("fill") in RETIRED_FILLS:
        record = {**record, "progress": {**progress, "fill": RETIRED_FILLS[progress["fill"]]}}
    return from_record(LabelingConfig, record)


def skip_counts(result: LabeledEpisodes) -> dict:
    """The summary's counts of labeled and skipped episodes, dropped ones among the skipped."""
    return {"episodes": len(result.labels), "episodes_skipped": len(result.skipped),
            "skipped": {str(e): reason for e, reason in sorted(result.skipped.items())},
            "frames_labeled": sum(label.length for label in result.labels.values() if label.labeled)}

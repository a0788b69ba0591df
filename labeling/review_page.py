"""A review page for a labeling run: `<out>/report/index.html`, static, opened from the file
system (no server, no network).

`labeling.run` writes it at the end of every run; `python -m labeling.report` rebuilds it. The page shows the run
at a glance, a sortable, filterable episode table (doubtful episodes first) and, per episode, the
reward curve with its keyframes, the frames the model saw, every camera's frames under a cursor
on the curve, the instruction, negatives, validation verdicts and raw answers. A reviewer's
corrections leave the page as `corrections.json`, which `python -m labeling.correct` applies.

The page stays light for large runs: the table's data is one script, each episode's details
and frames (small JPEG strips, one per camera) load only when the episode is opened.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from common.cli import DatasetError
from common.dataset import EpisodeSource
from common.label_files import LABELS_DIR, frames_file, read_outcomes, read_output_numbering, read_summary
from common.staging import publish, staging_dir
from labeling.calls import CallCache

REPORT_DIR = "report"
ASSETS = ("index.html", "report.js", "report.css")
STRIP_FRAMES = 48  # frames per episode in a camera's strip, besides those the model saw
THUMB_SIZE = 128  # longer side of a frame in the strips, in pixels (never upscaled)


def report_dir(out: str | Path) -> Path:
    return Path(out) / REPORT_DIR


def default_cache_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".cache")


def write_report(out: str | Path, cache_dir: str | Path | None = None, thumb_size: int = THUMB_SIZE) -> Path:
    """Write `<out>/report/` from the output's files (and its answer cache, when present);
    returns the page's path."""
    out = Path(out)
    if not frames_file(out).is_file():
        raise DatasetError(f"{out} is not a labeling.run output (no {frames_file(out).relative_to(out)})")
    source = EpisodeSource.open(out)
    tables = _read_tables(out)
    summary = read_summary(out)
    provenance = json.loads((out / LABELS_DIR / "provenance.json").read_text())
    outcomes = _outcomes(out)
    raw = _raw_answers(Path(cache_dir) if cache_dir else default_cache_dir(out))

    page = report_dir(out)
    staging = staging_dir(page)
    (staging / "episodes").mkdir(parents=True)
    (staging / "frames").mkdir()
    for name in ASSETS:
        (staging / name).write_text(files("labeling").joinpath("report_assets", name).read_text())

    curves = {int(episode): curve for episode, curve in tables["frames"].groupby("episode_index")}
    points_of = {int(episode): _keyframes(table) for episode, table in tables["keyframes"].groupby("episode_index")}
    skipped = dict(zip(tables["skipped"]["episode_index"].astype(int), tables["skipped"]["reason"], strict=True))
    corrected = _corrected_episodes(provenance)
    rows = []
    for episode, index in sorted(_output_numbering(out, source).items()):  # labels/ number as the source does
        info, curve, points = source.episode(index), curves.get(episode), points_of.get(episode, [])
        row = _row(episode, info, curve, points, outcomes, skipped.get(episode), episode in corrected)
        detail = {
            **row,
            "expected": _rounded(curve["expected"]) if curve is not None else [],
            "score": curve["score"].astype(int).tolist() if curve is not None else [],
            "keyframes": points,
            "task_rewrite": _records(tables["tasks"][tables["tasks"]["original"] == info.task])[:1],
            "negatives": _records(_of_episode(tables["negatives"], episode)),
            "verdicts": _records(_of_episode(tables["verdicts"], episode)),
            "raw_answers": raw.get(episode, []),
            # Frames of labeled episodes only: a skipped one may be the one that cannot be decoded.
            "strips": {} if curve is None else _write_strips(source, index, episode, points, staging / "frames",
                                                             thumb_size),
        }
        _write_script(staging / "episodes" / f"{episode:06d}.js", "reportEpisode", detail)
        rows.append(row)

    _write_script(staging / "data.js", "reportRun", {
        "run": _run_overview(out, source, summary, provenance, outcomes is not None),
        "episodes": rows,
        "histograms": _histograms(tables["frames"], rows),
    })
    publish(staging, page)
    return page / "index.html"


def _read_tables(out: Path) -> dict[str, pd.DataFrame]:
    names = ("frames", "keyframes", "negatives", "verdicts", "tasks", "skipped")
    return {name: pd.read_parquet(out / LABELS_DIR / f"{name}.parquet") for name in names}


def _outcomes(out: Path) -> dict[int, bool] | None:
    """The run's own verdicts; None for an output written before runs decided outcomes."""
    try:
        return read_outcomes(out)
    except ValueError:
        return None


def _raw_answers(cache_dir: Path) -> dict[int, list[dict]]:
    """Every answer cached about each episode, as the model gave it (text or probabilities)."""
    path = cache_dir / "calls.sqlite"
    if not path.is_file():
        return {}
    cache = CallCache(path)
    answers = defaultdict(list)
    for _, stage, value, episode in cache.rows():
        if episode is not None:
            probs = value.get("choice_probs")
            answers[episode].append({"stage": stage, "text": value.get("text"),
                                     "probs": {k: round(p, 4) for k, p in probs.items()} if probs else None})
    cache.close()
    return answers


def _corrected_episodes(provenance: dict) -> set[int]:
    corrections = provenance.get("corrections", {})
    episodes = {item["episode"] for kind in ("keyframes", "verdicts") for item in corrections.get(kind, [])}
    return episodes | set(corrections.get("dropped", []))


def _keyframes(table: pd.DataFrame) -> list[dict]:
    points = []
    for row in table.sort_values("frame").itertuples():
        probs = None if row.probs is None else [round(float(p), 4) for p in row.probs]
        points.append({"frame": int(row.frame), "context": [int(f) for f in row.context],
                       "score": None if pd.isna(row.model_score) else int(row.model_score),
                       "expected": _number(row.expected), "probs": probs, "source": row.source,
                       "reason": row.reason})
    return points


def _output_numbering(out: Path, source: EpisodeSource) -> dict[int, int]:
    """Source episode -> its index in the output (the identity for an output without the table)."""
    try:
        return read_output_numbering(out)
    except ValueError:
        return {episode: episode for episode in source.episode_indices}


def _row(episode: int, info, curve: pd.DataFrame | None, points: list[dict], outcomes: dict[int, bool] | None,
         skipped: str | None, corrected: bool) -> dict:
    """One line of the episode table (`episode` in the source's numbering, `info` from the output)."""
    labeled = curve is not None and bool(curve["labeled"].all())
    final = points[-1] if points else None
    if not labeled:
        verdict = "not labeled"
    elif outcomes is None or episode not in outcomes:
        verdict = "unknown"
    else:
        verdict = "success" if outcomes[episode] else "failure"
    return {
        "episode": episode, "task": info.task, "length": info.length, "verdict": verdict,
        "final_score": int(curve["score"].iloc[-1]) if labeled else None,
        "final_expected": _number(curve["expected"].iloc[-1]) if labeled else None,
        # How sure the model was of the episode's last frame: the top probability of its answer.
        "confidence": round(max(final["probs"]), 3) if labeled and final and final["probs"] else None,
        "keyframes": len(points),
        "missing": sum(point["score"] is None for point in points),
        "skipped": skipped, "corrected": corrected,
    }


def _run_overview(out: Path, source: EpisodeSource, summary: dict, provenance: dict, has_outcomes: bool) -> dict:
    config = provenance.get("config", {})
    return {
        "name": out.resolve().name, "dataset": provenance.get("dataset", {}).get("repo_id", source.repo_id),
        "model": provenance.get("backend", {}).get("model"), "backend": provenance.get("backend", {}).get("backend"),
        "stages": config.get("stages", []), "started": provenance.get("started"),
        "finished": provenance.get("finished"), "fps": source.fps, "outcomes": has_outcomes,
        "summary": summary, "corrections": provenance.get("corrections"),
    }


def _histograms(frames: pd.DataFrame, rows: list[dict]) -> dict:
    labeled = frames[frames["labeled"]]
    finals = [row["final_score"] for row in rows if row["final_score"] is not None]
    return {"frames": [int((labeled["score"] == s).sum()) for s in range(1, 6)],
            "final": [finals.count(s) for s in range(1, 6)]}


def _write_strips(source: EpisodeSource, index: int, episode: int, points: list[dict], folder: Path, size: int) -> dict:
    """Per camera, one JPEG of the frames of the output's episode `index` (source episode
    `episode`) side by side: every k-th frame and every frame the model saw. Returns, per camera,
    the file, the frames it holds and a cell's size."""
    length = source.episode(index).length
    picked = set(source.frame_indices(index, max(1, math.ceil(length / STRIP_FRAMES))))
    picked |= {frame for point in points for frame in point["context"]}
    picked = sorted(picked)
    recorded = max(max(source.meta.features[camera]["shape"][:2]) for camera in source.camera_keys)
    decoded = source.frames(index, picked, size=size if size < recorded else None)
    strips = {}
    for camera, images in decoded.items():
        name = f"{episode:06d}_{camera.removeprefix('observation.images.')}.jpg"
        Image.fromarray(np.concatenate(list(images), axis=1)).save(folder / name, quality=80)
        strips[camera.removeprefix("observation.images.")] = {
            "file": f"frames/{name}", "frames": picked, "width": int(images.shape[2]), "height": int(images.shape[1])}
    return strips


def _write_script(path: Path, callback: str, data: dict) -> None:
    """Data as a script that hands it to the page: browsers refuse `fetch` of file:// URLs."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=_plain).replace("</", "<\\/")
    path.write_text(f"{callback}({text});\n")


def _records(table: pd.DataFrame) -> list[dict]:
    identity = ["model", "backend", "prompt_sha256"]
    return json.loads(table.drop(columns=[c for c in identity if c in table]).to_json(orient="records"))


def _of_episode(table: pd.DataFrame, episode: int) -> pd.DataFrame:
    """The rows about one episode of a negatives or verdicts table (an empty one has no columns)."""
    return table[table["episode"] == episode] if "episode" in table else table.iloc[0:0]


def _rounded(values: pd.Series) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 3) for v in values]


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 3)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to the report")

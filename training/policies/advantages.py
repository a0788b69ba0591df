"""Per-frame advantages for ACTvantage from any reward source, binarised into its condition.

The value of a frame is its reward source's progress in [0, 1] (labels, a RewACT checkpoint's
predictions, ground truth, interpolation). Progress is the value itself, with no per-step
reward, so the n-step advantage of frame t is the progress the next N frames make:

    A_t = V(min(t + N, T - 1)) - V(t)

(an episode stays at its last value beyond its end, so an episode shorter than N looks to its
last frame). A frame is positive when its advantage is above the (1 - F) quantile of all the
dataset's advantages (F = the positive fraction); frames of an episode judged failed are
negative from its peak value on, whatever progress its values still show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import training.evaluation.predict  # noqa: F401  (registers the `rewact:CHECKPOINT` reward source)
from common.advantages import COLUMNS
from common.ground_truth import read_ground_truth
from common.reward_sources import LabelError, labeled_outcomes, parse_source
from rewact.labels import EpisodeSpan
from training.evaluation.plots import pyplot


@dataclass(frozen=True)
class Advantages:
    table: pd.DataFrame  # the columns of `common.advantages.COLUMNS`, one row per frame
    threshold: float  # positive: advantage above this

    @property
    def positive_fraction(self) -> float:
        return float(self.table["positive"].mean())


def episode_outcomes(spec: str, dataset_root) -> dict[int, bool] | None:
    """Episode -> success where the reward source judges outcomes: a `labeling.run` output
    (`labels:DIR`, through `labeled_outcomes`) or the benchmark's ground truth; else None."""
    kind, path = parse_source(spec)
    if kind == "ground_truth":
        episodes = read_ground_truth(dataset_root)[1]
        return dict(zip(episodes["episode_index"].astype(int), episodes["outcome"] == "success", strict=True))
    if kind == "labels" and Path(path).is_dir():
        return labeled_outcomes(path, dataset_root)
    return None


def n_step_advantages(values: np.ndarray, n_step: int) -> np.ndarray:
    """V(min(t + n_step, T - 1)) - V(t) for every frame t of one episode."""
    ahead = np.minimum(np.arange(len(values)) + n_step, len(values) - 1)
    return values[ahead] - values


def compute_advantages(values: pd.DataFrame, spans: Sequence[EpisodeSpan], outcomes: dict[int, bool] | None,
                       n_step: int, positive_fraction: float) -> Advantages:
    """Advantages of every frame of every episode in `spans`.

    `values`: rows (episode_index, frame_index, reward) covering each episode's frames;
    `outcomes`: episode -> success where the source judges it (None: no episode is known failed).
    """
    by_episode = dict(tuple(values.groupby("episode_index")))
    missing = [s.index for s in spans if s.index not in by_episode]
    if missing:
        raise LabelError(f"the values cover no frame of {len(missing)} episode(s): {missing[:10]}")
    parts = []
    for span in spans:
        episode = by_episode[span.index].sort_values("frame_index")
        if not np.array_equal(episode["frame_index"].to_numpy(), np.arange(span.length)):
            raise LabelError(f"episode {span.index}: values cover {len(episode)} frames, the dataset has {span.length}")
        value = episode["reward"].to_numpy(dtype=np.float64)
        failed = outcomes is not None and not outcomes.get(span.index, True)
        parts.append(pd.DataFrame({
            "index": span.start + np.arange(span.length), "episode_index": span.index,
            "frame_index": np.arange(span.length), "value": value,
            "advantage": n_step_advantages(value, n_step),
            "after_failed_peak": failed & (np.arange(span.length) >= int(np.argmax(value))),
        }))
    table = pd.concat(parts, ignore_index=True)
    threshold = float(np.quantile(table["advantage"], 1.0 - positive_fraction))
    table["positive"] = (table["advantage"] > threshold) & ~table.pop("after_failed_peak")
    return Advantages(table[list(COLUMNS)], threshold)


def plot_histogram(advantages: Advantages, path: Path, title: str) -> None:
    """Advantages of positive and negative frames, stacked, with the threshold."""
    plt = pyplot()

    table = advantages.table
    fig, ax = plt.subplots(figsize=(6, 3.4))
    bins = np.linspace(table["advantage"].min(), table["advantage"].max() + 1e-9, 41)
    ax.hist([table.loc[table.positive, "advantage"], table.loc[~table.positive, "advantage"]], bins=bins,
            stacked=True, color=["tab:green", "tab:red"],
            label=[f"positive ({advantages.positive_fraction:.0%})", "negative"])
    ax.axvline(advantages.threshold, color="black", linestyle="--", label=f"threshold {advantages.threshold:.3f}")
    ax.set(xlabel="advantage (progress over the next N frames)", ylabel="frames", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

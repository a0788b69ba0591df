"""Training examples for a reward VLM: the progress stage's own requests, with a target score.

An example is exactly what `labeling.run` sends for one keyframe (same prompt files and
rubric, same context frames, camera layout and image size, built by
`labeling.progress.progress_jobs`), plus the answer it should give. Targets come from any
reward source that training and compare read (the benchmark's ground truth, a
`labeling.run` output, a parquet of rewards), and a `labeling.run` output's negatives
(counterfactual instructions, temporal clips) become examples too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.cli import DatasetError
from common.dataset import EpisodeSource
from common.ground_truth import read_ground_truth_by_episode
from common.label_files import frames_file, read_outcomes
from common.reward_sources import missing_episodes
from common.scale import SCORES, nearest_score, reward_to_score
from data.ground_truth import fractional_score
from labeling import (ClipImages, ClipSpec, EpisodeLabels, LabelingContext, ProgressConfig, PromptLibrary, VLMRequest,
                      context_indices, progress_jobs)
from training.evaluation.scoring import load_source  # compare's reader: both agree on every format


@dataclass(frozen=True)
class FrameTargets:
    """Per-frame targets of one episode on the 1-5 scale."""

    score: np.ndarray  # (T,) int, the hard target
    expected: np.ndarray  # (T,) float in [1, 5], the fractional target (equals `score` for hard sources)


@dataclass(frozen=True)
class Example:
    episode: int
    frame: int  # the keyframe: the context is spread over [0, frame]
    instruction: str
    score: int
    expected: float
    origin: str  # "progress", "counterfactual" or "temporal_clip"
    dataset: int = 0  # which of the training datasets `episode` belongs to


def read_targets(spec: str, source: EpisodeSource, episodes: list[int]) -> dict[int, FrameTargets]:
    """Targets of every episode from a reward source (`common.reward_sources`): ground truth
    keeps the simulator's fractional score, a `labeling.run` output its expected score."""
    if spec == "ground_truth":
        try:
            by_episode = read_ground_truth_by_episode(source.root)[0]
        except FileNotFoundError as err:
            raise DatasetError(str(err)) from err
        if missing := [e for e in episodes if e not in by_episode]:
            raise DatasetError(missing_episodes(spec, missing))
        targets = {}
        for episode in episodes:
            rows = by_episode[episode]
            targets[episode] = FrameTargets(rows.score.to_numpy(dtype=int),
                                            fractional_score(rows.progress.to_numpy(), rows.success.to_numpy()))
        return targets
    rewards = load_source(spec, source, episodes)
    expected = {episode: reward_to_score(values) for episode, values in rewards.items()}
    kind, _, path = spec.partition(":")
    if kind == "labels" and Path(path).is_dir():  # the labeler's expected score: the fractional target
        frames = pd.read_parquet(frames_file(path)).dropna(subset=["expected"])
        for episode, rows in frames[frames.episode_index.isin(episodes)].groupby("episode_index"):
            expected[int(episode)] = rows.sort_values("frame_index").expected.to_numpy(dtype=float)
    return {
        episode: FrameTargets(nearest_score(rewards[episode]),
                              np.clip(expected[episode], 1.0, 5.0))
        for episode in episodes
    }


def negative_examples(labeled_dir: Path, episodes: list[int]) -> list[Example]:
    """A `labeling.run` output's kept negatives of the episodes it judged successful, as examples:
    each is judged at its last frame. (A negative says the video shows a success stopped short
    or another task; on a failed episode that would be false.)"""
    path = Path(labeled_dir) / "labels" / "negatives.parquet"
    if not path.is_file():
        return []
    negatives = pd.read_parquet(path)
    if negatives.empty:
        return []
    try:
        successes = [e for e, success in read_outcomes(labeled_dir).items() if success and e in episodes]
    except ValueError as err:
        raise DatasetError(str(err)) from err
    kept = negatives[(negatives.status != "dropped") & negatives.episode.isin(successes)]
    return [Example(int(n.episode), int(n.end), str(n.instruction), int(n.final_score), float(n.final_score), str(n.origin))
            for n in kept.itertuples()]


def sample_examples(targets: dict[int, FrameTargets], instructions: dict[int, str], count: int,
                    rng: np.random.Generator) -> list[Example]:
    """`count` keyframes over whole episodes, balanced over the five scores.

    Every episode's last frame is included once (it decides success); the rest are drawn
    score class first (uniform over the classes present), then a frame of that class.
    """
    examples = [Example(e, len(t.score) - 1, instructions[e], int(t.score[-1]), float(t.expected[-1]), "progress")
                for e, t in sorted(targets.items())]
    pool = {score: [(e, int(f)) for e, t in sorted(targets.items()) for f in np.flatnonzero(t.score == score)]
            for score in SCORES}
    classes = [score for score in SCORES if pool[score]]
    for _ in range(max(0, count - len(examples))):
        score = classes[rng.integers(len(classes))]
        episode, frame = pool[score][rng.integers(len(pool[score]))]
        examples.append(Example(episode, frame, instructions[episode], score,
                                float(targets[episode].expected[frame]), "progress"))
    return examples


class RequestBuilder:
    """Renders examples into the progress stage's requests, decoding each episode's frames once.
    `sources` are the datasets the examples come from (`Example.dataset` indexes them)."""

    def __init__(self, sources: Sequence[EpisodeSource], clip: ClipSpec, config: ProgressConfig,
                 prompts: PromptLibrary, examples: list[Example]):
        self.contexts = [LabelingContext(source, caller=None, prompts=prompts, clip=clip, episodes=[])
                         for source in sources]
        self.config = config
        needed: dict[tuple[int, int], set[int]] = {}
        for example in examples:
            needed.setdefault((example.dataset, example.episode), set()).update(
                context_indices(example.frame, config.context_frames))
        self.clips = {(dataset, episode): ClipImages(sources[dataset], clip, episode, frames)
                      for (dataset, episode), frames in sorted(needed.items())}
        self.lengths = {key: sources[key[0]].episode(key[1]).length for key in needed}

    def request(self, example: Example) -> VLMRequest:
        key = (example.dataset, example.episode)
        labels = EpisodeLabels(example.episode, self.lengths[key], example.instruction)
        job = progress_jobs(self.contexts[example.dataset], labels, [example.frame], self.config, self.clips[key])[0]
        return job.request

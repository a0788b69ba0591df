"""Stage 2: a 1-5 progress score for every frame, at a bounded number of model calls.

Asking about every prefix [0, t] of an episode costs T calls and O(T^2) images. Instead:

1. score K keyframes spread over the episode, each from a clip of at most C frames spread
   over [0, t] (so every call shows C images, whatever t is); K grows with the episode's
   duration (`keyframes_per_second`, from a floor to a cap), so a 30-s recording is not
   judged from as many keyframes as a 1-s one;
2. score the frames between keyframes where something may hide, until none is left or the
   episode's budget of calls is spent: where neighbouring expected scores jump by more than
   `jump_threshold`, on both sides of a keyframe lower than both its neighbours (the depth
   and extent of a dip), and in any gap longer than `max_gap_seconds` between keyframes with
   room for a dip below them (a slip between two high keyframes);
3. fill the frames between keyframes from the keyframe expectations, then interpolate linearly.
   The default `piecewise` fill is the least-squares fit that is monotone between turns, each
   turn costing `turn_penalty` (squared levels): progress never decreases unless the
   keyframes show a fall worth more than a turn (an object dropped, an arm that reached and
   went back), and it may rise again after it (a regrasp, then success).

Per keyframe, the model's distribution over 1-5 is read from token probabilities where the
backend gives them (its answer = argmax, its value = expectation); otherwise the answer text is
parsed and both are that score. Per frame, the label is the filled expectation rounded to the
nearest score (`score`), beside the filled expectation itself (`expected`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from tqdm import tqdm

from common.cli import ConfigError
from common.options import option
from common.scale import HIGHEST, LOWEST
from labeling.backends import SCORE_CHOICES, SamplingParams, VLMRequest
from labeling.calls import Job
from labeling.clips import ClipImages, context_indices
from labeling.context import LabelingContext
from labeling.parsing import parse_score
from labeling.records import EpisodeLabels, KeyframeScore

PROMPT = "progress_score.v1.txt"
ANSWER_PREFIX = "ANSWER: "
# The score's probabilities after the prefilled "ANSWER: "; a few tokens where only text can be had.
SAMPLING = SamplingParams(max_tokens=8, choices=SCORE_CHOICES)
FILLS = ("piecewise", "isotonic", "linear")
# Fills of earlier versions, which saved outputs may name: the fill that refills them now
# (piecewise with one turn is what unimodal drew).
RETIRED_FILLS = {"unimodal": "piecewise"}


@dataclass(frozen=True)
class ProgressConfig:
    """How many keyframes each episode gets, where refinement looks, and how frames are filled.
    Per episode the initial keyframes are max(initial_keyframes, keyframes_per_second x its
    seconds) and the budget of calls max(max_keyframes, twice that), both at most keyframe_cap."""

    initial_keyframes: int = option(6, help="keyframes scored first, spread over each episode (at least)")
    max_keyframes: int = option(12, help="model calls per episode allowed, at least")
    # 0.25/s and 2-s gaps: chosen on long episodes (docs/results/keyframe_frontier); an episode
    # under 24 s keeps the floors, one under 2 s every gap, so short episodes are labelled as before.
    keyframes_per_second: float = option(0.25, help="initial keyframes per second of episode, above the floor "
                                                    "--initial-keyframes (the budget grows twice as fast)")
    keyframe_cap: int = option(48, help="model calls per episode, at most, however long it is")
    context_frames: int = option(6, help="frames shown per call")
    jump_threshold: float = option(1.0, help="score jump between neighbouring keyframes that asks for the frame "
                                             "between them")
    dip_threshold: float = option(0.5, help="a keyframe this far below both neighbours is a dip: the frames "
                                            "beside it are scored, to find its depth and extent")
    max_gap_seconds: float = option(2.0, help="split gaps longer than this between keyframes a dip could hide "
                                              "under (both above the lowest score); 0: never")
    fill: str = option("piecewise", choices=FILLS,
                       help="piecewise: monotone between turns, each turn costing --turn-penalty; "
                            "isotonic: never decreasing; linear: keyframes joined as scored")
    # A last keyframe d levels below the one before saves d^2/2 with one turn; a lone keyframe
    # d below both neighbours saves the same with two: 0.25 keeps the first from d = 0.71, the second
    # from 1.0 (chosen with bench/fill_penalty.py on a validation split with slips and regrasps).
    turn_penalty: float = option(0.25, help="piecewise fill: squared levels a change of direction must save")
    # An episode with fewer readable keyframe answers (or fewer than it has keyframes, if shorter)
    # is left unlabeled, with the reason, rather than filled flat from one or two answers.
    min_readable_keyframes: int = option(3, help="an episode with fewer readable keyframe answers is left unlabeled, "
                                                 "with the reason")

    def __post_init__(self):
        if self.fill not in FILLS:
            raise ConfigError(f"fill must be one of {', '.join(FILLS)}, got '{self.fill}'")
        if not 1 <= self.initial_keyframes <= self.keyframe_cap or self.max_keyframes < 1:
            raise ConfigError("need 1 <= initial_keyframes <= keyframe_cap and max_keyframes >= 1, got "
                              f"{self.initial_keyframes}, {self.keyframe_cap}, {self.max_keyframes}")
        if min(self.keyframes_per_second, self.max_gap_seconds, self.turn_penalty, self.dip_threshold) < 0:
            raise ConfigError("keyframes_per_second, max_gap_seconds, turn_penalty and dip_threshold cannot be "
                              "negative")

    def keyframe_counts(self, length: int, fps: float) -> tuple[int, int]:
        """(initial keyframes, budget of calls) of an episode of `length` frames at `fps`."""
        by_duration = int(np.ceil(self.keyframes_per_second * length / fps))
        initial = min(self.keyframe_cap, max(self.initial_keyframes, by_duration))
        return initial, min(self.keyframe_cap, max(self.max_keyframes, 2 * by_duration))

    def max_gap_frames(self, fps: float) -> int | None:
        return int(round(self.max_gap_seconds * fps)) if self.max_gap_seconds > 0 else None


def initial_keyframes(length: int, count: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, length - 1, max(1, min(count, length)))})


def refinement_frames(expected: dict[int, float | None], threshold: float, budget: int,
                      dip_threshold: float = ProgressConfig.dip_threshold, max_gap: int | None = None) -> list[int]:
    """Frames to score next, most telling first, at most `budget`: midpoints of the largest
    jumps above `threshold`; then both sides of every dip (a keyframe `dip_threshold` below
    both neighbours), to find its depth and extent; then midpoints of the longest gaps over
    `max_gap` frames whose ends both leave room below them for a dip of a level."""
    scored = sorted((frame, value) for frame, value in expected.items() if value is not None)
    gaps = [(fa, a, fb, b) for (fa, a), (fb, b) in pairwise(scored) if fb - fa > 1]
    jumps = [(fa + fb) // 2 for _, fa, fb in sorted(((abs(b - a), fa, fb) for fa, a, fb, b in gaps
                                                     if abs(b - a) > threshold), reverse=True)]
    dips = [frame for (fa, a), (f, v), (fb, b) in zip(scored, scored[1:], scored[2:], strict=False)
            if min(a, b) - v >= dip_threshold for frame in ((fa + f) // 2, (f + fb) // 2) if frame not in (fa, f, fb)]
    hiding = [] if max_gap is None else [
        (fa + fb) // 2 for _, fa, fb in sorted(((fb - fa, fa, fb) for fa, a, fb, b in gaps
                                               if fb - fa > max_gap and min(a, b) >= LOWEST + 1), reverse=True)]
    new = []
    for frame in jumps + dips + hiding:
        if frame not in expected and frame not in new and len(new) < budget:
            new.append(frame)
    return sorted(new)


def next_keyframes(expected: dict[int, float | None], length: int, fps: float, config: ProgressConfig) -> list[int]:
    """The refinement keyframes of an episode whose keyframes so far scored `expected`."""
    budget = config.keyframe_counts(length, fps)[1] - len(expected)
    return refinement_frames(expected, config.jump_threshold, budget, config.dip_threshold,
                             config.max_gap_frames(fps))


def isotonic(values: np.ndarray) -> np.ndarray:
    """Non-decreasing least-squares fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, count]
    for value in values:
        blocks.append([float(value), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + mean * count) / (blocks[-1][1] + count), blocks[-1][1] + count]
    return np.concatenate([np.full(int(count), mean) for mean, count in blocks])


def _monotone_errors(values: np.ndarray, start: int) -> np.ndarray:
    """errors[j]: squared error of the non-decreasing fit of values[start:j], for every j > start
    (pool adjacent violators grown one value at a time, so all of them cost O(n))."""
    errors = np.full(len(values) + 1, np.inf)
    blocks: list[tuple[float, float, int]] = []  # (sum, sum of squares, count)
    total = 0.0
    for j in range(start, len(values)):
        block = (float(values[j]), float(values[j]) ** 2, 1)
        while blocks and blocks[-1][0] / blocks[-1][2] > block[0] / block[2]:
            merged = blocks.pop()
            total -= merged[1] - merged[0] ** 2 / merged[2]
            block = (block[0] + merged[0], block[1] + merged[1], block[2] + merged[2])
        blocks.append(block)
        total += block[1] - block[0] ** 2 / block[2]
        errors[j + 1] = max(total, 0.0)
    return errors


def piecewise_monotone(values: np.ndarray, turn_penalty: float) -> np.ndarray:
    """Least-squares fit made of monotone runs, rising first, each change of direction costing
    `turn_penalty`: exact, by dynamic programming over where the runs end (O(n^2)). A rise
    that falls and rises again (a slip, a regrasp, success) is kept when the keyframes show
    a dip worth more than two turns; with an infinite penalty it is the isotonic fit."""
    n = len(values)
    if n == 0:
        return values.astype(np.float64)
    # errors[d][i][j]: error of values[i:j] as one run, d = 0 rising, 1 falling
    errors = [np.stack([_monotone_errors(sign * values, i) for i in range(n)]) for sign in (1.0, -1.0)]
    best = np.full((2, n + 1), np.inf)  # best[d][j]: values[:j] fitted, its last run in direction d
    cut = np.zeros((2, n + 1), dtype=int)
    best[0, 1:], best[1, 1:] = errors[0][0, 1:], turn_penalty + errors[1][0, 1:]
    for j in range(2, n + 1):
        for d in (0, 1):
            candidates = best[1 - d, 1:j] + turn_penalty + errors[d][1:j, j]
            i = int(np.argmin(candidates)) + 1
            if candidates[i - 1] < best[d, j] - 1e-12:
                best[d, j], cut[d, j] = candidates[i - 1], i
    fit, end, d = np.empty(n), n, int(np.argmin(best[:, n]))
    while end > 0:
        start = cut[d, end]
        run = values[start:end]
        fit[start:end] = isotonic(run) if d == 0 else -isotonic(-run)
        end, d = start, 1 - d
    return fit


def fill_frames(length: int, expected: dict[int, float], mode: str,
                turn_penalty: float = ProgressConfig.turn_penalty) -> np.ndarray:
    """Per-frame expected score from keyframe values; NaN everywhere if none were scored."""
    if not expected:
        return np.full(length, np.nan)
    frames = np.array(sorted(expected))
    values = np.array([expected[f] for f in frames], dtype=np.float64)
    if mode == "isotonic":
        values = isotonic(values)
    elif mode == "piecewise":
        values = piecewise_monotone(values, turn_penalty)
    return np.interp(np.arange(length), frames, values)


def apply_fill(labels: EpisodeLabels, config: ProgressConfig) -> None:
    scored = {f: k.expected for f, k in labels.keyframes.items() if k.expected is not None}
    labels.expected = fill_frames(labels.length, scored, config.fill, config.turn_penalty)
    rounded = np.clip(np.rint(np.nan_to_num(labels.expected)), LOWEST, HIGHEST)
    labels.score = np.where(np.isnan(labels.expected), 0, rounded).astype(int)


def too_few_readable(labels: EpisodeLabels, minimum: int) -> str | None:
    """Why an episode's answers cannot label it (fewer than `minimum` readable), or None."""
    unreadable = Counter(k.reason or "unknown" for k in labels.keyframes.values() if k.expected is None)
    readable = len(labels.keyframes) - sum(unreadable.values())
    needed = min(minimum, len(labels.keyframes))
    if readable >= needed:
        return None
    reason, count = unreadable.most_common(1)[0]
    return (f"only {readable} of {len(labels.keyframes)} progress answers readable, {needed} needed "
            f"(most often: {reason}, {count}x)")


def _parse(text: str | None):
    parsed = parse_score(text)
    return parsed.score, parsed.reason


def progress_jobs(ctx: LabelingContext, labels: EpisodeLabels, frames: list[int], config: ProgressConfig,
                  clip: ClipImages | None) -> list[Job]:
    """One scoring job per keyframe; `clip` None builds the prompts without images (dry run)."""
    template = ctx.prompts.get(PROMPT)
    jobs = []
    for frame in frames:
        context = context_indices(frame, config.context_frames)
        images = clip.images(context) if clip is not None else ()
        prompt = template.render(
            instruction=labels.instruction, views=ctx.clip.views_text(),
            frames=len(context) * ctx.clip.images_per_frame(), rubric=ctx.prompts.rubric,
        )
        about = {"episode": labels.episode, "frame": frame, "context": context}
        jobs.append(Job(about=about, request=VLMRequest(prompt=prompt, images=images, answer_prefix=ANSWER_PREFIX)))
    return jobs


def score_progress(ctx: LabelingContext, instructions: dict[int, str], config: ProgressConfig) -> dict[int, EpisodeLabels]:
    labels = {
        e: EpisodeLabels(e, ctx.source.episode(e).length, instructions[e]) for e in ctx.episodes
    }
    with tqdm(total=len(ctx.episodes), desc="progress", unit="episode", disable=not ctx.caller.progress) as bar:
        for group in ctx.groups():
            episodes = {e: ctx.source.episode(e) for e in group}
            pending = {e: initial_keyframes(info.length, config.keyframe_counts(info.length, info.fps)[0])
                       for e, info in episodes.items()}
            while pending:
                jobs, owners = [], []
                for episode, frames in pending.items():
                    needed = set().union(*(context_indices(f, config.context_frames) for f in frames))
                    clip = ctx.clip_images(episode, needed)
                    if clip is None:
                        continue
                    jobs += progress_jobs(ctx, labels[episode], frames, config, clip)
                    owners += [(episode, frame) for frame in frames]
                results = ctx.caller.run("progress", jobs, SAMPLING, _parse, show_progress=False)
                for (episode, frame), job, result in zip(owners, jobs, results, strict=True):
                    labels[episode].keyframes[frame] = KeyframeScore(
                        frame=frame, context=tuple(job.about["context"]), score=result.value, expected=result.expected,
                        probs=tuple(result.probs) if result.probs else None, reason=result.reason,
                    )
                pending = {}
                for episode in sorted({e for e, _ in owners}):
                    keyframes, info = labels[episode].keyframes, episodes[episode]
                    new = next_keyframes({f: k.expected for f, k in keyframes.items()}, info.length, info.fps, config)
                    if new:
                        pending[episode] = new
            with ctx.caller.stats.timed("fill"):
                for episode in group:
                    if episode not in ctx.skipped:
                        apply_fill(labels[episode], config)
            bar.update(len(group))
    return {e: label for e, label in labels.items() if e not in ctx.skipped}


def naive_prefix_cost(lengths: list[int]) -> tuple[int, int]:
    """(calls, frames shown) of scoring every prefix [0, t] of every episode with all its frames."""
    return sum(lengths), sum(length * (length + 1) // 2 for length in lengths)

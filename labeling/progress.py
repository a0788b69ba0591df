"""Stage 2: a 1-5 progress score for every frame, at a bounded number of model calls.

Asking about every prefix [0, t] of an episode costs T calls and O(T^2) images. Instead:

1. score K keyframes spread over the episode, each from a clip of at most C frames spread
   over [0, t] (so every call shows C images, whatever t is);
2. where neighbouring keyframes' expected scores jump by more than `jump_threshold`, score
   the frame between them, and repeat until no jump is left or the episode's budget of
   `max_keyframes` calls is spent;
3. fill the frames between keyframes from the keyframe expectations, then interpolate linearly.
   The default `unimodal` fill is isotonic (progress never decreases) unless the keyframes
   say the episode lost at least `min_drop` levels after its peak (an object dropped, an arm
   that reached and went back): then progress rises to the peak and falls after it, so the
   regression the model saw survives into the labels.

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
FILLS = ("unimodal", "isotonic", "linear")


@dataclass(frozen=True)
class ProgressConfig:
    initial_keyframes: int = option(6, help="keyframes scored first, spread over each episode")
    max_keyframes: int = option(12, help="model calls per episode, at most")
    context_frames: int = option(6, help="frames shown per call")
    jump_threshold: float = option(1.0, help="score jump between neighbouring keyframes that asks for the frame "
                                             "between them")
    fill: str = option("unimodal", choices=FILLS,
                       help="unimodal: never decreasing unless the keyframes fall --min-drop levels after their peak; "
                            "isotonic: never decreasing; linear: keyframes joined as scored")
    min_drop: float = option(1.0, help="unimodal fill: levels lost after the peak to keep a regression")
    # An episode with fewer readable keyframe answers (or fewer than it has keyframes, if shorter)
    # is left unlabeled, with the reason, rather than filled flat from one or two answers.
    min_readable_keyframes: int = option(3, help="an episode with fewer readable keyframe answers is left unlabeled, "
                                                 "with the reason")


def initial_keyframes(length: int, count: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, length - 1, max(1, min(count, length)))})


def refinement_frames(expected: dict[int, float | None], threshold: float, budget: int) -> list[int]:
    """Midpoints of the largest jumps between neighbouring scored keyframes."""
    scored = sorted((frame, value) for frame, value in expected.items() if value is not None)
    jumps = sorted(
        ((abs(b - a), (fa + fb) // 2) for (fa, a), (fb, b) in pairwise(scored) if fb - fa > 1 and abs(b - a) > threshold),
        reverse=True,
    )
    new = []
    for _, frame in jumps:
        if frame not in expected and frame not in new and len(new) < budget:
            new.append(frame)
    return sorted(new)


def isotonic(values: np.ndarray) -> np.ndarray:
    """Non-decreasing least-squares fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, count]
    for value in values:
        blocks.append([float(value), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + mean * count) / (blocks[-1][1] + count), blocks[-1][1] + count]
    return np.concatenate([np.full(int(count), mean) for mean, count in blocks])


def unimodal(values: np.ndarray, min_drop: float) -> np.ndarray:
    """Least-squares fit that rises, then falls, if it ends at least `min_drop` below its
    peak; otherwise the non-decreasing fit. Exact: the best rise/fall split of all."""
    rising = isotonic(values)
    best, best_error = rising, float(((rising - values) ** 2).sum())
    for split in range(1, len(values)):
        fit = np.concatenate([isotonic(values[:split]), -isotonic(-values[split:])])
        error = float(((fit - values) ** 2).sum())
        if error < best_error - 1e-12:
            best, best_error = fit, error
    return best if best.max() - best[-1] >= min_drop else rising


def fill_frames(length: int, expected: dict[int, float], mode: str,
                min_drop: float = ProgressConfig.min_drop) -> np.ndarray:
    """Per-frame expected score from keyframe values; NaN everywhere if none were scored."""
    if not expected:
        return np.full(length, np.nan)
    frames = np.array(sorted(expected))
    values = np.array([expected[f] for f in frames], dtype=np.float64)
    if mode == "isotonic":
        values = isotonic(values)
    elif mode == "unimodal":
        values = unimodal(values, min_drop)
    return np.interp(np.arange(length), frames, values)


def apply_fill(labels: EpisodeLabels, mode: str, min_drop: float = ProgressConfig.min_drop) -> None:
    scored = {f: k.expected for f, k in labels.keyframes.items() if k.expected is not None}
    labels.expected = fill_frames(labels.length, scored, mode, min_drop)
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
            pending = {e: initial_keyframes(labels[e].length, config.initial_keyframes) for e in group}
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
                    keyframes = labels[episode].keyframes
                    budget = config.max_keyframes - len(keyframes)
                    new = refinement_frames({f: k.expected for f, k in keyframes.items()}, config.jump_threshold, budget)
                    if new:
                        pending[episode] = new
            with ctx.caller.stats.timed("fill"):
                for episode in group:
                    if episode not in ctx.skipped:
                        apply_fill(labels[episode], config.fill, config.min_drop)
            bar.update(len(group))
    return {e: label for e, label in labels.items() if e not in ctx.skipped}


def naive_prefix_cost(lengths: list[int]) -> tuple[int, int]:
    """(calls, frames shown) of scoring every prefix [0, t] of every episode with all its frames."""
    return sum(lengths), sum(length * (length + 1) // 2 for length in lengths)

"""Stage 4: a second look at every negative and a sample of progress labels.

The VLM sees the clip, the instruction and the proposed score and answers whether the pair
is consistent with the rubric and the video, plus the score it would give. Inconsistent
labels are relabelled with that score when it is usable (a negative must stay below 5),
otherwise dropped; unreadable verdicts leave the label as it was, marked unverified. Every
verdict is kept. Keyframes are checked first (`validate_progress`), so the outcome verdicts
and the negatives are derived from the labels as validated; the negatives after (`validate_negatives`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from labeling.backends import SamplingParams, VLMRequest
from labeling.calls import Job
from labeling.clips import ClipImages, context_indices
from labeling.context import LabelingContext
from labeling.parsing import parse_verdict
from labeling.progress import ProgressConfig, apply_fill
from labeling.records import EpisodeLabels, NegativeRecord, Verdict

PROMPT = "validate_label.v1.txt"
SAMPLING = SamplingParams(max_tokens=24)


@dataclass(frozen=True)
class Target:
    kind: str  # "negative" or "progress"
    id: str
    episode: int
    frame: int
    instruction: str
    score: int


def _parse(text: str | None):
    verdict = parse_verdict(text)
    if verdict.consistent is None:
        return None, verdict.reason
    return {"consistent": verdict.consistent, "score": verdict.score}, None


def progress_sample(labels: dict[int, EpisodeLabels], fraction: float) -> list[Target]:
    """A reproducible share of each episode's model-scored keyframes (at least one)."""
    targets = []
    for episode, label in labels.items():
        scored = [k for k in label.keyframes.values() if k.score is not None]
        if not scored or fraction <= 0:
            continue
        ranked = sorted(scored, key=lambda k: hashlib.sha256(f"{episode}:{k.frame}".encode()).hexdigest())
        for keyframe in ranked[: max(1, round(fraction * len(scored)))]:
            targets.append(Target("progress", f"progress-{episode}-{keyframe.frame}", episode, keyframe.frame,
                                  label.instruction, int(label.score[keyframe.frame])))
    return targets


def validate_job(ctx: LabelingContext, target: Target, context: list[int], clip: ClipImages | None) -> Job:
    """`clip` None builds the prompt without images (dry run)."""
    images = clip.images(context) if clip is not None else ()
    prompt = ctx.prompts.get(PROMPT).render(
        instruction=target.instruction, views=ctx.clip.views_text(), frames=len(context) * ctx.clip.images_per_frame(),
        score=target.score, rubric_line=ctx.prompts.rubric_lines[target.score], rubric=ctx.prompts.rubric,
    )
    about = {"target": target.id, "episode": target.episode, "frame": target.frame, "context": context}
    return Job(about=about, request=VLMRequest(prompt=prompt, images=images))


def validate_progress(ctx: LabelingContext, labels: dict[int, EpisodeLabels], sample_fraction: float,
                      config: ProgressConfig) -> list[Verdict]:
    """Re-check a sample of the keyframes; a relabel replaces the keyframe's answer (its
    probabilities with it) and refills its episode, before anything is derived from the labels."""
    verdicts = _ask(ctx, progress_sample(labels, sample_fraction), config)
    refill = set()
    for verdict in verdicts:
        if verdict.action == "relabel":
            keyframe = labels[verdict.episode].keyframes[verdict.frame]
            keyframe.score = keyframe.expected = verdict.model_score
            keyframe.probs = None  # the validator answers a score, not a distribution
            keyframe.source = "validator"
            refill.add(verdict.episode)
    with ctx.caller.stats.timed("fill"):
        for episode in refill:
            apply_fill(labels[episode], config)
    return verdicts


def validate_negatives(ctx: LabelingContext, negatives: list[NegativeRecord], config: ProgressConfig) -> list[Verdict]:
    """Re-check every negative: kept, relabelled (below 5) or dropped; unanswered ones stay unverified."""
    targets = [Target("negative", n.id, n.episode, n.end, n.instruction, n.score) for n in negatives]
    verdicts = _ask(ctx, targets, config)
    negative_by_id = {n.id: n for n in negatives}
    for verdict in verdicts:
        negative = negative_by_id[verdict.target_id]
        negative.status = {"keep": "kept", "relabel": "relabelled", "drop": "dropped"}.get(verdict.action, "unverified")
        negative.final_score = verdict.model_score if verdict.action == "relabel" else negative.score
    mark_unverified(negatives)
    return verdicts


def _ask(ctx: LabelingContext, targets: list[Target], config: ProgressConfig) -> list[Verdict]:
    by_episode: dict[int, list[Target]] = {}
    for target in targets:
        by_episode.setdefault(target.episode, []).append(target)
    verdicts = []
    for group in ctx.groups():
        jobs, owners = [], []
        for episode in group:
            episode_targets = by_episode.get(episode, [])
            if not episode_targets:
                continue
            contexts = [context_indices(t.frame, config.context_frames) for t in episode_targets]
            clip = ctx.clip_images(episode, set().union(*contexts))
            if clip is None:
                continue
            for target, context in zip(episode_targets, contexts, strict=True):
                jobs.append(validate_job(ctx, target, context, clip))
                owners.append(target)
        for target, result in zip(owners, ctx.caller.run("validate", jobs, SAMPLING, _parse), strict=True):
            verdicts.append(_verdict(target, result.value, result.reason))
    return verdicts


def _verdict(target: Target, value: dict | None, reason: str | None) -> Verdict:
    if value is None:
        action = "unverified"
    elif value["consistent"]:
        action = "keep"
    else:
        usable = value["score"] is not None and (target.kind == "progress" or value["score"] < 5)
        action = "relabel" if usable and value["score"] != target.score else "drop"
        if target.kind == "progress" and action == "drop":
            action = "unverified"  # progress labels are never dropped, only relabelled
    return Verdict(
        target=target.kind, target_id=target.id, episode=target.episode, frame=target.frame,
        instruction=target.instruction, proposed_score=target.score,
        consistent=None if value is None else value["consistent"],
        model_score=None if value is None else value["score"], action=action, reason=reason,
    )


def mark_unverified(negatives: list[NegativeRecord]) -> None:
    """Negatives that no verdict reached keep their proposed score, flagged as unverified."""
    for negative in negatives:
        if negative.status == "proposed":
            negative.status, negative.final_score = "unverified", negative.score

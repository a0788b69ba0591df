"""Stage 3: failure examples from successful episodes only (the run's outcome verdicts decide
which; `labels` holds those), without fabricating video.

a. Counterfactual relabeling: the VLM describes the episode; a text prompt proposes other
   instructions that the same video satisfies only partly or not at all, each with the
   score it would deserve (1-4).
b. Temporal clipping: the episode cut inside each plateau of its progress labels below the
   final score, i.e. the original instruction stopped part way, labelled from those scores.
"""

from __future__ import annotations

import numpy as np

from labeling.backends import SamplingParams, VLMRequest
from labeling.calls import Job
from labeling.clips import ClipImages, context_indices
from labeling.context import LabelingContext
from labeling.parsing import parse_counterfactuals
from labeling.records import EpisodeLabels, NegativeRecord

DESCRIBE_PROMPT = "describe_episode.v1.txt"
COUNTERFACTUAL_PROMPT = "counterfactual_tasks.v1.txt"
DESCRIBE_SAMPLING = SamplingParams(max_tokens=160)
COUNTERFACTUAL_TOKENS_EACH = 48  # tokens per proposed instruction


def temporal_clips(labels: dict[int, EpisodeLabels]) -> list[NegativeRecord]:
    """One clip per score level below the episode's final score, cut mid-plateau."""
    records = []
    for episode, label in labels.items():
        if not label.labeled:
            continue
        final = int(label.score[-1])
        for level in range(1, final):
            frames = np.flatnonzero(label.score[:-1] == level)
            if len(frames) == 0:
                continue
            cut = int(frames[len(frames) // 2])
            records.append(NegativeRecord(
                id=f"clip-{episode}-{level}", episode=episode, start=0, end=cut,
                instruction=label.instruction, score=level, origin="temporal_clip",
            ))
    return records


def _description(text: str | None):
    text = (text or "").strip()
    return (text, None) if text else (None, "empty answer")


def _proposals(text: str | None):
    parsed = parse_counterfactuals(text)
    return ([list(p) for p in parsed.proposals] if parsed.proposals else None), parsed.reason


def describe_frames_of(length: int, count: int) -> list[int]:
    """The frames a description is asked about: `count` frames ending at the last one."""
    return context_indices(length - 1, count)


def describe_job(ctx: LabelingContext, episode: int, frames: list[int], clip: ClipImages | None) -> Job:
    """`clip` None builds the prompt without images (dry run)."""
    images = clip.images(frames) if clip is not None else ()
    prompt = ctx.prompts.get(DESCRIBE_PROMPT).render(views=ctx.clip.views_text(),
                                                     frames=len(frames) * ctx.clip.images_per_frame())
    return Job(about={"episode": episode, "context": frames}, request=VLMRequest(prompt=prompt, images=images))


def counterfactual_job(ctx: LabelingContext, episode: int, instruction: str, description: str, count: int) -> Job:
    prompt = ctx.prompts.get(COUNTERFACTUAL_PROMPT).render(instruction=instruction, description=description,
                                                           count=count, rubric=ctx.prompts.rubric)
    return Job(about={"episode": episode, "instruction": instruction}, request=VLMRequest(prompt=prompt))


def counterfactual_sampling(count: int) -> SamplingParams:
    return SamplingParams(max_tokens=COUNTERFACTUAL_TOKENS_EACH * count)


def counterfactuals(ctx: LabelingContext, labels: dict[int, EpisodeLabels], count: int,
                    describe_frames: int) -> list[NegativeRecord]:
    records = []
    for group in ctx.groups():
        jobs = []
        for episode in (e for e in group if e in labels):
            frames = describe_frames_of(labels[episode].length, describe_frames)
            clip = ctx.clip_images(episode, set(frames))
            if clip is not None:
                jobs.append(describe_job(ctx, episode, frames, clip))
        descriptions = ctx.caller.run("describe", jobs, DESCRIBE_SAMPLING, _description)
        proposal_jobs = [counterfactual_job(ctx, job.about["episode"], labels[job.about["episode"]].instruction,
                                            description.value, count)
                         for job, description in zip(jobs, descriptions, strict=True) if description.value is not None]
        owners = [job.about["episode"] for job in proposal_jobs]
        results = ctx.caller.run("counterfactual", proposal_jobs, counterfactual_sampling(count), _proposals)
        for episode, result in zip(owners, results, strict=True):
            for i, (instruction, score) in enumerate((result.value or [])[:count]):
                records.append(NegativeRecord(
                    id=f"cf-{episode}-{i}", episode=episode, start=0, end=labels[episode].length - 1,
                    instruction=instruction, score=int(score), origin="counterfactual",
                ))
    return records

"""Stage 3: failure examples from successful episodes only, without fabricating video.

a. Counterfactual relabeling: the VLM describes the episode; a text prompt proposes other
   instructions that the same video satisfies only partly or not at all, each with the
   score it would deserve (1-4).
b. Temporal clipping: the episode cut inside each plateau of its progress labels below the
   final score, i.e. the original instruction stopped part way, labelled from those scores.
"""

from __future__ import annotations

import numpy as np

from labeling.backends import VLMRequest
from labeling.calls import Job
from labeling.clips import context_indices
from labeling.context import LabelingContext
from labeling.parsing import parse_counterfactuals
from labeling.records import EpisodeLabels, NegativeRecord

DESCRIBE_PROMPT = "describe_episode.v1.txt"
COUNTERFACTUAL_PROMPT = "counterfactual_tasks.v1.txt"


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


def counterfactuals(ctx: LabelingContext, labels: dict[int, EpisodeLabels], count: int,
                    describe_frames: int) -> list[NegativeRecord]:
    describe = ctx.prompts.get(DESCRIBE_PROMPT)
    propose = ctx.prompts.get(COUNTERFACTUAL_PROMPT)
    records = []
    for group in ctx.groups():
        jobs = []
        for episode in group:
            frames = context_indices(labels[episode].length - 1, describe_frames)
            clip = ctx.clip_images(episode, set(frames))
            if clip is None:
                continue
            images = clip.images(frames)
            prompt = describe.render(views=ctx.clip.views_text(), frames=len(images))
            jobs.append(Job(about={"episode": episode, "frames": frames},
                            request=VLMRequest(prompt=prompt, images=images, max_new_tokens=160)))
        descriptions = ctx.caller.run("describe", jobs, _description)
        proposal_jobs, owners = [], []
        for episode, description in zip([job.about["episode"] for job in jobs], descriptions, strict=True):
            if description.value is None:
                continue
            instruction = labels[episode].instruction
            prompt = propose.render(instruction=instruction, description=description.value, count=count,
                                    rubric=ctx.prompts.rubric)
            proposal_jobs.append(Job(about={"episode": episode, "instruction": instruction},
                                     request=VLMRequest(prompt=prompt, max_new_tokens=48 * count)))
            owners.append(episode)
        for episode, result in zip(owners, ctx.caller.run("counterfactual", proposal_jobs, _proposals), strict=True):
            for i, (instruction, score) in enumerate((result.value or [])[:count]):
                records.append(NegativeRecord(
                    id=f"cf-{episode}-{i}", episode=episode, start=0, end=labels[episode].length - 1,
                    instruction=instruction, score=int(score), origin="counterfactual",
                ))
    return records

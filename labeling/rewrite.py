"""Stage 1: each task string becomes one clear imperative instruction (+ paraphrases)."""

from __future__ import annotations

from labeling.backends import SamplingParams, VLMRequest
from labeling.calls import Job
from labeling.context import LabelingContext
from labeling.parsing import parse_rewrite
from labeling.records import TaskRewrite

PROMPT = "rewrite_task.v1.txt"
SAMPLING = SamplingParams(max_tokens=128)


def _parse(text: str | None):
    parsed = parse_rewrite(text)
    return ([parsed.instruction, list(parsed.paraphrases)] if parsed.instruction else None), parsed.reason


def rewrite_job(ctx: LabelingContext, task: str, paraphrases: int) -> Job:
    prompt = ctx.prompts.get(PROMPT).render(task=task, paraphrases=paraphrases)
    return Job(about={"task": task}, request=VLMRequest(prompt=prompt))


def rewrite_tasks(ctx: LabelingContext, paraphrases: int) -> dict[str, TaskRewrite]:
    """Rewrites keyed by the original task; a failed rewrite keeps the original, with the reason."""
    tasks = sorted({ctx.source.episode(e).task for e in ctx.episodes})
    jobs = [rewrite_job(ctx, task, paraphrases) for task in tasks]
    rewrites = {}
    for task, result in zip(tasks, ctx.caller.run("rewrite", jobs, SAMPLING, _parse), strict=True):
        if result.value is None:
            rewrites[task] = TaskRewrite(task, task, (), result.reason)
        else:
            instruction, alternatives = result.value
            rewrites[task] = TaskRewrite(task, instruction, tuple(alternatives[:paraphrases]))
    return rewrites


def unchanged_tasks(ctx: LabelingContext) -> dict[str, TaskRewrite]:
    """The identity rewrite, when the stage is not run."""
    tasks = {ctx.source.episode(e).task for e in ctx.episodes}
    return {task: TaskRewrite(task, task, (), "rewrite stage not run") for task in tasks}

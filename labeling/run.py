"""Label a LeRobot dataset with per-frame 1-5 progress scores and synthetic failures.

    python -m labeling.run --dataset <repo_id | dir> [--revision REV] --out <dir> [--backend transformers|openai|vllm]
        [--model Qwen/Qwen2.5-VL-7B-Instruct] [--base-url URL ...] [--episodes 0,3,5-9] [--cameras ...]
        [--stages rewrite,progress,negatives,validate] [--executor ray --replicas N] [--dry-run]

Writes a new LeRobot dataset with `next.reward` (the source is never modified), a sidecar
of every label, negative and verdict under `<out>/labels/`, rewACT keypoints, LeRobot's RA-BC
progress parquet, `<out>/labeling_summary.json` and a review page, `<out>/report/index.html`.
Answers are cached in `<out>.cache/`: a killed run resumes where it stopped, and re-running a
finished one calls nothing.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from common.cli import ConfigError, DatasetError, parse_episodes, run_cli
from common.dataset import REVISION_HELP, EpisodeSource
from common.label_files import read_summary
from common.options import as_record, option, parse_options
from labeling import negatives, progress, rewrite, validate
from labeling.backends import SamplingParams, make_backend
from labeling.calls import CallCache, CallStats, Job, MissingBudget, ModelCaller
from labeling.clips import context_indices
from labeling.config import STAGES, LabelingConfig, parse_stages
from labeling.context import LabelingContext
from labeling.corrections import correct_labels, correction_record
from labeling.model_stages import MODEL_STAGES_FILE, declared_stages
from labeling.output import write_outputs
from labeling.pipeline import LabeledEpisodes, check_not_all_skipped, label_episodes, rewrites
from labeling.progress import initial_keyframes, naive_prefix_cost
from labeling.prompts import DEFAULT_PROMPTS_DIR, PromptLibrary
from labeling.ray_executor import RayOptions
from labeling.records import EpisodeLabels
from labeling.review_page import write_report

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class RunOptions:
    """Label a LeRobot dataset with per-frame 1-5 progress scores and synthetic failures."""

    dataset: str = option(help="hub repo id or local LeRobot dataset directory")
    out: Path = option(help="output dataset directory (must not exist unless --overwrite)")
    revision: str | None = option(None, help=REVISION_HELP)
    labeling: LabelingConfig = field(default_factory=LabelingConfig)
    stages: tuple[str, ...] | None = option(None, parse=parse_stages,
                                            help=f"comma-separated subset of {','.join(STAGES)} (default: every "
                                                 f"stage, or those the model declares in {MODEL_STAGES_FILE} "
                                                 "beside its weights)")
    episodes: list[int] | None = option(None, help="e.g. 0,3,5-9 (default: all)", parse=parse_episodes)
    executor: str = option("local", choices=EXECUTORS, help="local: this process; ray: replicas on a Ray cluster")
    ray: RayOptions = field(default_factory=RayOptions)
    prompts_dir: Path = option(DEFAULT_PROMPTS_DIR, help="the prompt files")
    cache_dir: Path | None = option(None, help="resume cache (default: <out>.cache)")
    corrections: Path | None = option(None, help="a review's corrections.json, applied now and on every later run "
                                                 "(see python -m labeling.correct)")
    overwrite: bool = option(False, help="replace --out")
    dry_run: bool = option(False, help="print the prompts that would be sent; call nothing")
    quiet: bool = option(False, help="no progress bars")

    def __post_init__(self):
        if len(self.labeling.backend.base_urls) > 1 and self.executor != "ray":
            raise ConfigError("several --base-url are spread over Ray replicas: add --executor ray --replicas N")


def with_dataset_views(config: LabelingConfig, source: EpisodeSource) -> LabelingConfig:
    """The configuration with its views checked against the dataset (short camera names resolved)."""
    views = replace(config.views, cameras=source.check_cameras(config.views.cameras))
    if not views.cameras:
        raise DatasetError(f"{source.root} has no camera features to show the model")
    return replace(config, views=views)


def run_stages(args: RunOptions) -> tuple[str, ...]:
    """--stages as given; else the stages a local model declares (saying so), else all of them."""
    if args.stages is not None:
        return args.stages
    backend = args.labeling.backend
    declared = declared_stages(backend.model) if backend.name != "openai" else None
    if declared is None:
        return STAGES
    print(f"{backend.model} declares in {MODEL_STAGES_FILE} that it answers only: {', '.join(declared)}; "
          f"running those (pass --stages to choose)", file=sys.stderr)
    return declared


def render_request(stage: str, prompt_file: str, job: Job, params: SamplingParams, images_per_frame: int) -> str:
    """One request as a stage would send it; images as a placeholder naming their frames."""
    frames = list(job.about.get("context", ()))
    where = ", ".join(f"{key} {job.about[key]}" for key in ("episode", "frame", "task") if key in job.about)
    lines = [f"\n## {stage} ({prompt_file}{', ' + where if where else ''})"]
    if frames:
        lines.append(f"<{len(frames) * images_per_frame} images: frames {frames}>")
    lines.append(job.request.prompt)
    if job.request.answer_prefix:
        lines.append(f"[assistant answer starts with: {job.request.answer_prefix!r}]")
    lines.append(f"[sampling: {asdict(params)}]")
    return "\n".join(lines)


def dry_run(ctx: LabelingContext, config: LabelingConfig) -> str:
    """What each stage would send for the first episode, built by the stages' own request
    builders (images shown as placeholders). Answers the later requests depend on (a
    description, a keyframe's score) are placeholders too."""
    episode = ctx.episodes[0]
    info = ctx.source.episode(episode)
    per_frame = ctx.clip.images_per_frame()
    lines = [f"# dry run: {len(ctx.episodes)} episode(s), stages {', '.join(config.stages)}"]
    if "rewrite" in config.stages:
        job = rewrite.rewrite_job(ctx, info.task, config.rewrite.paraphrases)
        lines.append(render_request("rewrite", rewrite.PROMPT, job, rewrite.SAMPLING, per_frame) + "\n(one per task)")
    labels = EpisodeLabels(episode, info.length, info.task)
    initial, budget = config.progress.keyframe_counts(info.length, info.fps)
    frames = initial_keyframes(info.length, initial)
    for job in progress.progress_jobs(ctx, labels, frames, config.progress, clip=None):
        lines.append(render_request("progress", progress.PROMPT, job, progress.SAMPLING, per_frame))
    lines.append(f"\n(refinement keyframes depend on the answers; at most {budget} calls for this episode)")
    if "negatives" in config.stages:
        frames = negatives.describe_frames_of(info.length, config.progress.context_frames)
        job = negatives.describe_job(ctx, episode, frames, clip=None)
        lines.append(render_request("describe", negatives.DESCRIBE_PROMPT, job, negatives.DESCRIBE_SAMPLING, per_frame))
        count = config.negatives.counterfactuals
        job = negatives.counterfactual_job(ctx, episode, info.task, "<the description answered above>", count)
        lines.append(render_request("counterfactual", negatives.COUNTERFACTUAL_PROMPT, job,
                                    negatives.counterfactual_sampling(count), per_frame))
    if "validate" in config.stages:
        frame = frames[-1]
        target = validate.Target("progress", "example", episode, frame, info.task, score=3)
        job = validate.validate_job(ctx, target, context_indices(frame, config.progress.context_frames), clip=None)
        lines.append(render_request("validate", validate.PROMPT, job, validate.SAMPLING, per_frame)
                     + "\n(one per negative and per sampled keyframe; shown for a keyframe labelled 3)")
    return "\n".join(lines)


def summarize(stats: CallStats, image_tokens_measured: bool, result: LabeledEpisodes, elapsed: float,
              extra: dict | None = None) -> dict:
    labels = result.labels
    lengths = [label.length for label in labels.values()]
    labeled_frames = sum(label.length for label in labels.values() if label.labeled)
    naive_calls, naive_frames = naive_prefix_cost(lengths)
    progress_calls = stats.by_stage.get("progress", 0)
    progress_images = stats.image_tokens_by_stage.get("progress", 0)
    frames_shown = sum(len(k.context) for label in labels.values() for k in label.keyframes.values())
    return {
        "episodes": len(labels),
        "episodes_skipped": len(result.skipped),
        "episodes_succeeded": sum(result.outcomes.values()),
        "episodes_failed": len(result.outcomes) - sum(result.outcomes.values()),
        "skipped": {str(episode): reason for episode, reason in sorted(result.skipped.items())},
        "frames": sum(lengths),
        "frames_labeled": labeled_frames,
        "keyframes_scored": sum(len(label.keyframes) for label in labels.values()),
        "model_calls": stats.model_calls,
        "cached_calls": stats.cached_calls,
        "calls_by_stage": dict(stats.by_stage),
        "prompt_tokens": stats.prompt_tokens,
        "image_tokens": stats.image_tokens,
        "image_tokens_measured": image_tokens_measured,
        # Per labelled frame: undefined (None) when nothing was labelled.
        "calls_per_labeled_frame": round(stats.model_calls / labeled_frames, 4) if labeled_frames else None,
        "progress_calls_per_labeled_frame": round(progress_calls / labeled_frames, 4) if labeled_frames else None,
        "progress_image_tokens_per_labeled_frame": round(progress_images / labeled_frames, 2) if labeled_frames else None,
        "progress_frames_shown": frames_shown,
        "naive_prefix_calls": naive_calls,
        "naive_prefix_frames_shown": naive_frames,
        "negatives_generated": len(result.negatives),
        "negatives_kept": sum(n.status != "dropped" for n in result.negatives),
        "failed_calls": stats.failed_calls,
        "retries": stats.retries,
        "missing_answers": sum(stats.missing.values()),
        "missing_by_reason": dict(stats.missing),
        **(extra or {}),
        "elapsed_s": round(elapsed, 2),
    }


def provenance(backend: dict, prompts: PromptLibrary, config: LabelingConfig, source: EpisodeSource,
               episodes: list[int], executor: dict, started: str, run_options: dict | None = None) -> dict:
    used = {stage: {"name": name, "sha256": prompts.get(name).sha256} for stage, name in (
        ("rewrite", rewrite.PROMPT), ("progress", progress.PROMPT), ("counterfactual", negatives.COUNTERFACTUAL_PROMPT),
        ("describe", negatives.DESCRIBE_PROMPT), ("validate", validate.PROMPT))}
    return {
        "backend": backend,
        "prompts": prompts.fingerprints(),
        "prompts_used": used,
        # Per stage; unreadable answers are asked again as text at the retry temperature, seed = attempt.
        "sampling": {"rewrite": asdict(rewrite.SAMPLING), "progress": asdict(progress.SAMPLING),
                     "describe": asdict(negatives.DESCRIBE_SAMPLING),
                     "counterfactual": asdict(negatives.counterfactual_sampling(config.negatives.counterfactuals)),
                     "validate": asdict(validate.SAMPLING), "retry_temperature": config.calls.retry_temperature},
        "config": config.as_dict(),
        "run_options": run_options or {},  # the command's other options; `config` holds the labeling settings
        "executor": executor,
        "dataset": {"repo_id": source.repo_id, "root": str(source.root), "episodes": episodes,
                    **({"revision": source.hub.revision, "commit": source.hub.commit} if source.hub else {})},
        "command": ["python", "-m", "labeling.run", *sys.argv[1:]],
        "started": started,
        "finished": datetime.now(UTC).isoformat(),
        "versions": {name: version(name) for name in ("lerobot", "transformers", "torch", "qwen-vl-utils")},
    }


def label_here(source: EpisodeSource, config: LabelingConfig, prompts: PromptLibrary, episodes: list[int],
               cache: CallCache, budget: MissingBudget, quiet: bool):
    """In this process: every stage over all episodes, a group of episodes at a time."""
    backend = make_backend(config.backend.name, config.backend.model,
                           **config.backend.options(config.views, config.progress))
    caller = ModelCaller(backend, cache, config.calls.max_retries, progress=not quiet,
                         retry_temperature=config.calls.retry_temperature, budget=budget)
    ctx = LabelingContext(source, caller, prompts, config.views, episodes, config.episodes_per_group,
                          skip_bad_episodes=config.on_bad_episode == "skip")
    task_rewrites = rewrites(ctx, config)
    instructions = {e: task_rewrites[source.episode(e).task].instruction for e in episodes}
    result = label_episodes(ctx, config, instructions,
                            after_progress=lambda labels: budget.check(final=True))
    return result, task_rewrites, caller.stats, backend.describe(), backend.image_tokens_measured, {"executor": "local"}


def label_on_ray(args: RunOptions, source: EpisodeSource, config: LabelingConfig, episodes: list[int],
                 cache: CallCache, budget: MissingBudget):
    """On Ray replicas, each opening the dataset itself (a hub dataset at the driver's commit)."""
    from labeling.ray_executor import run_on_ray

    revision = source.hub.commit if source.hub else None
    run = run_on_ray(args.dataset, revision, config, args.prompts_dir, episodes, cache, args.ray, budget,
                     progress=not args.quiet)
    executor = {"executor": "ray", **asdict(args.ray), "episodes_by_replica": run.episodes_by_replica}
    return run.labeled, run.rewrites, run.stats, run.backend, run.image_tokens_measured, executor


def main(argv: list[str] | None = None) -> int:
    started_clock, started = time.perf_counter(), datetime.now(UTC).isoformat()
    args = parse_options(RunOptions, argv, prog="python -m labeling.run")
    source = EpisodeSource.open(args.dataset, args.revision)
    episodes = args.episodes or source.episode_indices
    for episode in episodes:
        source.episode(episode)  # raises a one-line error for an unknown episode
    config = replace(with_dataset_views(args.labeling, source), stages=run_stages(args))
    prompts = PromptLibrary(args.prompts_dir)
    if args.dry_run:
        print(dry_run(LabelingContext(source, None, prompts, config.views, episodes), config))
        return 0
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already exists (pass --overwrite to replace it)")

    cache_path = (args.cache_dir or args.out.with_name(args.out.name + ".cache")) / "calls.sqlite"
    cache = CallCache(cache_path)
    budget = MissingBudget(config.calls.max_missing, cache_path, config.calls.missing_sample)
    if args.executor == "ray":
        result, task_rewrites, stats, backend, measured, executor = label_on_ray(args, source, config, episodes, cache,
                                                                                  budget)
    else:
        result, task_rewrites, stats, backend, measured, executor = label_here(
            source, config, prompts, episodes, cache, budget, args.quiet)
    check_not_all_skipped(result, episodes)
    corrections = correct_labels(result, config, source.repo_id, cache_path.parent, args.corrections)

    summary = summarize(stats, measured, result, time.perf_counter() - started_clock,
                        {"episodes_by_replica": executor["episodes_by_replica"]} if args.executor == "ray" else None)
    record = provenance(backend, prompts, config, source, episodes, executor, started,
                        {k: v for k, v in as_record(args).items() if k != "labeling"})
    if corrections:
        record["corrections"] = correction_record(corrections)
    write_outputs(args.out, source, result, task_rewrites, record, summary, overwrite=args.overwrite, stats=stats)
    cache.close()
    write_report(args.out, cache_path.parent)
    summary = read_summary(args.out)  # as written, with the phases' seconds
    width = max(map(len, summary))
    print("\n".join(f"{key:<{width}}  {value}" for key, value in summary.items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

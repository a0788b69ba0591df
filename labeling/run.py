"""Label a LeRobot dataset with per-frame 1-5 progress scores and synthetic failures.

    python -m labeling.run --dataset <repo_id | dir> --out <dir> [--backend transformers|openai|vllm]
        [--model Qwen/Qwen2.5-VL-7B-Instruct] [--base-url URL ...] [--episodes 0,3,5-9] [--cameras ...]
        [--stages rewrite,progress,negatives,validate] [--executor ray --replicas N] [--dry-run]

Writes a new LeRobot dataset with `next.reward` (the source is never modified), a sidecar
of every label, negative and verdict under `<out>/labels/`, rewACT keypoints, LeRobot's RA-BC
progress parquet and `<out>/labeling_summary.json`. Answers are cached in `<out>.cache/`: a
killed run resumes where it stopped, and re-running a finished one calls nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from common.cli import ConfigError, DatasetError, parse_episodes, run_cli
from common.dataset import EpisodeSource
from labeling import negatives, progress, rewrite, validate
from labeling.backends import BACKENDS, SamplingParams, make_backend
from labeling.calls import CallCache, CallsConfig, CallStats, Job, ModelCaller
from labeling.clips import LAYOUTS, ClipSpec, context_indices
from labeling.config import (BAD_EPISODE_POLICIES, STAGES, BackendConfig, LabelingConfig, NegativesConfig,
                             OutcomeConfig, RewriteConfig, ValidationConfig, parse_stages)
from labeling.context import LabelingContext
from labeling.model_stages import MODEL_STAGES_FILE, declared_stages
from labeling.output import write_outputs
from labeling.pipeline import LabeledEpisodes, check_missing, check_not_all_skipped, label_episodes, rewrites
from labeling.progress import FILLS, ProgressConfig, initial_keyframes, naive_prefix_cost
from labeling.prompts import DEFAULT_PROMPTS_DIR, PromptLibrary
from labeling.records import EpisodeLabels

EXECUTORS = ("local", "ray")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m labeling.run", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--dataset", required=True, help="hub repo id or local LeRobot dataset directory")
    add("--out", type=Path, required=True, help="output dataset directory (must not exist unless --overwrite)")
    add("--backend", choices=BACKENDS, default=BackendConfig.name)
    add("--model", default=BackendConfig.model, help="hub id or local checkpoint (transformers/vllm); served name (openai)")
    add("--base-url", nargs="+", default=list(BackendConfig().base_urls),
        help="OpenAI-compatible server(s) (--backend openai); Ray replicas are spread over several")
    add("--device", default=BackendConfig.device, help="transformers: auto, cpu, cuda, cuda:1")
    add("--dtype", default=BackendConfig.dtype, help="transformers, vllm: auto, float32, bfloat16, float16")
    add("--batch-size", type=int, default=BackendConfig.batch_size, help="transformers: requests per forward pass")
    add("--concurrency", type=int, default=BackendConfig.concurrency, help="openai: requests in flight")
    add("--episodes", help="e.g. 0,3,5-9 (default: all)")
    add("--cameras", nargs="*", help="camera keys or short names in the prompt (default: all)")
    add("--camera-layout", choices=LAYOUTS, default=ClipSpec.layout, help="views side by side, or one image per view")
    add("--image-size", type=int, default=ClipSpec.image_size, help="at most this many pixels on the longer side of each view (never upscaled)")
    add("--stages", help=f"comma-separated subset of {','.join(STAGES)} (default: every stage, or those the "
                         f"model declares in {MODEL_STAGES_FILE} beside its weights)")
    add("--paraphrases", type=int, default=RewriteConfig.paraphrases)
    add("--initial-keyframes", type=int, default=ProgressConfig.initial_keyframes)
    add("--max-keyframes", type=int, default=ProgressConfig.max_keyframes, help="model calls per episode, at most")
    add("--context-frames", type=int, default=ProgressConfig.context_frames, help="frames shown per call")
    add("--jump-threshold", type=float, default=ProgressConfig.jump_threshold)
    add("--fill", choices=FILLS, default=ProgressConfig.fill,
        help="unimodal: never decreasing unless the keyframes fall --min-drop levels after their peak; "
             "isotonic: never decreasing; linear: keyframes joined as scored")
    add("--min-drop", type=float, default=ProgressConfig.min_drop, help="unimodal fill: levels lost to keep a regression")
    add("--counterfactuals", type=int, default=NegativesConfig.counterfactuals, help="alternative instructions per episode")
    add("--validate-fraction", type=float, default=ValidationConfig.fraction,
        help="share of keyframes re-checked by validation")
    add("--min-readable-keyframes", type=int, default=ProgressConfig.min_readable_keyframes,
        help="an episode with fewer readable keyframe answers is left unlabeled, with the reason")
    add("--success-min-final-expected", type=float, default=OutcomeConfig.success_min_final_expected,
        help="an episode succeeds when its last frame's expected score reaches this (1-5); failures are "
             "not imitated by RewACT and give no negatives")
    add("--max-retries", type=int, default=CallsConfig.max_retries, help="re-asks for an unreadable answer")
    add("--max-missing", type=float, default=CallsConfig.max_missing,
        help="fail (exit 1, nothing written) when more than this share of progress answers is unreadable")
    add("--on-bad-episode", choices=BAD_EPISODE_POLICIES, default=LabelingConfig.on_bad_episode,
        help="an episode whose frames cannot be read: end the run, or leave it unlabeled and record why")
    add("--episodes-per-group", type=int, default=LabelingContext.episodes_per_group,
        help="episodes decoded and batched together")
    add("--executor", choices=EXECUTORS, default="local", help="local: this process; ray: replicas on a Ray cluster")
    add("--ray-address", help="Ray cluster to join ('auto' after `ray start`; default: start a local one)")
    add("--replicas", type=int, default=1, help="ray: backends labeling episodes in parallel")
    add("--gpus-per-replica", type=float, default=0.0, help="ray: GPUs each replica reserves")
    add("--cpus-per-replica", type=float, default=1.0, help="ray: CPUs each replica reserves")
    add("--prompts-dir", type=Path, default=DEFAULT_PROMPTS_DIR)
    add("--cache-dir", type=Path, help="resume cache (default: <out>.cache)")
    add("--overwrite", action="store_true")
    add("--dry-run", action="store_true", help="print the prompts that would be sent; call nothing")
    add("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace, source: EpisodeSource) -> LabelingConfig:
    """The run's whole configuration from the command line, checked against the dataset."""
    if len(args.base_url) > 1 and args.executor != "ray":
        raise ConfigError("several --base-url are spread over Ray replicas: add --executor ray --replicas N")
    views = ClipSpec(cameras=source.check_cameras(args.cameras), layout=args.camera_layout, image_size=args.image_size)
    if not views.cameras:
        raise DatasetError(f"{source.root} has no camera features to show the model")
    return LabelingConfig(
        backend=BackendConfig(name=args.backend, model=args.model, base_urls=tuple(args.base_url), device=args.device,
                              dtype=args.dtype, batch_size=args.batch_size, concurrency=args.concurrency),
        views=views,
        progress=ProgressConfig(initial_keyframes=args.initial_keyframes, max_keyframes=args.max_keyframes,
                                context_frames=args.context_frames, jump_threshold=args.jump_threshold,
                                fill=args.fill, min_drop=args.min_drop,
                                min_readable_keyframes=args.min_readable_keyframes),
        rewrite=RewriteConfig(paraphrases=args.paraphrases),
        negatives=NegativesConfig(counterfactuals=args.counterfactuals),
        validation=ValidationConfig(fraction=args.validate_fraction),
        outcome=OutcomeConfig(success_min_final_expected=args.success_min_final_expected),
        calls=CallsConfig(max_retries=args.max_retries, max_missing=args.max_missing),
        stages=run_stages(args),
        episodes_per_group=args.episodes_per_group,
        on_bad_episode=args.on_bad_episode,
    )


def run_stages(args: argparse.Namespace) -> tuple[str, ...]:
    """--stages as given; else the stages a local model declares (saying so), else all of them."""
    if args.stages is not None:
        return parse_stages(args.stages)
    declared = declared_stages(args.model) if args.backend != "openai" else None
    if declared is None:
        return STAGES
    print(f"{args.model} declares in {MODEL_STAGES_FILE} that it answers only: {', '.join(declared)}; "
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
    frames = initial_keyframes(info.length, config.progress.initial_keyframes)
    for job in progress.progress_jobs(ctx, labels, frames, config.progress, clip=None):
        lines.append(render_request("progress", progress.PROMPT, job, progress.SAMPLING, per_frame))
    lines.append(f"\n(refinement keyframes depend on the answers; at most {config.progress.max_keyframes} calls per episode)")
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
               episodes: list[int], executor: dict, started: str) -> dict:
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
        "executor": executor,
        "dataset": {"repo_id": source.repo_id, "root": str(source.root), "episodes": episodes},
        "command": ["python", "-m", "labeling.run", *sys.argv[1:]],
        "started": started,
        "finished": datetime.now(UTC).isoformat(),
        "versions": {name: version(name) for name in ("lerobot", "transformers", "torch", "qwen-vl-utils")},
    }


def label_here(source: EpisodeSource, config: LabelingConfig, prompts: PromptLibrary, episodes: list[int],
               cache: CallCache, cache_path: Path, quiet: bool):
    """In this process: every stage over all episodes, a group of episodes at a time."""
    backend = make_backend(config.backend.name, config.backend.model,
                           **config.backend.options(config.views, config.progress))
    caller = ModelCaller(backend, cache, config.calls.max_retries, progress=not quiet,
                         retry_temperature=config.calls.retry_temperature)
    ctx = LabelingContext(source, caller, prompts, config.views, episodes, config.episodes_per_group,
                          skip_bad_episodes=config.on_bad_episode == "skip")
    task_rewrites = rewrites(ctx, config)
    instructions = {e: task_rewrites[source.episode(e).task].instruction for e in episodes}
    result = label_episodes(ctx, config, instructions,
                            after_progress=lambda labels: check_missing(labels, config.calls.max_missing, cache_path))
    return result, task_rewrites, caller.stats, backend.describe(), backend.image_tokens_measured, {"executor": "local"}


def label_on_ray(args: argparse.Namespace, config: LabelingConfig, episodes: list[int], cache: CallCache):
    from labeling.ray_executor import RayOptions, run_on_ray

    options = RayOptions(address=args.ray_address, replicas=args.replicas, gpus_per_replica=args.gpus_per_replica,
                         cpus_per_replica=args.cpus_per_replica)
    run = run_on_ray(args.dataset, config, args.prompts_dir, episodes, cache, options, progress=not args.quiet)
    executor = {"executor": "ray", **asdict(options), "episodes_by_replica": run.episodes_by_replica}
    return run.labeled, run.rewrites, run.stats, run.backend, run.image_tokens_measured, executor


def main(argv: list[str] | None = None) -> int:
    started_clock, started = time.perf_counter(), datetime.now(UTC).isoformat()
    args = parse_args(argv)
    source = EpisodeSource.open(args.dataset)
    episodes = parse_episodes(args.episodes) or source.episode_indices
    for episode in episodes:
        source.episode(episode)  # raises a one-line error for an unknown episode
    config = build_config(args, source)
    prompts = PromptLibrary(args.prompts_dir)
    if args.dry_run:
        print(dry_run(LabelingContext(source, None, prompts, config.views, episodes), config))
        return 0
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already exists (pass --overwrite to replace it)")
    if args.replicas < 1:
        raise ConfigError(f"--replicas must be >= 1, got {args.replicas}")

    cache_path = (args.cache_dir or args.out.with_name(args.out.name + ".cache")) / "calls.sqlite"
    cache = CallCache(cache_path)
    if args.executor == "ray":
        result, task_rewrites, stats, backend, measured, executor = label_on_ray(args, config, episodes, cache)
        check_missing(result.labels, config.calls.max_missing, cache_path)
    else:
        result, task_rewrites, stats, backend, measured, executor = label_here(
            source, config, prompts, episodes, cache, cache_path, args.quiet)
    check_not_all_skipped(result, episodes)

    summary = summarize(stats, measured, result, time.perf_counter() - started_clock,
                        {"episodes_by_replica": executor["episodes_by_replica"]} if args.executor == "ray" else None)
    write_outputs(args.out, source, result, task_rewrites,
                  provenance(backend, prompts, config, source, episodes, executor, started), summary,
                  overwrite=args.overwrite)
    cache.close()
    width = max(map(len, summary))
    print("\n".join(f"{key:<{width}}  {value}" for key, value in summary.items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

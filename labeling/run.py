"""Label a LeRobot dataset with per-frame 1-5 progress scores and synthetic failures.

    python -m labeling.run --dataset <repo_id | dir> --out <dir> [--backend transformers|openai|vllm]
        [--model Qwen/Qwen2.5-VL-7B-Instruct] [--base-url URL] [--episodes 0,3,5-9] [--cameras ...]
        [--stages rewrite,progress,negatives,validate] [--dry-run]

Writes a new LeRobot dataset with `next.reward` (the source is never modified), a sidecar
of every label, negative and verdict under `<out>/labels/`, rewACT keypoints and
`<out>/labeling_summary.json`. Answers are cached in `<out>.cache/`: a killed run resumes
where it stopped, and re-running a finished one calls nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from labeling.backends import BACKENDS, make_backend
from labeling.calls import CallCache, ModelCaller
from labeling.cli import RunFailed, parse_episodes, run_cli
from labeling.clips import LAYOUTS, ClipSpec, context_indices
from labeling.context import LabelingContext
from labeling.dataset import DatasetError, EpisodeSource
from labeling.negatives import COUNTERFACTUAL_PROMPT, DESCRIBE_PROMPT, counterfactuals, temporal_clips
from labeling.output import write_outputs
from labeling.progress import FILLS, PROMPT as PROGRESS_PROMPT, ProgressConfig, initial_keyframes, naive_prefix_cost
from labeling.progress import progress_jobs, score_progress
from labeling.prompts import DEFAULT_PROMPTS_DIR, PromptLibrary
from labeling.records import EpisodeLabels
from labeling.rewrite import PROMPT as REWRITE_PROMPT, rewrite_tasks, unchanged_tasks
from labeling.validate import PROMPT as VALIDATE_PROMPT, mark_unverified, validate

STAGES = ("rewrite", "progress", "negatives", "validate")
DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m labeling.run", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--dataset", required=True, help="hub repo id or local LeRobot dataset directory")
    add("--out", type=Path, required=True, help="output dataset directory (must not exist unless --overwrite)")
    add("--backend", choices=BACKENDS, default="transformers")
    add("--model", default=DEFAULT_MODEL, help="hub id or local checkpoint (transformers/vllm); served name (openai)")
    add("--base-url", default="http://localhost:8000/v1", help="OpenAI-compatible server (--backend openai)")
    add("--device", default="auto", help="transformers: auto, cpu, cuda, cuda:1")
    add("--dtype", default="auto", help="transformers, vllm: auto, float32, bfloat16, float16")
    add("--batch-size", type=int, default=4, help="transformers: requests per forward pass")
    add("--concurrency", type=int, default=8, help="openai: requests in flight")
    add("--episodes", help="e.g. 0,3,5-9 (default: all)")
    add("--cameras", nargs="*", help="camera keys or short names in the prompt (default: all)")
    add("--camera-layout", choices=LAYOUTS, default=ClipSpec.layout, help="views side by side, or one image per view")
    add("--image-size", type=int, default=ClipSpec.image_size, help="at most this many pixels on the longer side of each view (never upscaled)")
    add("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    add("--paraphrases", type=int, default=2)
    add("--initial-keyframes", type=int, default=ProgressConfig.initial_keyframes)
    add("--max-keyframes", type=int, default=ProgressConfig.max_keyframes, help="model calls per episode, at most")
    add("--context-frames", type=int, default=ProgressConfig.context_frames, help="frames shown per call")
    add("--jump-threshold", type=float, default=ProgressConfig.jump_threshold)
    add("--fill", choices=FILLS, default=ProgressConfig.fill,
        help="unimodal: never decreasing unless the keyframes fall --min-drop levels after their peak; "
             "isotonic: never decreasing; linear: keyframes joined as scored")
    add("--min-drop", type=float, default=ProgressConfig.min_drop, help="unimodal fill: levels lost to keep a regression")
    add("--counterfactuals", type=int, default=3, help="alternative instructions per episode")
    add("--validate-fraction", type=float, default=0.2, help="share of keyframes re-checked by validation")
    add("--max-retries", type=int, default=2, help="re-asks for an unreadable answer")
    add("--max-missing", type=float, default=0.5,
        help="fail (exit 1, nothing written) when more than this share of progress answers is unreadable")
    add("--episodes-per-group", type=int, default=8, help="episodes decoded and batched together")
    add("--prompts-dir", type=Path, default=DEFAULT_PROMPTS_DIR)
    add("--cache-dir", type=Path, help="resume cache (default: <out>.cache)")
    add("--overwrite", action="store_true")
    add("--dry-run", action="store_true", help="print the prompts that would be sent; call nothing")
    add("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def selected_stages(spec: str) -> set[str]:
    stages = {s.strip() for s in spec.split(",") if s.strip()}
    unknown = stages - set(STAGES)
    if unknown:
        raise DatasetError(f"unknown stage(s) {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if "progress" not in stages:
        raise DatasetError("the progress stage produces the labels and cannot be left out")
    return stages


def backend_options(args: argparse.Namespace, clip: ClipSpec) -> dict:
    if args.backend == "transformers":
        return {"device": args.device, "dtype": args.dtype, "batch_size": args.batch_size}
    if args.backend == "openai":
        return {"base_url": args.base_url, "concurrency": args.concurrency}
    # vLLM refuses prompts with more images than it was started for: the most any stage sends.
    return {"dtype": args.dtype, "max_images": args.context_frames * clip.images_per_frame()}


def dry_run(ctx: LabelingContext, stages: set[str], config: ProgressConfig, args: argparse.Namespace) -> str:
    """The prompts of the first episode as they would be sent (images shown as placeholders)."""
    episode = ctx.episodes[0]
    info = ctx.source.episode(episode)
    lines = [f"# dry run: {len(ctx.episodes)} episode(s), stages {', '.join(s for s in STAGES if s in stages)}"]
    if "rewrite" in stages:
        prompt = ctx.prompts.get(REWRITE_PROMPT)
        lines += [f"\n## rewrite ({prompt.name}, one call per task)", prompt.render(task=info.task, paraphrases=args.paraphrases)]
    labels = EpisodeLabels(episode, info.length, info.task)
    frames = initial_keyframes(info.length, config.initial_keyframes)
    for job in progress_jobs(ctx, labels, frames, config, clip=None):
        count = len(job.about["context"]) * ctx.clip.images_per_frame()
        lines += [f"\n## progress, episode {episode}, frame {job.about['frame']} ({PROGRESS_PROMPT}): "
                  f"<{count} images: frames {list(job.about['context'])}>", job.request.prompt,
                  f"[assistant answer starts with: {job.request.answer_prefix!r}]"]
    lines.append(f"\n(refinement keyframes depend on the answers; at most {config.max_keyframes} calls per episode)")
    if "negatives" in stages:
        describe = ctx.prompts.get(DESCRIBE_PROMPT)
        frames = context_indices(info.length - 1, args.context_frames)
        lines += [f"\n## describe ({describe.name}): <{len(frames) * ctx.clip.images_per_frame()} images>",
                  describe.render(views=ctx.clip.views_text(), frames=len(frames) * ctx.clip.images_per_frame()),
                  f"\n## counterfactual ({COUNTERFACTUAL_PROMPT})",
                  ctx.prompts.get(COUNTERFACTUAL_PROMPT).render(
                      instruction=info.task, description="<the description answered above>",
                      count=args.counterfactuals, rubric=ctx.prompts.rubric)]
    if "validate" in stages:
        lines.append(f"\n## validate ({VALIDATE_PROMPT}): one call per negative and per sampled keyframe")
    return "\n".join(lines)


def check_missing(labels: dict[int, EpisodeLabels], max_missing: float, cache_path: Path) -> None:
    keyframes = [k for label in labels.values() for k in label.keyframes.values()]
    missing = [k.reason or "unknown" for k in keyframes if k.expected is None]
    if keyframes and len(missing) / len(keyframes) > max_missing:
        reason, count = Counter(missing).most_common(1)[0]
        raise RunFailed(
            f"{len(missing)} of {len(keyframes)} progress answers were unreadable (most often: {reason}, {count}x), "
            f"more than --max-missing {max_missing:g}; nothing was written. The raw answers are in {cache_path} "
            "(table calls); check the model and server (does it follow the prompt? return logprobs?)"
        )


def summarize(ctx: LabelingContext, labels: dict[int, EpisodeLabels], negatives, elapsed: float) -> dict:
    stats = ctx.caller.stats
    lengths = [label.length for label in labels.values()]
    labeled_frames = sum(label.length for label in labels.values() if label.labeled)
    naive_calls, naive_frames = naive_prefix_cost(lengths)
    progress_calls = stats.by_stage.get("progress", 0)
    progress_images = stats.image_tokens_by_stage.get("progress", 0)
    frames_shown = sum(len(k.context) for label in labels.values() for k in label.keyframes.values())
    return {
        "episodes": len(labels),
        "frames": sum(lengths),
        "frames_labeled": labeled_frames,
        "keyframes_scored": sum(len(label.keyframes) for label in labels.values()),
        "model_calls": stats.model_calls,
        "cached_calls": stats.cached_calls,
        "calls_by_stage": dict(stats.by_stage),
        "prompt_tokens": stats.prompt_tokens,
        "image_tokens": stats.image_tokens,
        "image_tokens_measured": ctx.caller.backend.image_tokens_measured,
        # Per labelled frame: undefined (None) when nothing was labelled.
        "progress_calls_per_labeled_frame": round(progress_calls / labeled_frames, 4) if labeled_frames else None,
        "progress_image_tokens_per_labeled_frame": round(progress_images / labeled_frames, 2) if labeled_frames else None,
        "progress_frames_shown": frames_shown,
        "naive_prefix_calls": naive_calls,
        "naive_prefix_frames_shown": naive_frames,
        "negatives_generated": len(negatives),
        "negatives_kept": sum(n.status != "dropped" for n in negatives),
        "failed_calls": stats.failed_calls,
        "retries": stats.retries,
        "missing_answers": sum(stats.missing.values()),
        "missing_by_reason": dict(stats.missing),
        "elapsed_s": round(elapsed, 2),
    }


def provenance(ctx: LabelingContext, args: argparse.Namespace, config: ProgressConfig, started: str) -> dict:
    used = {stage: {"name": name, "sha256": ctx.prompts.get(name).sha256} for stage, name in (
        ("rewrite", REWRITE_PROMPT), ("progress", PROGRESS_PROMPT), ("counterfactual", COUNTERFACTUAL_PROMPT),
        ("describe", DESCRIBE_PROMPT), ("validate", VALIDATE_PROMPT))}
    return {
        "backend": ctx.caller.backend.describe(),
        "prompts": ctx.prompts.fingerprints(),
        "prompts_used": used,
        "sampling": {"temperature": 0.0, "progress": "probabilities of '1'..'5' after 'ANSWER: ' where the backend "
                     "gives them, else greedy text", "retry_temperature": 0.7, "max_retries": args.max_retries},
        "progress_config": asdict(config),
        "clip": asdict(ctx.clip),
        "dataset": {"repo_id": ctx.source.repo_id, "root": str(ctx.source.root), "episodes": ctx.episodes},
        "command": ["python", "-m", "labeling.run", *sys.argv[1:]],
        "started": started,
        "finished": datetime.now(UTC).isoformat(),
        "versions": {name: version(name) for name in ("lerobot", "transformers", "torch", "qwen-vl-utils")},
    }


def main(argv: list[str] | None = None) -> int:
    started_clock, started = time.perf_counter(), datetime.now(UTC).isoformat()
    args = parse_args(argv)
    stages = selected_stages(args.stages)
    source = EpisodeSource.open(args.dataset)
    episodes = parse_episodes(args.episodes) or source.episode_indices
    for episode in episodes:
        source.episode(episode)  # raises a one-line error for an unknown episode
    clip = ClipSpec(cameras=source.check_cameras(args.cameras), layout=args.camera_layout, image_size=args.image_size)
    if not clip.cameras:
        raise DatasetError(f"{source.root} has no camera features to show the model")
    config = ProgressConfig(initial_keyframes=args.initial_keyframes, max_keyframes=args.max_keyframes,
                            context_frames=args.context_frames, jump_threshold=args.jump_threshold, fill=args.fill,
                            min_drop=args.min_drop)
    prompts = PromptLibrary(args.prompts_dir)
    if args.dry_run:
        ctx = LabelingContext(source, caller=None, prompts=prompts, clip=clip, episodes=episodes)
        print(dry_run(ctx, stages, config, args))
        return 0
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already exists (pass --overwrite to replace it)")

    backend = make_backend(args.backend, args.model, **backend_options(args, clip))
    cache_path = (args.cache_dir or args.out.with_name(args.out.name + ".cache")) / "calls.sqlite"
    cache = CallCache(cache_path)
    caller = ModelCaller(backend, cache, args.max_retries, progress=not args.quiet)
    ctx = LabelingContext(source, caller, prompts, clip, episodes, args.episodes_per_group)

    rewrites = rewrite_tasks(ctx, args.paraphrases) if "rewrite" in stages else unchanged_tasks(ctx)
    instructions = {e: rewrites[source.episode(e).task].instruction for e in episodes}
    labels = score_progress(ctx, instructions, config)
    check_missing(labels, args.max_missing, cache_path)
    negatives = []
    if "negatives" in stages:
        negatives = temporal_clips(labels) + counterfactuals(ctx, labels, args.counterfactuals, args.context_frames)
    verdicts = []
    if "validate" in stages:
        verdicts = validate(ctx, negatives, labels, args.validate_fraction, config)
    mark_unverified(negatives)

    summary = summarize(ctx, labels, negatives, time.perf_counter() - started_clock)
    write_outputs(args.out, source, labels, negatives, verdicts, rewrites,
                  provenance(ctx, args, config, started), summary, overwrite=args.overwrite)
    cache.close()
    width = max(map(len, summary))
    print("\n".join(f"{key:<{width}}  {value}" for key, value in summary.items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

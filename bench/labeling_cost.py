"""What labeling costs, per stage: the pipeline as `labeling.run` runs it vs naive prefix scoring.

    python bench/labeling_cost.py [--dataset data/demo_metaworld] [--model models/metaworld-reward-vlm]
        [--episodes N] [--naive-episodes 2]

Runs every stage of `labeling.run` (rewrite, progress, negatives, validate) on the dataset with
the model `make demo` uses (default), then the stages the model declares it answers
(`labeling_stages.json`), and prints per labelled frame the model calls of each stage, the
answers that could not be read, and image tokens. On the first `--naive-episodes` episodes it
also runs the naive scheme that asks about every prefix [0, t] with all its frames, against
the progress stage alone, and the share of wall time spent outside the model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.dataset import EpisodeSource  # noqa: E402
from labeling.backends import make_backend  # noqa: E402
from labeling.calls import CallCache, ModelCaller  # noqa: E402
from labeling.clips import ClipImages, ClipSpec  # noqa: E402
from labeling.config import STAGES, LabelingConfig  # noqa: E402
from labeling.context import LabelingContext  # noqa: E402
from labeling.model_stages import declared_stages  # noqa: E402
from labeling.pipeline import label_episodes, rewrites  # noqa: E402
from labeling.progress import SAMPLING, ProgressConfig, progress_jobs  # noqa: E402
from labeling.prompts import PromptLibrary  # noqa: E402
from labeling.records import EpisodeLabels  # noqa: E402

DEMO_MODEL = Path(__file__).resolve().parents[1] / "models" / "metaworld-reward-vlm"


class CountingCaller(ModelCaller):
    """A model caller that also counts, per stage, the answers that could not be read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unreadable = Counter()

    def run(self, stage, jobs, params, parse, show_progress=True):
        results = super().run(stage, jobs, params, parse, show_progress)
        self.unreadable[stage] += sum(result.value is None for result in results)
        return results


class TimedBackend:
    """Wraps a backend and adds up the wall time spent inside it."""

    def __init__(self, backend):
        self.backend, self.seconds = backend, 0.0

    def __getattr__(self, name):
        attribute = getattr(self.backend, name)
        if name != "generate":
            return attribute

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def context(source, backend, prompts, clip, episodes, cache_path, max_retries=2) -> LabelingContext:
    caller = CountingCaller(backend, CallCache(cache_path), max_retries, progress=False)
    return LabelingContext(source, caller, prompts, clip, episodes)


def naive_prefix(ctx: LabelingContext, episode: int, config: ProgressConfig) -> None:
    """Score every frame t from all frames 0..t (the O(T^2) baseline)."""
    info = ctx.source.episode(episode)
    labels = EpisodeLabels(episode, info.length, info.task)
    naive = ProgressConfig(context_frames=10**9)  # no subsampling: the whole prefix
    clip = ClipImages(ctx.source, ctx.clip, episode, set(range(info.length)))
    jobs = progress_jobs(ctx, labels, list(range(info.length)), naive, clip)
    ctx.caller.run("naive", jobs, SAMPLING, lambda text: (text or "", None))  # answers unused


def label(source, backend, prompts, clip, episodes, stages, cache_path):
    """The stages of `labeling.run` over `episodes`: (caller, labelled frames, wall s, s inside the model)."""
    config = LabelingConfig(views=clip, stages=stages)
    ctx = context(source, backend, prompts, clip, episodes, cache_path)
    backend.seconds, start = 0.0, time.perf_counter()
    task_rewrites = rewrites(ctx, config)
    result = label_episodes(ctx, config, {e: task_rewrites[source.episode(e).task].instruction for e in episodes})
    frames = sum(label.length for label in result.labels.values())
    return ctx.caller, frames, time.perf_counter() - start, backend.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="data/demo_metaworld")
    parser.add_argument("--model", default=str(DEMO_MODEL), help="checkpoint dir (default: the demo's reward VLM)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--episodes", type=int, help="the first N episodes only (default: all)")
    parser.add_argument("--naive-episodes", type=int, default=2)
    args = parser.parse_args()

    source = EpisodeSource.open(args.dataset)
    episodes = source.episode_indices[: args.episodes]
    clip = ClipSpec(cameras=source.camera_keys, layout="tile", image_size=args.image_size)
    prompts = PromptLibrary()
    backend = TimedBackend(make_backend("transformers", args.model, device="auto", batch_size=4))
    subset = source.episode_indices[: args.naive_episodes]
    declared = declared_stages(args.model)
    runs = {"all stages": (episodes, STAGES)}
    if declared and declared != STAGES:
        runs[f"declared ({','.join(declared)})"] = (episodes, declared)
    runs["progress, same episodes"] = (subset, ("progress",))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (episodes, stages) in runs.items():
            rows[name] = label(source, backend, prompts, clip, episodes, stages, Path(tmp) / f"{len(rows)}.sqlite")
        # One call per frame: the baseline's cost without re-asking what the model cannot answer.
        ctx = context(source, backend, prompts, clip, subset, Path(tmp) / "naive.sqlite", max_retries=0)
        backend.seconds, start = 0.0, time.perf_counter()
        for episode in subset:
            naive_prefix(ctx, episode, ProgressConfig())
        frames = sum(source.episode(e).length for e in subset)
        rows["naive prefix, same episodes"] = (ctx.caller, frames, time.perf_counter() - start, backend.seconds)

    print(f"dataset {args.dataset}, model {args.model}, {args.image_size}px views, {len(clip.cameras)} cameras tiled")
    print(f"{'':30} {'frames':>7} {'calls':>6} {'calls/frame':>12} {'unreadable':>11} {'img tok/frame':>14} "
          f"{'wall s':>8} {'outside model':>14}")
    for name, (caller, frames, wall, inside) in rows.items():
        stats = caller.stats
        print(f"{name:30} {frames:>7} {stats.model_calls:>6} {stats.model_calls / frames:>12.3f} "
              f"{sum(caller.unreadable.values()):>11} {stats.image_tokens / frames:>14.1f} {wall:>8.2f} "
              f"{(wall - inside) / wall:>13.1%}")
        if len(stats.by_stage) > 1:
            for stage, calls in stats.by_stage.items():
                print(f"  {stage:28} {'':>7} {calls:>6} {calls / frames:>12.3f} {caller.unreadable[stage]:>11}")
    scheme, naive = rows["progress, same episodes"][0].stats, rows["naive prefix, same episodes"][0].stats
    print(f"ratio naive/progress stage on the same episodes: calls {naive.model_calls / scheme.model_calls:.1f}x, "
          f"image tokens {naive.image_tokens / scheme.image_tokens:.1f}x")


if __name__ == "__main__":
    main()

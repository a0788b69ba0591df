"""What progress labeling costs: our keyframe scheme vs naive per-frame prefix scoring.

    python bench/labeling_cost.py [--dataset data/demo_metaworld] [--model <dir>] [--naive-episodes 2]

Runs the progress stage of `labeling.run` on the dataset (tiny random Qwen2.5-VL by default,
built on the fly) and, on the first `--naive-episodes` episodes, the naive scheme that asks
about every prefix [0, t] with all its frames. Prints, per labelled frame, model calls and
image tokens of both (measured on the same episodes, and the scheme on the whole dataset),
and the share of wall time spent outside the model (decoding, prompt building, batching, I/O).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labeling.backends import make_backend  # noqa: E402
from labeling.calls import CallCache, ModelCaller  # noqa: E402
from labeling.clips import ClipImages, ClipSpec  # noqa: E402
from labeling.context import LabelingContext  # noqa: E402
from common.dataset import EpisodeSource  # noqa: E402
from labeling.progress import SAMPLING, ProgressConfig, progress_jobs, score_progress  # noqa: E402
from labeling.prompts import PromptLibrary  # noqa: E402
from labeling.records import EpisodeLabels  # noqa: E402


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


def context(source, backend, prompts, clip, episodes, cache_path) -> LabelingContext:
    caller = ModelCaller(backend, CallCache(cache_path), progress=False)
    return LabelingContext(source, caller, prompts, clip, episodes)


def naive_prefix(ctx: LabelingContext, episode: int, config: ProgressConfig) -> None:
    """Score every frame t from all frames 0..t (the O(T^2) baseline)."""
    info = ctx.source.episode(episode)
    labels = EpisodeLabels(episode, info.length, info.task)
    naive = ProgressConfig(context_frames=10**9)  # no subsampling: the whole prefix
    clip = ClipImages(ctx.source, ctx.clip, episode, set(range(info.length)))
    jobs = progress_jobs(ctx, labels, list(range(info.length)), naive, clip)
    ctx.caller.run("naive", jobs, SAMPLING, lambda text: (None, "unused"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="data/demo_metaworld")
    parser.add_argument("--model", help="checkpoint dir (default: a tiny random Qwen2.5-VL built here)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--naive-episodes", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from training.reward_vlm.models import build_tiny_vlm

            model = str(build_tiny_vlm("qwen2_5_vl", Path(tmp) / "tiny"))
        source = EpisodeSource.open(args.dataset)
        clip = ClipSpec(cameras=source.camera_keys, layout="tile", image_size=args.image_size)
        prompts, config = PromptLibrary(), ProgressConfig()
        backend = TimedBackend(make_backend("transformers", model, device="auto", batch_size=4))
        subset = source.episode_indices[: args.naive_episodes]

        rows = {}
        for name, episodes in (("scheme, all episodes", source.episode_indices), ("scheme, same episodes", subset)):
            ctx = context(source, backend, prompts, clip, episodes, Path(tmp) / f"{len(rows)}.sqlite")
            backend.seconds, start = 0.0, time.perf_counter()
            labels = score_progress(ctx, {e: source.episode(e).task for e in episodes}, config)
            rows[name] = (ctx.caller.stats, sum(l.length for l in labels.values()), time.perf_counter() - start,
                          backend.seconds)
        ctx = context(source, backend, prompts, clip, subset, Path(tmp) / "naive.sqlite")
        backend.seconds, start = 0.0, time.perf_counter()
        for episode in subset:
            naive_prefix(ctx, episode, config)
        frames = sum(source.episode(e).length for e in subset)
        rows["naive prefix, same episodes"] = (ctx.caller.stats, frames, time.perf_counter() - start, backend.seconds)

    print(f"dataset {args.dataset}, model {args.model or 'tiny random Qwen2.5-VL'}, {args.image_size}px views, "
          f"{len(clip.cameras)} cameras tiled")
    print(f"{'':30} {'frames':>7} {'calls/frame':>12} {'img tok/frame':>14} {'wall s':>8} {'outside model':>14}")
    for name, (stats, frames, wall, inside) in rows.items():
        print(f"{name:30} {frames:>7} {stats.model_calls / frames:>12.3f} {stats.image_tokens / frames:>14.1f} "
              f"{wall:>8.2f} {(wall - inside) / wall:>13.1%}")
    scheme, naive = rows["scheme, same episodes"][0], rows["naive prefix, same episodes"][0]
    print(f"ratio naive/scheme on the same episodes: calls {naive.model_calls / scheme.model_calls:.1f}x, "
          f"image tokens {naive.image_tokens / scheme.image_tokens:.1f}x")


if __name__ == "__main__":
    main()

"""Rendering throughput of the benchmark generator, measured in one run.

    python bench/render_throughput.py [--size 96] [--tasks 5] [--episodes-per-task 20]

1. Render-only frames/s: Gymnasium's default MuJoCo renderer (what `env.render()` uses)
   vs. our `mujoco.Renderer` with shadows and reflections off, same camera and size.
2. End to end: generate a tasks x episodes dataset (rollout + 2 cameras + video encoding).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.benchmark import GenerateConfig, generate  # noqa: E402
from data.ground_truth import TASK_SPECS  # noqa: E402
from data.rollout import MetaWorldSim, RolloutConfig  # noqa: E402


def render_fps(size: int, frames: int) -> tuple[float, float]:
    from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

    sim = MetaWorldSim("pick-place-v3", RolloutConfig(cameras=("corner2",), image_size=size))
    sim.reset(0)
    default = MujocoRenderer(sim.env.model, sim.env.data, width=size, height=size, camera_name="corner2")
    default.render("rgb_array")  # warm-up: context creation
    start = time.perf_counter()
    for _ in range(frames):
        default.render("rgb_array")
    default_fps = frames / (time.perf_counter() - start)
    default.close()
    sim.render()
    start = time.perf_counter()
    for _ in range(frames):
        sim.render()
    fast_fps = frames / (time.perf_counter() - start)
    sim.close()
    return default_fps, fast_fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--episodes-per-task", type=int, default=20)
    args = parser.parse_args()

    default_fps, fast_fps = render_fps(args.size, args.frames)
    print(f"render only, {args.size}px corner2: default {default_fps:.1f} fps, ours {fast_fps:.1f} fps, "
          f"ratio {fast_fps / default_fps:.2f}x")

    tasks = tuple(list(TASK_SPECS)[: args.tasks])
    failures_per_kind = args.episodes_per_task // 8
    successes = args.episodes_per_task - 4 * failures_per_kind
    with tempfile.TemporaryDirectory() as tmp:
        config = GenerateConfig(out=Path(tmp) / "bench", tasks=tasks, successes=successes,
                                failures_per_kind=failures_per_kind,
                                rollout=RolloutConfig(image_size=args.size))
        start = time.perf_counter()
        out = generate(config)
        elapsed = time.perf_counter() - start
        from common.ground_truth import read_ground_truth

        frames, episodes = read_ground_truth(out)
    print(f"end to end: {len(episodes)} episodes ({len(tasks)} tasks), {len(frames)} frames x "
          f"{len(config.rollout.cameras)} cameras in {elapsed:.1f} s = {len(frames) / elapsed:.1f} frames/s")


if __name__ == "__main__":
    main()

"""Peak memory of turning temporal clips into episodes (`training.experiments.augment`), by episode count.

    python bench/augment_memory.py [--episodes 6] [--frames 60] [--height 240] [--width 320]

Builds an image-feature dataset of two cameras (smooth synthetic frames, so PNGs stay small),
cuts one temporal clip from every episode and augments it. Prints the resident memory before
augmenting and the process's peak after, in MiB: with episodes streamed one at a time the
difference stays at about one decoded episode however many episodes are clipped.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from common.dataset_writer import create_dataset
from training.experiments.augment import augmented_dataset

CAMERAS = ("observation.images.front", "observation.images.wrist")


def build(root: Path, episodes: int, frames: int, height: int, width: int) -> Path:
    features = {camera: {"dtype": "image", "shape": (height, width, 3), "names": ["height", "width", "channels"]}
                for camera in CAMERAS}
    features["observation.state"] = {"dtype": "float32", "shape": (2,), "names": ["x", "y"]}
    dataset = create_dataset(repo_id="local/bench", fps=10, features=features, root=root, use_videos=False)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    for episode in range(episodes):
        for t in range(frames):
            image = np.broadcast_to((ramp + 3 * t + 17 * episode) % 256, (height, width, 3)).astype(np.uint8)
            dataset.add_frame({**{camera: image for camera in CAMERAS}, "task": "bench",
                               "observation.state": np.array([t, episode], dtype=np.float32)})
        dataset.save_episode()
    dataset.finalize()
    return root


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        source = build(Path(work) / "source", args.episodes, args.frames, args.height, args.width)
        clips = pd.DataFrame({"episode": range(args.episodes), "end": args.frames // 2})
        rewards = pd.DataFrame({"episode_index": np.repeat(np.arange(args.episodes), args.frames),
                                "frame_index": np.tile(np.arange(args.frames), args.episodes),
                                "reward": np.tile(np.linspace(0, 1, args.frames), args.episodes)})
        before = rss_mib()
        augmented_dataset(source, clips, Path(work) / "augmented", rewards)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    episode = 2 * args.frames * args.height * args.width * 3 / 2**20
    print(f"one decoded episode: {episode:.0f} MiB ({args.episodes} episodes clipped)")
    print(f"resident before augmenting: {before:.0f} MiB, peak: {peak:.0f} MiB, growth: {peak - before:.0f} MiB")


if __name__ == "__main__":
    main()

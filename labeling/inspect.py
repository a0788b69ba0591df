"""Print what a LeRobot dataset holds, episode by episode.

    python -m labeling.inspect --dataset <repo_id | dir> [--revision REV] [--episodes 0,2-4] [--cameras topview]
"""

from __future__ import annotations

import argparse
import sys

from common.cli import parse_episodes, run_cli
from common.dataset import EpisodeSource


def summarize(source: EpisodeSource, episodes: list[int] | None, cameras: list[str] | None) -> str:
    cameras = source.check_cameras(cameras)
    indices = episodes if episodes is not None else source.episode_indices
    infos = [source.episode(i) for i in indices]
    lines = [
        f"dataset   {source.repo_id}  ({source.root})",
        f"episodes  {len(source.episode_indices)} total, {sum(i.length for i in infos)} frames in the "
        f"{len(infos)} shown, {source.fps} fps",
        f"cameras   {', '.join(cameras) or 'none'}",
        f"state     {source.state_shape}   action {source.action_shape}",
        "",
        f"{'episode':>7} {'frames':>6} {'seconds':>7}  task",
    ]
    lines += [f"{i.index:>7} {i.length:>6} {i.length / i.fps:>7.2f}  {' | '.join(i.tasks)}" for i in infos]
    if infos and cameras:
        first = source.frames(infos[0].index, [0], cameras=cameras)
        shapes = ", ".join(f"{k.split('.')[-1]} {v.shape[1]}x{v.shape[2]}" for k, v in first.items())
        lines += ["", f"decoded frame 0 of episode {infos[0].index}: {shapes}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labeling.inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="hub repo id or local dataset directory")
    parser.add_argument("--revision", help="hub dataset: branch, tag or commit (default: LeRobot's codebase version tag)")
    parser.add_argument("--episodes", help="e.g. 0,3,5-9 (default: all)")
    parser.add_argument("--cameras", nargs="*", help="camera keys or short names (default: all)")
    args = parser.parse_args(argv)
    source = EpisodeSource.open(args.dataset, args.revision)
    print(summarize(source, parse_episodes(args.episodes), args.cameras))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

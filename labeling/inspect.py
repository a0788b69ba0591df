"""Print what a LeRobot dataset holds, episode by episode.

    python -m labeling.inspect --dataset <repo_id | dir> [--revision REV] [--episodes 0,2-4] [--cameras topview]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from common.cli import parse_episodes, run_cli
from common.dataset import REVISION_HELP, EpisodeSource
from common.options import option, parse_options


@dataclass(frozen=True)
class InspectOptions:
    """Print what a LeRobot dataset holds, episode by episode."""

    dataset: str = option(help="hub repo id or local LeRobot dataset directory")
    revision: str | None = option(None, help=REVISION_HELP)
    episodes: list[int] | None = option(None, help="e.g. 0,3,5-9 (default: all)", parse=parse_episodes)
    cameras: tuple[str, ...] = option((), help="camera keys or short names (default: all)")


def summarize(source: EpisodeSource, episodes: list[int] | None, cameras: tuple[str, ...]) -> str:
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
    options = parse_options(InspectOptions, argv, prog="python -m labeling.inspect")
    source = EpisodeSource.open(options.dataset, options.revision)
    print(summarize(source, options.episodes, options.cameras))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

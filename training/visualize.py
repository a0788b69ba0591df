"""Watch a RewACT checkpoint's reward on one episode: an MP4 with the curve under the frames.

    python -m training.visualize --checkpoint outputs/train/x/checkpoints/last \
        --dataset data/demo_metaworld --episode 3 --out outputs/viz/ep3.mp4

Draws the prediction, the label the checkpoint was trained on (when it can be rebuilt for
this dataset) and the simulator ground truth (when the dataset has it). Writes `<out>.mp4`
and `<out>.png`; existing files are kept unless --overwrite.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.cli import run_cli
from common.dataset import REVISION_HELP, EpisodeSource
from common.ground_truth import GROUND_TRUTH_DIR, has_ground_truth, read_ground_truth
from common.options import option, parse_options
from common.reward_sources import LabelError
from rewact.labels import per_frame_labels
from training.evaluation.predict import load_policy, predict_rewards
from training.evaluation.reward_video import write_plot, write_video



@dataclass(frozen=True)
class VisualizeOptions:
    """Watch a RewACT checkpoint's reward on one episode: an MP4 with the curve under the frames."""

    checkpoint: str = option(help="a RewACT checkpoint directory as lerobot-train writes it (.../checkpoints/last)")
    dataset: str = option(help="hub repo id or local LeRobot dataset directory")
    episode: int = option(help="episode index")
    out: Path = option(help="MP4 path; the PNG is written beside it")
    revision: str | None = option(None, help=REVISION_HELP)
    cameras: tuple[str, ...] = option((), help="cameras to show (default: all)")
    overwrite: bool = option(False, help="replace existing files")


def reward_curves(checkpoint: str | Path, source: EpisodeSource, episode: int) -> dict[str, np.ndarray]:
    loaded = load_policy(checkpoint)
    prediction, _ = predict_rewards(loaded, source.root, [episode])[episode]
    curves = {"prediction": prediction}
    try:
        labels = per_frame_labels(loaded.policy.config, source.meta)
        curves["label"] = _episode_column(labels, episode, "reward")
    except (LabelError, KeyError):
        pass
    if has_ground_truth(source.root):
        curves["ground truth"] = _episode_column(read_ground_truth(source.root)[0], episode, "progress")
    return curves


def _episode_column(frame: pd.DataFrame, episode: int, column: str) -> np.ndarray:
    rows = frame[frame.episode_index == episode].sort_values("frame_index")
    if rows.empty:
        raise KeyError(episode)
    return rows[column].to_numpy(dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(VisualizeOptions, argv, prog="python -m training.visualize")
    video, plot = options.out.with_suffix(".mp4"), options.out.with_suffix(".png")
    existing = [str(p) for p in (video, plot) if p.exists()]
    if existing and not options.overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); pass --overwrite or choose another --out")
    source = EpisodeSource.open(options.dataset, options.revision)
    info = source.episode(options.episode)
    source.fetch([options.episode], folders=[GROUND_TRUTH_DIR])  # the policy reads it through LeRobotDataset
    curves = reward_curves(options.checkpoint, source, options.episode)
    video.parent.mkdir(parents=True, exist_ok=True)
    write_video(video, source.frames(options.episode, cameras=options.cameras), curves, info.fps)
    write_plot(plot, curves, info.fps, f"episode {options.episode}: {info.task}")
    print(f"wrote {video} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

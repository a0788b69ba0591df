"""Train RewACT on a dataset with a chosen reward label source, through stock `lerobot-train`.

    python -m training.train --dataset data/demo_metaworld --label-source interpolation \
        --out outputs/train/rewact_demo --steps 2000 [--device cuda] [-- --policy.chunk_size=50 ...]

Flags map onto LeRobot's own training script (printed before it starts), so checkpoints,
logging and resuming are LeRobot's. Labels are checked against the dataset first, so a bad
label source fails in one line instead of inside the training loop.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import DatasetError, parse_episodes, run_cli
from common.dataset import REVISION_HELP, EpisodeSource
from common.options import option, parse_options
from common.reward_sources import LabelError
from rewact.configuration_rewact import LABEL_SOURCES, RewACTConfig
from rewact.labels import build_reward_table


@dataclass(frozen=True)
class TrainOptions:
    """Train RewACT on a dataset with a chosen reward label source, through stock `lerobot-train`."""

    dataset: str = option(help="hub repo id or local LeRobot dataset directory")
    out: Path = option(help="training output directory (must not exist)")
    revision: str | None = option(None, help=REVISION_HELP)
    label_source: str = option("interpolation", help="where the reward labels come from", choices=LABEL_SOURCES)
    labels_path: str | None = option(None, help="keypoint JSON or labels parquet (label sources keypoints/labels)")
    steps: int = option(2000, help="training steps")
    batch_size: int = option(8, help="batch size")
    device: str = option("cpu", help="cpu, cuda, cuda:1, mps")
    episodes: list[int] | None = option(None, help="episodes to train on, e.g. 0,3,5-9 (default: all)",
                                        parse=parse_episodes)
    skip_unlabeled: bool = option(False, help="train even if some episodes lack labels")
    pretrained_backbone: bool = option(False, help="ImageNet ResNet18 (needs it cached)")
    save_freq: int = option(0, help="checkpoint every N steps (0: at the end)")
    log_freq: int = option(50, help="steps between log lines")
    num_workers: int = option(0, help="data loader workers")
    seed: int = option(1000, help="training seed")


def lerobot_train_args(options: TrainOptions, source: EpisodeSource, lerobot_args: list[str]) -> list[str]:
    argv = [
        f"--dataset.repo_id={source.repo_id}",
        f"--dataset.root={source.root}",
        "--policy.type=rewact",
        f"--policy.label_source={options.label_source}",
        f"--policy.device={options.device}",
        "--policy.push_to_hub=false",
        f"--policy.skip_unlabeled_episodes={str(options.skip_unlabeled).lower()}",
        f"--output_dir={options.out}",
        f"--steps={options.steps}",
        f"--batch_size={options.batch_size}",
        f"--save_freq={options.save_freq or options.steps}",
        f"--log_freq={options.log_freq}",
        f"--seed={options.seed}",
        f"--num_workers={options.num_workers}",
        "--env_eval_freq=0",
        "--wandb.enable=false",
    ]
    if options.labels_path:
        argv.append(f"--policy.labels_path={Path(options.labels_path).resolve()}")
    if not options.pretrained_backbone:
        argv.append("--policy.pretrained_backbone_weights=null")
    if options.episodes:
        argv.append(f"--dataset.episodes=[{','.join(map(str, options.episodes))}]")
    return argv + lerobot_args


def check_labels(options: TrainOptions, source: EpisodeSource) -> None:
    config = RewACTConfig(
        label_source=options.label_source, labels_path=options.labels_path, skip_unlabeled_episodes=options.skip_unlabeled
    )
    build_reward_table(config, source.meta)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    options = parse_options(TrainOptions, ours, prog="python -m training.train")
    if options.out.exists():
        raise FileExistsError(f"{options.out} already exists; choose a new --out (LeRobot resumes with --resume)")
    source = EpisodeSource.open(options.dataset, options.revision)
    source.fetch(options.episodes)  # lerobot-train reads the files from source.root
    try:
        check_labels(options, source)
    except LabelError as err:
        raise DatasetError(str(err)) from err

    import lerobot.scripts.lerobot_train as lerobot_train

    command = lerobot_train_args(options, source, extra)
    print("lerobot-train " + " ".join(command), flush=True)
    sys.argv = ["lerobot-train", *command]
    lerobot_train.main()
    print(f"checkpoint: {options.out / 'checkpoints' / 'last' / 'pretrained_model'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

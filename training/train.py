"""Train RewACT on a dataset with a chosen reward label source, through stock `lerobot-train`.

    python -m training.train --dataset data/demo_metaworld --label-source interpolation \
        --out outputs/train/rewact_demo --steps 2000 [--device cuda] [-- --policy.chunk_size=50 ...]

Flags map onto LeRobot's own training script (printed before it starts), so checkpoints,
logging and resuming are LeRobot's. Labels are checked against the dataset first, so a bad
label source fails in one line instead of inside the training loop.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import DatasetError, parse_episodes, run_cli
from common.dataset import EpisodeSource
from common.reward_sources import LabelError
from rewact.configuration_rewact import LABEL_SOURCES, RewACTConfig
from rewact.labels import build_reward_table


def lerobot_train_args(args: argparse.Namespace, source: EpisodeSource) -> list[str]:
    argv = [
        f"--dataset.repo_id={source.repo_id}",
        f"--dataset.root={source.root}",
        "--policy.type=rewact",
        f"--policy.label_source={args.label_source}",
        f"--policy.device={args.device}",
        "--policy.push_to_hub=false",
        f"--policy.skip_unlabeled_episodes={str(args.skip_unlabeled).lower()}",
        f"--output_dir={args.out}",
        f"--steps={args.steps}",
        f"--batch_size={args.batch_size}",
        f"--save_freq={args.save_freq or args.steps}",
        f"--log_freq={args.log_freq}",
        f"--seed={args.seed}",
        f"--num_workers={args.num_workers}",
        "--env_eval_freq=0",
        "--wandb.enable=false",
    ]
    if args.labels_path:
        argv.append(f"--policy.labels_path={Path(args.labels_path).resolve()}")
    if not args.pretrained_backbone:
        argv.append("--policy.pretrained_backbone_weights=null")
    if args.episodes:
        argv.append(f"--dataset.episodes=[{args.episodes}]")
    return argv + args.lerobot_args


def check_labels(args: argparse.Namespace, source: EpisodeSource) -> None:
    config = RewACTConfig(
        label_source=args.label_source, labels_path=args.labels_path, skip_unlabeled_episodes=args.skip_unlabeled
    )
    build_reward_table(config, source.meta)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="hub repo id or local dataset directory")
    parser.add_argument("--revision", help="hub dataset: branch, tag or commit (default: LeRobot's codebase version tag)")
    parser.add_argument("--label-source", choices=LABEL_SOURCES, default="interpolation")
    parser.add_argument("--labels-path", help="keypoint JSON or labels parquet (label sources keypoints/labels)")
    parser.add_argument("--out", type=Path, required=True, help="training output directory (must not exist)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    parser.add_argument("--episodes", help="comma-separated episode indices to train on (default: all)")
    parser.add_argument("--skip-unlabeled", action="store_true", help="train even if some episodes lack labels")
    parser.add_argument("--pretrained-backbone", action="store_true", help="ImageNet ResNet18 (needs it cached)")
    parser.add_argument("--save-freq", type=int, default=0, help="checkpoint every N steps (default: at the end)")
    parser.add_argument("--log-freq", type=int, default=50)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args(ours)
    args.lerobot_args = extra
    if args.out.exists():
        raise FileExistsError(f"{args.out} already exists; choose a new --out (LeRobot resumes with --resume)")
    source = EpisodeSource.open(args.dataset, args.revision)
    source.fetch(parse_episodes(args.episodes))  # lerobot-train reads the files from source.root
    try:
        check_labels(args, source)
    except LabelError as err:
        raise DatasetError(str(err)) from err

    import lerobot.scripts.lerobot_train as lerobot_train

    command = lerobot_train_args(args, source)
    print("lerobot-train " + " ".join(command), flush=True)
    sys.argv = ["lerobot-train", *command]
    lerobot_train.main()
    print(f"checkpoint: {args.out / 'checkpoints' / 'last' / 'pretrained_model'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Which reward source should supervise RewACT? One command, CPU, under an hour.

    python -m training.experiment --work outputs/experiment --results docs/results/metaworld \
        [--model Qwen/Qwen2.5-VL-7B-Instruct --device cuda] [--steps 1000] [--seed 0]

1. A MetaWorld benchmark: training episodes (expert successes) and held-out episodes
   (successes and every failure kind), from different seeds.
2. `labeling.run` on both (default model: a tiny random-weight Qwen2.5-VL, since no
   pretrained weights exist on these machines; pass --model to use a real one).
3. RewACT trained on the training successes with (a) linear interpolation, (b) the VLM
   labels, (c) the simulator ground truth (upper bound), (d) ground truth plus
   `labeling.run`'s temporal-clip negatives as extra, non-imitated failure episodes.
4. `training.compare` on the held-out episodes: raw interpolation, raw VLM labels and the
   four checkpoints, written to --results with the command that made them.
Finished steps are skipped when the command is run again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


from data.generate import GenerateConfig, generate
from rewact.ground_truth import read_ground_truth
from data.rollout import RolloutConfig
from labeling.cli import run_cli
from labeling.dataset import EpisodeSource
from training.augment import augmented_dataset, clip_episodes
from training.compare import compare

# RewACT sized for a 2-core CPU: the ResNet18 backbone stays, the transformer shrinks, and
# the learning rate rises from ACT's 1e-5 (at which the reward head barely moves in 1000 steps).
SMALL_REWACT = ["--policy.dim_model=128", "--policy.dim_feedforward=512", "--policy.n_encoder_layers=2",
                "--policy.chunk_size=20", "--policy.n_action_steps=20", "--policy.latent_dim=16",
                "--policy.optimizer_lr=3e-4", "--policy.optimizer_lr_backbone=1e-4"]


def step(name: str, done: Path, log: list, action) -> None:
    """Run `action` unless `done` exists; record how long it took."""
    start = time.perf_counter()
    if done.exists():
        print(f"[experiment] {name}: already done ({done})", flush=True)
    else:
        print(f"[experiment] {name} ...", flush=True)
        action()
    log.append({"step": name, "seconds": round(time.perf_counter() - start, 1)})


def train_afresh(out: Path, command: list[str], log_file: Path) -> None:
    """A training run; an unfinished one (killed before its last checkpoint) starts over."""
    shutil.rmtree(out, ignore_errors=True)
    run(command, log_file)


def run(command: list[str], log_file: Path) -> None:
    with log_file.open("w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed (exit {result.returncode}); see {log_file}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.experiment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("outputs/experiment"))
    parser.add_argument("--results", type=Path, default=Path("docs/results/metaworld"))
    parser.add_argument("--model", help="VLM for labeling.run (default: a tiny random Qwen2.5-VL built here)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", default="pick-place-v3,push-v3,reach-v3")
    parser.add_argument("--train-successes", type=int, default=8, help="per task")
    parser.add_argument("--heldout-successes", type=int, default=4, help="per task")
    parser.add_argument("--heldout-failures-per-kind", type=int, default=2, help="per task and failure kind")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    work, timings = args.work, []
    work.mkdir(parents=True, exist_ok=True)
    tasks = tuple(args.tasks.split(","))
    rollout = RolloutConfig(image_size=args.image_size)
    train, heldout = work / "train", work / "heldout"

    step("generate training successes", train, timings, lambda: generate(GenerateConfig(
        out=train, tasks=tasks, successes=args.train_successes, failures_per_kind=0, rollout=rollout,
        seed=args.seed, repo_id="local/train")))
    step("generate held-out episodes", heldout, timings, lambda: generate(GenerateConfig(
        out=heldout, tasks=tasks, successes=args.heldout_successes, failures_per_kind=args.heldout_failures_per_kind,
        rollout=rollout, seed=args.seed + 1, repo_id="local/heldout")))

    model = args.model or str(work / "tiny-qwen2_5_vl")
    if args.model is None:
        from data.tiny_vlm import build_tiny_vlm

        step("build the tiny VLM", Path(model) / "config.json", timings, lambda: build_tiny_vlm("qwen2_5_vl", model))
    for name, dataset in (("train", train), ("heldout", heldout)):
        labeled = work / f"{name}_labeled"
        step(f"labeling.run on {name}", labeled, timings, lambda dataset=dataset, labeled=labeled: run(
            [sys.executable, "-m", "labeling.run", "--dataset", str(dataset), "--out", str(labeled), "--model", model,
             "--device", args.device, "--image-size", str(args.image_size), "--quiet"], work / f"label_{name}.log"))

    augmented = work / "train_with_negatives"
    truth = read_ground_truth(train)[0].rename(columns={"progress": "reward"})
    clips = clip_episodes(work / "train_labeled")
    step("add temporal-clip negatives", augmented, timings,
         lambda: augmented_dataset(train, clips, augmented, truth))

    variants = {
        "(a) RewACT on interpolation": (train, ["--label-source", "interpolation"]),
        "(b) RewACT on VLM labels": (work / "train_labeled", ["--label-source", "dataset"]),
        "(c) RewACT on ground truth": (train, ["--label-source", "ground_truth"]),
        "(d) RewACT on ground truth + negatives": (augmented, ["--label-source", "labels", "--labels-path",
                                                               str(augmented / "labels.parquet")]),
    }
    sources = {"interpolation (raw)": "interpolation", "VLM labels (raw)": f"labels:{work / 'heldout_labeled'}"}
    for index, (name, (dataset, label_args)) in enumerate(variants.items()):
        out = work / f"rewact_{'abcd'[index]}"
        step(f"train {name}", out / "checkpoints" / "last", timings, lambda dataset=dataset, label_args=label_args,
             out=out: train_afresh(out, [sys.executable, "-m", "training.train", "--dataset", str(dataset), *label_args,
                           "--out", str(out), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                           "--device", args.device, "--seed", str(args.seed), "--log-freq", "100", "--",
                           *SMALL_REWACT], work / f"train_{'abcd'[index]}.log"))
        sources[name] = f"rewact:{out / 'checkpoints' / 'last'}"

    start = time.perf_counter()
    source = EpisodeSource.open(heldout)
    compare(source, sources, source.episode_indices, args.results, samples=1000, seed=args.seed)
    timings.append({"step": "compare on held-out", "seconds": round(time.perf_counter() - start, 1)})
    episodes = read_ground_truth(heldout)[1]
    record = {
        "command": "python -m training.experiment " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed, "arguments": {k: str(v) for k, v in vars(args).items()},
        "vlm": args.model or "tiny random-weight Qwen2.5-VL (no pretrained weights on this machine)",
        "train_episodes": len(EpisodeSource.open(train).episode_indices),
        "heldout_kinds": episodes.kind.value_counts().to_dict(),
        "temporal_clip_negatives": len(clips), "rewact_overrides": SMALL_REWACT, "timings": timings,
        "summaries": {name: json.loads((work / f"{name}_labeled" / "labeling_summary.json").read_text())
                      for name in ("train", "heldout")},
    }
    (args.results / "experiment.json").write_text(json.dumps(record, indent=2))
    print((args.results / "results.md").read_text())
    print(f"total {sum(t['seconds'] for t in timings) / 60:.1f} min; wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

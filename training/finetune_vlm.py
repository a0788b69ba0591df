"""Train a Qwen-VL reward model on the exact requests `labeling.run`'s progress stage sends.

    python -m training.finetune_vlm --dataset <dir | repo_id> --labels ground_truth --out <dir> --init small
    python -m training.finetune_vlm --dataset <dir> --labels labels:<labeling.run output> --out <dir> \
        --base Qwen/Qwen2.5-VL-3B-Instruct --lora --device cuda
    python -m training.finetune_vlm --dataset <dir A> <dir B> --labels ground_truth --out <dir> --init small

An example is one keyframe request of the progress stage (prompt files, rubric, context
frames, views and image size as `labeling.run` renders them) and its answer `ANSWER: k`;
the loss is cross-entropy on the answer tokens only (prompt and images masked), or with
`--soft-targets` a two-hot target over the five score tokens from a fractional label.

Two ways to train, one loop:
  --lora          peft LoRA on the language model's projections (vision frozen unless
                  --tune-vision); the saved model has the adapter merged, the adapter is kept
                  in <out>/adapter.
  full (default)  every parameter of the language model (and the vision tower with
                  --tune-vision); `--init small` builds a ~2 M-parameter Qwen2.5-VL from scratch
                  with a tokenizer trained on the prompts, which trains on a laptop CPU.

The output loads with `from_pretrained` (`labeling.run --model <out>`, vLLM) and holds
`training_summary.json`, `loss.png`, a model card and `labeling_stages.json` (it answers the
progress stage only, so `labeling.run` runs only that with it by default). A killed run resumes from
`<out>.partial/` when started again with the same arguments.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from common.cli import ConfigError, DatasetError, parse_episodes, run_cli
from common.dataset import REVISION_HELP, EpisodeSource
from common.options import as_record, command_line, option, parse_options
from common.staging import publish, staging_dir
from labeling import (DEFAULT_PROMPTS_DIR, LAYOUTS, ClipSpec, ProgressConfig, PromptLibrary, processor_options,
                      write_declared_stages)
from training.reward_vlm.finetune import (DEFAULT_LR, MODEL_CARD, STATE_FILE, AnswerLoss, FinetuneConfig,
                                          RequestBuilder, build_examples, evaluate, load_model, plot_loss,
                                          prepare_trainable, save_model, small_model_corpus, train)


PROG = "python -m training.finetune_vlm"


@dataclass(frozen=True)
class FinetuneOptions:
    """Train a Qwen-VL reward model on the exact requests `labeling.run`'s progress stage sends."""

    dataset: tuple[str, ...] = option(help="hub repo ids or local LeRobot dataset directories: one model is "
                                           "trained on all of them (their frame rates may differ)")
    labels: tuple[str, ...] = option(help="a reward source for every dataset, or one per dataset: ground_truth | "
                                          "labels:<labeling.run output or parquet> | keypoints:PATH | dataset",
                                     metavar="SOURCE")
    out: Path = option(help="output model directory (must not exist unless --overwrite)")
    revision: str | None = option(None, help=REVISION_HELP)
    base: str | None = option(None, help="checkpoint directory or hub id to fine-tune, e.g. Qwen/Qwen2.5-VL-3B-Instruct")
    init: Literal["small"] | None = option(None, help="build a small Qwen2.5-VL from scratch (full training)")
    training: FinetuneConfig = field(default_factory=FinetuneConfig)
    episodes: list[int] | None = option(None, help="episodes to train on, e.g. 0-39 (default: all)",
                                        parse=parse_episodes)
    negatives: bool = option(True, help="train on a labeling.run output's negatives too")
    balance_datasets: bool = option(False, help="share --examples equally among the datasets (default: in "
                                                "proportion to their episodes)")
    checkpoint_every: int = option(200, help="steps between resumable checkpoints")
    eval_dataset: str | None = option(None, help="held-out dataset scored at the end")
    eval_labels: str = option("ground_truth", help="reward source of --eval-dataset")
    eval_examples: int = option(256, help="held-out keyframe examples")
    device: str = option("auto", help="auto, cpu, cuda, cuda:1")
    dtype: str = option("auto", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16")
    save_dtype: Literal["float32", "bfloat16"] = option("float32", help="dtype of the saved weights")
    gradient_checkpointing: bool = option(False, help="trade compute for memory")
    # How the requests are rendered: the same options as labeling.run, with its defaults.
    cameras: tuple[str, ...] = option((), help="camera keys or short names (default: all)")
    camera_layout: str = option(ClipSpec.layout, help="views side by side, or one image per view", choices=LAYOUTS)
    image_size: int = option(ClipSpec.image_size, help="at most this many pixels on a view's longer side")
    context_frames: int = option(ProgressConfig.context_frames, help="frames shown per request")
    prompts_dir: Path = option(DEFAULT_PROMPTS_DIR, help="the prompt files")
    overwrite: bool = option(False, help="replace --out")
    quiet: bool = option(False, help="no progress bars")

    def __post_init__(self):
        if (self.base is None) == (self.init is None):
            raise ConfigError("give one of --base (a model to fine-tune) or --init small (a model from scratch)")
        if self.init and self.training.lora:
            raise ConfigError("--lora needs a pretrained --base; --init small trains every parameter")
        if len(self.labels) not in (1, len(self.dataset)):
            raise ConfigError(f"give one --labels for every dataset or one per dataset, not {len(self.labels)} "
                              f"for {len(self.dataset)}")
        if repeated := sorted({d for d in self.dataset if self.dataset.count(d) > 1}):
            raise ConfigError(f"--dataset {', '.join(repeated)} given more than once")
        if self.episodes and len(self.dataset) > 1:
            raise ConfigError("--episodes selects episodes of one dataset; with several, give each its own "
                              "dataset directory")


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_options(FinetuneOptions, argv, prog=PROG)
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already exists (pass --overwrite to replace it)")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = getattr(torch, "bfloat16" if args.dtype == "auto" and device.startswith("cuda") else
                    "float32" if args.dtype == "auto" else args.dtype)
    config = replace(args.training, base=args.base or args.init)
    config = replace(config, lr=config.lr or DEFAULT_LR[config.mode])

    sources = [EpisodeSource.open(dataset, args.revision) for dataset in args.dataset]
    labels = args.labels * len(sources) if len(args.labels) == 1 else args.labels
    episodes = [args.episodes or source.episode_indices for source in sources]
    for source, indices in zip(sources, episodes, strict=True):
        for episode in indices:
            source.episode(episode)
    prompts = PromptLibrary(args.prompts_dir)
    clip = ClipSpec(cameras=sources[0].check_cameras(args.cameras), layout=args.camera_layout,
                    image_size=args.image_size)
    eval_source = EpisodeSource.open(args.eval_dataset) if args.eval_dataset else None
    check_cameras_everywhere(clip, {**dict(zip(args.dataset, sources, strict=True)),
                                    **({args.eval_dataset: eval_source} if eval_source else {})})
    progress_config = ProgressConfig(context_frames=args.context_frames)
    counts = shares(config.examples, [1 if args.balance_datasets else len(e) for e in episodes])
    examples = [example
                for index, (source, spec, indices, count) in enumerate(zip(sources, labels, episodes, counts,
                                                                           strict=True))
                for example in build_examples(source, spec, count, config.seed + index, args.negatives, indices,
                                              dataset=index)]
    eval_examples = (build_examples(eval_source, args.eval_labels, args.eval_examples, config.seed + 1, False)
                     if eval_source else [])

    work = staging_dir(args.out, resume=True)
    work.mkdir(parents=True, exist_ok=True)
    model, processor = load_model(config, work / "init", small_model_corpus(prompts, sources, clip), dtype)
    torch.manual_seed(config.seed)  # LoRA's initial weights: the same run after run
    model = prepare_trainable(model, config)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model.to(device)
    base_config = model.config
    loss_fn = AnswerLoss(processor, base_config.vision_config.patch_size, processor_options(base_config),
                         config.soft_targets)
    builder = RequestBuilder(sources, clip, progress_config, prompts, examples)
    print(f"{len(examples)} examples from {sum(map(len, episodes))} episodes "
          f"(scores {np.bincount([e.score for e in examples], minlength=6)[1:].tolist()}), "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters", flush=True)
    state = train(model, loss_fn, builder, examples, config, device, work / STATE_FILE, args.checkpoint_every,
                  progress=not args.quiet)

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    parameters = sum(p.numel() for p in model.parameters())
    staging = work / "model"
    shutil.rmtree(staging, ignore_errors=True)
    save_model(model, processor, config, staging, args.save_dtype)
    held_out = evaluate(staging, RequestBuilder([eval_source], clip, progress_config, prompts, eval_examples),
                        eval_examples, device) if eval_examples else None
    command = command_line(PROG, argv)
    summary = {
        "base": config.base, "mode": config.mode, "config": asdict(config), "trainable_parameters": trainable,
        "parameters": parameters, "steps": state.step, "train_wall_s": round(state.elapsed_s, 1),
        "total_wall_s": round(time.perf_counter() - started, 1), "dataset": list(args.dataset),
        "labels": list(labels), "episodes": sum(map(len, episodes)), "examples": len(examples),
        "examples_by_origin": {o: sum(e.origin == o for e in examples) for o in sorted({e.origin for e in examples})},
        "examples_by_dataset": {name: sum(e.dataset == i for e in examples) for i, name in enumerate(args.dataset)},
        "clip": asdict(clip), "context_frames": args.context_frames, "device": device,
        "loss_curve": state.losses, "held_out": held_out, "eval_dataset": args.eval_dataset, "command": command,
        "options": as_record(args),
    }
    (staging / "training_summary.json").write_text(json.dumps(summary, indent=2))
    plot_loss(staging / "loss.png", state.losses)
    write_declared_stages(staging, ("progress",))  # the only answer it was trained to give
    (staging / "README.md").write_text(MODEL_CARD.format(
        mode=config.mode, base=config.base, dataset=", ".join(args.dataset), episodes=sum(map(len, episodes)),
        examples=len(examples), labels=", ".join(dict.fromkeys(labels)),
        tasks="; ".join(sorted({source.episode(e).task
                                for source, indices in zip(sources, episodes, strict=True) for e in indices})),
        trainable=trainable, parameters=parameters, steps=state.step,
        minutes=state.elapsed_s / 60, command=command))
    publish(staging, args.out)
    shutil.rmtree(work)
    if held_out:
        print(f"held-out keyframes: MAE {held_out['mae_expected']:.3f}, exact {held_out['exact']:.3f}, "
              f"within-one {held_out['within_one']:.3f} ({held_out['examples']} examples)")
    print(f"wrote {args.out}")
    return 0


def check_cameras_everywhere(clip: ClipSpec, sources: dict[str, EpisodeSource]) -> None:
    """Refuse now, not after training, a dataset that lacks a camera the model trains on."""
    for name, source in sources.items():
        if unseen := sorted(set(clip.cameras) - set(source.camera_keys)):
            raise DatasetError(f"{name} lacks the cameras the model trains on ({', '.join(unseen)}); give one "
                               "recorded with them, or --cameras that every dataset has")


def shares(total: int, sizes: list[int]) -> list[int]:
    """`total` split over datasets in proportion to `sizes` (largest remainders first)."""
    exact = np.array(sizes, dtype=float) * total / max(sum(sizes), 1)
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact)[:total - counts.sum()]] += 1
    return counts.tolist()


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Train a Qwen-VL reward model on the exact requests `labeling.run`'s progress stage sends.

    python -m training.finetune_vlm --dataset <dir | repo_id> --labels ground_truth --out <dir> --init small
    python -m training.finetune_vlm --dataset <dir> --labels labels:<labeling.run output> --out <dir> \
        --base Qwen/Qwen2.5-VL-3B-Instruct --lora --device cuda

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

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.cli import DatasetError, parse_episodes, run_cli
from common.dataset import EpisodeSource
from labeling import (ANSWER_PREFIX, DEFAULT_PROMPTS_DIR, LAYOUTS, PROGRESS_SAMPLING, SCORE_CHOICES, ClipSpec,
                      ProgressConfig, PromptLibrary, encode_requests, processor_options, write_declared_stages)
from training.vlm_examples import Example, RequestBuilder, negative_examples, read_targets, sample_examples

LANGUAGE_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Only the language model's projections: Qwen2.5-VL's vision blocks reuse the MLP names.
LORA_TARGETS = r".*language_model.*\.(" + "|".join(LANGUAGE_PROJECTIONS) + r")"
DEFAULT_LR = {"small": 2e-3, "lora": 1e-4, "full": 1e-5}
STATE_FILE = "state.pt"


@dataclass(frozen=True)
class FinetuneConfig:
    base: str  # a checkpoint directory or hub id, or "small" (built from scratch)
    lora: bool
    tune_vision: bool
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    steps: int
    batch_size: int
    grad_accum: int
    lr: float
    warmup_steps: int
    weight_decay: float
    soft_targets: bool
    examples: int
    seed: int

    @property
    def mode(self) -> str:
        return "lora" if self.lora else "small" if self.base == "small" else "full"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.finetune_vlm", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--dataset", required=True, help="hub repo id or local LeRobot dataset directory")
    add("--labels", required=True, metavar="SOURCE",
        help="a reward source: ground_truth | labels:<labeling.run output or parquet> | keypoints:PATH | dataset")
    add("--out", type=Path, required=True, help="output model directory (must not exist unless --overwrite)")
    base = parser.add_mutually_exclusive_group(required=True)
    base.add_argument("--base", help="checkpoint directory or hub id to fine-tune, e.g. Qwen/Qwen2.5-VL-3B-Instruct")
    base.add_argument("--init", choices=["small"], help="build a small Qwen2.5-VL from scratch (full training)")
    add("--lora", action="store_true", help="train a LoRA adapter (merged into the saved model)")
    add("--tune-vision", action="store_true", help="train the vision tower too (frozen by default with --base)")
    add("--lora-r", type=int, default=32)
    add("--lora-alpha", type=int, default=64)
    add("--lora-dropout", type=float, default=0.05)
    add("--episodes", help="episodes to train on, e.g. 0-39 (default: all)")
    add("--examples", type=int, default=2048,
        help="keyframe examples: every episode's last frame, then frames drawn balanced over the five scores")
    add("--no-negatives", action="store_true", help="leave out a labeling.run output's negatives")
    add("--soft-targets", action="store_true", help="two-hot targets over the score tokens from fractional labels")
    add("--steps", type=int, default=3000)
    add("--batch-size", type=int, default=8)
    add("--grad-accum", type=int, default=1)
    add("--lr", type=float, help=f"default: {DEFAULT_LR['small']} (--init small), {DEFAULT_LR['lora']} "
                                 f"(--lora), {DEFAULT_LR['full']} (full fine-tuning of --base)")
    add("--warmup-steps", type=int, default=100)
    add("--weight-decay", type=float, default=0.01)
    add("--checkpoint-every", type=int, default=200, help="steps between resumable checkpoints")
    add("--eval-dataset", help="held-out dataset scored at the end (default: none)")
    add("--eval-labels", default="ground_truth", help="reward source of --eval-dataset")
    add("--eval-examples", type=int, default=256)
    add("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    add("--dtype", default="auto", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16")
    add("--save-dtype", default="float32", choices=["float32", "bfloat16"], help="dtype of the saved weights")
    add("--gradient-checkpointing", action="store_true")
    # How the requests are rendered: the same options as labeling.run, with its defaults.
    add("--cameras", nargs="*", help="camera keys or short names (default: all)")
    add("--camera-layout", choices=LAYOUTS, default=ClipSpec.layout)
    add("--image-size", type=int, default=ClipSpec.image_size)
    add("--context-frames", type=int, default=ProgressConfig.context_frames)
    add("--prompts-dir", type=Path, default=DEFAULT_PROMPTS_DIR)
    add("--seed", type=int, default=0)
    add("--overwrite", action="store_true")
    add("--quiet", action="store_true")
    return parser.parse_args(argv)


def build_examples(source: EpisodeSource, labels_spec: str, count: int, seed: int,
                   with_negatives: bool, episodes: list[int] | None = None) -> list[Example]:
    episodes = episodes or source.episode_indices
    targets = read_targets(labels_spec, source, episodes)
    instructions = {e: source.episode(e).task for e in episodes}
    examples = sample_examples(targets, instructions, count, np.random.default_rng(seed))
    kind, _, path = labels_spec.partition(":")
    if with_negatives and kind == "labels":
        examples += negative_examples(Path(path), episodes)
    return examples


def small_model_corpus(prompts: PromptLibrary, source: EpisodeSource, clip: ClipSpec) -> list[str]:
    """Text the small model's tokenizer learns: every prompt file, the rubric, the views line
    and the dataset's tasks, so a prompt costs about one token a word."""
    texts = [path.read_text() for path in sorted(prompts.directory.glob("*.txt"))]
    return texts + [clip.views_text()] + sorted({source.episode(e).task for e in source.episode_indices})


def load_model(config: FinetuneConfig, init_dir: Path, corpus: list[str], dtype: torch.dtype):
    """(model, processor) of the base; `small` is built once into `init_dir` (reused on resume)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = config.base
    if config.base == "small":
        if not (init_dir / "config.json").is_file():
            from data.tiny_vlm import build_tiny_vlm

            shutil.rmtree(init_dir, ignore_errors=True)
            build_tiny_vlm("qwen2_5_vl", init_dir, seed=config.seed, size="small", corpus=corpus)
        path = str(init_dir)
    try:
        processor = AutoProcessor.from_pretrained(path)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot load base model '{config.base}': {str(err).splitlines()[0]} "
                           "(offline? pass a local checkpoint directory with --base)") from err
    processor.tokenizer.padding_side = "left"  # answers end aligned: loss on the last positions
    return model, processor


def prepare_trainable(model, config: FinetuneConfig):
    """Freeze what is not trained; wrap in LoRA where asked. Returns the model to train."""
    vision = _vision_tower(model)
    if config.lora:
        import re

        from peft import LoraConfig, get_peft_model

        names = [name for name, _ in model.named_modules() if re.fullmatch(LORA_TARGETS, name)]
        if not names:
            raise DatasetError(f"--lora: the base has none of the target modules ({', '.join(LANGUAGE_PROJECTIONS)} "
                               "inside a `language_model`); is it a Qwen-VL checkpoint?")
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=LORA_TARGETS, modules_to_save=["visual"] if config.tune_vision else None)
        return get_peft_model(model, lora)
    tune_vision = config.tune_vision or config.base == "small"  # a from-scratch vision tower must learn
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    if not tune_vision and vision is not None:
        for parameter in vision.parameters():
            parameter.requires_grad_(False)
    return model


def _vision_tower(model):
    inner = getattr(model, "model", model)
    return getattr(inner, "visual", None)


class AnswerLoss:
    """Cross-entropy on the answer tokens `ANSWER: k<end of turn>` only.

    With left padding every answer ends at the last position and all have the same length
    (one token per digit), so the model computes logits for those positions alone.
    """

    def __init__(self, processor, patch_size: int, processor_kwargs: dict, soft_targets: bool):
        tokenizer = processor.tokenizer
        self.processor, self.patch_size, self.processor_kwargs = processor, patch_size, processor_kwargs
        self.score_ids = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(c))[0] for c in SCORE_CHOICES]
        if any(len(tokenizer.tokenize(c)) != 1 for c in SCORE_CHOICES):
            raise DatasetError("the tokenizer does not encode each score 1-5 as one token; it cannot be a reward VLM here")
        self.answer_length = len(tokenizer(ANSWER_PREFIX + "3", add_special_tokens=False).input_ids) + 1
        self.soft_targets = soft_targets

    def inputs(self, requests, examples: list[Example], device):
        inputs = encode_requests(self.processor, requests, self.patch_size, self.processor_kwargs,
                                 answers=[str(e.score) for e in examples])
        digits = inputs["input_ids"][:, -2]
        expected = torch.tensor([self.score_ids[e.score - 1] for e in examples])
        if not torch.equal(digits, expected):
            raise RuntimeError("answer tokens are not where the loss expects them (tokenizer without left padding?)")
        return inputs.to(device)

    def __call__(self, model, inputs, examples: list[Example]) -> torch.Tensor:
        length = self.answer_length
        logits = model(**inputs, logits_to_keep=length + 1).logits[:, :-1].float()
        log_probs = logits.log_softmax(dim=-1)
        targets = inputs["input_ids"][:, -length:]
        nll = -log_probs.gather(-1, targets[..., None]).squeeze(-1)
        if self.soft_targets:
            soft = torch.stack([two_hot(e.expected) for e in examples]).to(log_probs.device)
            nll[:, length - 2] = -(soft * log_probs[:, length - 2, self.score_ids]).sum(dim=-1)
        return nll.mean()


def two_hot(expected: float) -> torch.Tensor:
    """A fractional score on 1..5 split between its two neighbouring integer scores."""
    value = min(max(expected, 1.0), 5.0) - 1.0
    low = min(int(math.floor(value)), 3)
    weights = torch.zeros(len(SCORE_CHOICES))
    weights[low] = 1.0 - (value - low)
    weights[low + 1] = value - low
    return weights


def learning_rate(step: int, config: FinetuneConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


def batch_indices(position: int, size: int, count: int, seed: int) -> list[int]:
    """Example indices at stream positions [position, position + size): epochs of seeded
    permutations, so a resumed run sees exactly the batches the uninterrupted one would."""
    orders: dict[int, np.ndarray] = {}  # each epoch's permutation drawn once per batch
    indices = []
    for at in range(position, position + size):
        epoch, offset = divmod(at, count)
        if epoch not in orders:
            orders[epoch] = np.random.default_rng([seed, epoch]).permutation(count)
        indices.append(int(orders[epoch][offset]))
    return indices


@dataclass
class TrainState:
    step: int = 0
    losses: list[float] | None = None
    elapsed_s: float = 0.0


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad}


def save_state(path: Path, model, optimizer, state: TrainState) -> None:
    """Trainable weights, optimizer and progress, written atomically."""
    tmp = path.with_suffix(".tmp")
    torch.save({"weights": trainable_state(model), "optimizer": optimizer.state_dict(), "state": asdict(state)}, tmp)
    tmp.replace(path)


def load_state(path: Path, model, optimizer) -> TrainState:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    missing = set(saved["weights"]) - {name for name, _ in model.named_parameters()}
    if missing:
        raise DatasetError(f"{path} does not fit this model ({len(missing)} unknown weights); "
                           "remove it or pass the arguments of the interrupted run")
    model.load_state_dict(saved["weights"], strict=False)
    optimizer.load_state_dict(saved["optimizer"])
    return TrainState(**saved["state"])


def train(model, loss_fn: AnswerLoss, builder: RequestBuilder, examples: list[Example], config: FinetuneConfig,
          device: str, state_path: Path, checkpoint_every: int, progress: bool) -> TrainState:
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    state = load_state(state_path, model, optimizer) if state_path.is_file() else TrainState(losses=[])
    if state.step:
        print(f"resuming from step {state.step} ({state_path})", flush=True)
    model.train()
    started = time.perf_counter() - state.elapsed_s
    with tqdm(total=config.steps, initial=state.step, desc="finetune", unit="step", disable=not progress) as bar:
        while state.step < config.steps:
            torch.manual_seed(config.seed + state.step)  # LoRA dropout: reproducible across a resume
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(state.step, config)
            total = 0.0
            for micro in range(config.grad_accum):
                position = (state.step * config.grad_accum + micro) * config.batch_size
                batch = [examples[i] for i in batch_indices(position, config.batch_size, len(examples), config.seed)]
                inputs = loss_fn.inputs([builder.request(e) for e in batch], batch, device)
                loss = loss_fn(model, inputs, batch) / config.grad_accum
                loss.backward()
                total += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.losses.append(round(total, 5))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(state.losses[-50:]):.3f}")
            if state.step % checkpoint_every == 0 or state.step == config.steps:
                state.elapsed_s = time.perf_counter() - started
                save_state(state_path, model, optimizer, state)
    return state


def save_model(model, processor, config: FinetuneConfig, out: Path, save_dtype: str) -> None:
    """A from_pretrained directory; for LoRA the adapter is kept in `adapter/` and merged into the model."""
    if config.lora:
        model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    model = model.to(getattr(torch, save_dtype))
    model.save_pretrained(out)
    processor.tokenizer.padding_side = "left"
    processor.save_pretrained(out)


@torch.inference_mode()
def evaluate(model_dir: Path, builder: RequestBuilder, examples: list[Example], device: str) -> dict:
    """Keyframe metrics of the saved model through the labeling pipeline's own backend."""
    from labeling import make_backend

    backend = make_backend("transformers", str(model_dir), device=device, batch_size=8)
    responses = backend.generate([builder.request(e) for e in examples], PROGRESS_SAMPLING)
    probs = np.array([[r.choice_probs[c] for c in SCORE_CHOICES] for r in responses])
    expected = probs @ np.arange(1, 6)
    predicted = probs.argmax(axis=1) + 1
    truth = np.array([e.score for e in examples])
    confusion = np.zeros((5, 5), dtype=int)
    np.add.at(confusion, (truth - 1, predicted - 1), 1)
    return {
        "examples": len(examples),
        "mae_expected": float(np.abs(expected - truth).mean()),
        "exact": float((predicted == truth).mean()),
        "within_one": float((np.abs(predicted - truth) <= 1).mean()),
        "confusion_true_by_predicted": confusion.tolist(),
    }


def plot_loss(path: Path, losses: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(losses) + 1)
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, losses, color="0.8", linewidth=0.6, label="per step")
    ax.plot(steps[window - 1:], smooth, color="C0", label=f"mean of {window}")
    ax.set(xlabel="step", ylabel="answer-token loss", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


MODEL_CARD = """# Reward VLM ({mode})

A Qwen-VL reward model trained by `python -m training.finetune_vlm` to answer the progress
prompt of `labeling.run` (`ANSWER: k`, k on the 1-5 rubric).

- base: {base}
- trained on: {dataset} ({episodes} episodes, {examples} keyframe examples, labels `{labels}`)
- tasks seen: {tasks}
- {trainable:,} trainable of {parameters:,} parameters, {steps} steps, {minutes:.1f} min

What it is not: a general VLM. It has only seen the frames, prompts and tasks above; use it
on data like them. It was trained to answer the progress prompt only, and says so in
`labeling_stages.json`: `labeling.run` runs only the progress stage with it unless `--stages`
names others. Rebuild with:

    {command}
"""


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.init and args.lora:
        raise DatasetError("--lora needs a pretrained --base; --init small trains every parameter")
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already exists (pass --overwrite to replace it)")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = getattr(torch, "bfloat16" if args.dtype == "auto" and device.startswith("cuda") else
                    "float32" if args.dtype == "auto" else args.dtype)
    torch.set_num_threads(os.cpu_count() or 1)
    config = FinetuneConfig(
        base=args.base or args.init, lora=args.lora, tune_vision=args.tune_vision, lora_r=args.lora_r,
        lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, steps=args.steps, batch_size=args.batch_size,
        grad_accum=args.grad_accum, lr=args.lr or 0.0, warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay, soft_targets=args.soft_targets, examples=args.examples, seed=args.seed,
    )
    if not args.lr:
        config = replace(config, lr=DEFAULT_LR[config.mode])

    source = EpisodeSource.open(args.dataset)
    episodes = parse_episodes(args.episodes) or source.episode_indices
    for episode in episodes:
        source.episode(episode)
    prompts = PromptLibrary(args.prompts_dir)
    clip = ClipSpec(cameras=source.check_cameras(args.cameras), layout=args.camera_layout, image_size=args.image_size)
    progress_config = ProgressConfig(context_frames=args.context_frames)
    examples = build_examples(source, args.labels, args.examples, args.seed, not args.no_negatives, episodes)
    eval_source = EpisodeSource.open(args.eval_dataset) if args.eval_dataset else None
    eval_examples = (build_examples(eval_source, args.eval_labels, args.eval_examples, args.seed + 1, False)
                     if eval_source else [])

    work = args.out.with_name(args.out.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    model, processor = load_model(config, work / "init", small_model_corpus(prompts, source, clip), dtype)
    torch.manual_seed(config.seed)  # LoRA's initial weights: the same run after run
    model = prepare_trainable(model, config)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model.to(device)
    base_config = model.config
    loss_fn = AnswerLoss(processor, base_config.vision_config.patch_size, processor_options(base_config),
                         args.soft_targets)
    builder = RequestBuilder(source, clip, progress_config, prompts, examples)
    print(f"{len(examples)} examples from {len(episodes)} episodes "
          f"(scores {np.bincount([e.score for e in examples], minlength=6)[1:].tolist()}), "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters", flush=True)
    state = train(model, loss_fn, builder, examples, config, device, work / STATE_FILE, args.checkpoint_every,
                  progress=not args.quiet)

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    parameters = sum(p.numel() for p in model.parameters())
    staging = work / "model"
    shutil.rmtree(staging, ignore_errors=True)
    save_model(model, processor, config, staging, args.save_dtype)
    held_out = evaluate(staging, RequestBuilder(eval_source, clip, progress_config, prompts, eval_examples),
                        eval_examples, device) if eval_examples else None
    command = "python -m training.finetune_vlm " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = {
        "base": config.base, "mode": config.mode, "config": asdict(config), "trainable_parameters": trainable,
        "parameters": parameters, "steps": state.step, "train_wall_s": round(state.elapsed_s, 1),
        "total_wall_s": round(time.perf_counter() - started, 1), "dataset": str(args.dataset),
        "labels": args.labels, "episodes": len(episodes), "examples": len(examples),
        "examples_by_origin": {o: sum(e.origin == o for e in examples) for o in sorted({e.origin for e in examples})},
        "clip": asdict(clip), "context_frames": args.context_frames, "device": device,
        "loss_curve": state.losses, "held_out": held_out, "eval_dataset": args.eval_dataset, "command": command,
    }
    (staging / "training_summary.json").write_text(json.dumps(summary, indent=2))
    plot_loss(staging / "loss.png", state.losses)
    write_declared_stages(staging, ("progress",))  # the only answer it was trained to give
    (staging / "README.md").write_text(MODEL_CARD.format(
        mode=config.mode, base=config.base, dataset=args.dataset, episodes=len(episodes), examples=len(examples),
        labels=args.labels, tasks="; ".join(sorted({source.episode(e).task for e in episodes})),
        trainable=trainable, parameters=parameters, steps=state.step,
        minutes=state.elapsed_s / 60, command=command))
    if args.out.exists():
        shutil.rmtree(args.out)
    staging.rename(args.out)
    shutil.rmtree(work)
    if held_out:
        print(f"held-out keyframes: MAE {held_out['mae_expected']:.3f}, exact {held_out['exact']:.3f}, "
              f"within-one {held_out['within_one']:.3f} ({held_out['examples']} examples)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

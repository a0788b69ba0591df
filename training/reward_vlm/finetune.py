"""The reward VLM's trainer: the progress stage's own requests as examples, an answer-token loss
(hard or two-hot), LoRA or full training in one resumable loop, evaluation and saving.
`training.finetune_vlm` is its command."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.cli import DatasetError
from common.dataset import EpisodeSource
from common.ground_truth import GROUND_TRUTH_DIR
from common.options import option
from common.staging import write_file
from labeling import ANSWER_PREFIX, PROGRESS_SAMPLING, SCORE_CHOICES, ClipSpec, PromptLibrary, encode_requests, load_vlm
from training.evaluation.plots import pyplot
from training.reward_vlm.examples import Example, RequestBuilder, negative_examples, read_targets, sample_examples

LANGUAGE_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Only the language model's projections: Qwen2.5-VL's vision blocks reuse the MLP names.
LORA_TARGETS = r".*language_model.*\.(" + "|".join(LANGUAGE_PROJECTIONS) + r")"
DEFAULT_LR = {"small": 2e-3, "lora": 1e-4, "full": 1e-5}
STATE_FILE = "state.pt"


@dataclass(frozen=True)
class FinetuneConfig:
    """How the model trains; saved whole in the model's training_summary.json."""

    base: str = "small"  # a checkpoint directory or hub id, or "small" (built from scratch): from --base/--init
    lora: bool = option(False, help="train a LoRA adapter (merged into the saved model)")
    tune_vision: bool = option(False, help="train the vision tower too (frozen by default with --base)")
    lora_r: int = option(32, help="LoRA rank")
    lora_alpha: int = option(64, help="LoRA alpha")
    lora_dropout: float = option(0.05, help="LoRA dropout")
    steps: int = option(3000, help="optimizer steps")
    batch_size: int = option(8, help="examples per micro-batch")
    grad_accum: int = option(1, help="micro-batches per optimizer step")
    lr: float | None = option(None, help=f"learning rate (default: {DEFAULT_LR['small']} from scratch, "
                                         f"{DEFAULT_LR['lora']} with --lora, {DEFAULT_LR['full']} full fine-tuning)")
    warmup_steps: int = option(100, help="linear warm-up steps")
    weight_decay: float = option(0.01, help="AdamW weight decay")
    soft_targets: bool = option(False, help="two-hot targets over the score tokens from fractional labels")
    examples: int = option(2048, help="keyframe examples: every episode's last frame, then frames drawn "
                                      "balanced over the five scores")
    seed: int = option(0, help="seed of the examples, the initial weights and the batches")

    @property
    def mode(self) -> str:
        return "lora" if self.lora else "small" if self.base == "small" else "full"


def build_examples(source: EpisodeSource, labels_spec: str, count: int, seed: int,
                   with_negatives: bool, episodes: list[int] | None = None, dataset: int = 0) -> list[Example]:
    """`count` keyframe examples of `source` (the `dataset`-th training dataset), plus a
    `labeling.run` output's negatives."""
    episodes = episodes or source.episode_indices
    source.fetch(episodes, cameras=(), folders=[GROUND_TRUTH_DIR])  # what reward sources read; frames come later
    targets = read_targets(labels_spec, source, episodes)
    instructions = {e: source.episode(e).task for e in episodes}
    examples = sample_examples(targets, instructions, count, np.random.default_rng(seed))
    kind, _, path = labels_spec.partition(":")
    if with_negatives and kind == "labels":
        examples += negative_examples(Path(path), episodes)
    return [replace(example, dataset=dataset) for example in examples]


def small_model_corpus(prompts: PromptLibrary, sources: Sequence[EpisodeSource], clip: ClipSpec) -> list[str]:
    """Text the small model's tokenizer learns: every prompt file, the rubric, the views line
    and the datasets' tasks, so a prompt costs about one token a word."""
    texts = [path.read_text() for path in sorted(prompts.directory.glob("*.txt"))]
    tasks = {source.episode(e).task for source in sources for e in source.episode_indices}
    return texts + [clip.views_text()] + sorted(tasks)


def load_model(config: FinetuneConfig, init_dir: Path, corpus: list[str], dtype: torch.dtype):
    """(model, processor) of the base; `small` is built once into `init_dir` (reused on resume)."""
    path = config.base
    if config.base == "small":
        if not (init_dir / "config.json").is_file():
            from training.reward_vlm.models import build_tiny_vlm

            shutil.rmtree(init_dir, ignore_errors=True)
            build_tiny_vlm("qwen2_5_vl", init_dir, seed=config.seed, size="small", corpus=corpus)
        path = str(init_dir)
    processor, model = load_vlm(path, dtype, flag="--base")
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
    write_file(path, lambda partial: torch.save(
        {"weights": trainable_state(model), "optimizer": optimizer.state_dict(), "state": asdict(state)}, partial))


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
    plt = pyplot()

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

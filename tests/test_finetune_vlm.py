"""`python -m training.finetune_vlm`: the progress stage's own requests, LoRA and full training, resume."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from common.cli import DatasetError
from common.dataset import EpisodeSource
from labeling.backends import SCORE_CHOICES, VLMBackend, VLMResponse, make_backend
from labeling.backends.transformers_backend import encode_requests
from labeling.calls import CallCache, ModelCaller
from labeling.clips import ClipSpec
from labeling.context import LabelingContext
from labeling.model_stages import declared_stages
from labeling.progress import SAMPLING as PROGRESS_SAMPLING
from labeling.progress import ProgressConfig, score_progress
from labeling.prompts import PromptLibrary
from training.finetune_vlm import main
from training.reward_vlm import finetune as trainer
from training.reward_vlm.finetune import FinetuneConfig, batch_indices, prepare_trainable, two_hot
from training.reward_vlm.examples import Example, RequestBuilder, read_targets, sample_examples


class RecordingBackend(VLMBackend):
    """Answers every progress request with '3' and keeps what it was sent."""

    name, model = "recording", "recording"

    def __init__(self):
        self.sent = []

    def _generate_text(self, requests, params):
        return [VLMResponse(text="ANSWER: 3") for _ in requests]

    def _score_choices(self, requests, params):
        self.sent += requests
        return [VLMResponse(choice_probs={c: 0.2 for c in params.choices}) for _ in requests]


def test_examples_are_byte_identical_to_what_the_progress_stage_sends(demo_root, tmp_path, tiny_models):
    source = EpisodeSource.open(demo_root)
    clip = ClipSpec(cameras=source.camera_keys, image_size=96)
    prompts, config = PromptLibrary(), ProgressConfig()
    backend = RecordingBackend()
    caller = ModelCaller(backend, CallCache(tmp_path / "cache.sqlite"), progress=False)
    episode = 4
    instruction = source.episode(episode).task
    labels = score_progress(LabelingContext(source, caller, prompts, clip, [episode]), {episode: instruction}, config)
    frames = sorted(labels[episode].keyframes)  # equal answers: no refinement, calls in keyframe order
    examples = [Example(episode, f, instruction, 3, 3.0, "progress") for f in frames]
    builder = RequestBuilder([source], clip, config, prompts, examples)
    for sent, example in zip(backend.sent, examples, strict=True):
        built = builder.request(example)
        assert built.prompt == sent.prompt and built.answer_prefix == sent.answer_prefix == "ANSWER: "
        assert len(built.images) == len(sent.images)
        assert all(np.array_equal(a, b) for a, b in zip(built.images, sent.images, strict=True))
    # Encoded for training, the tokens before the answer are exactly the inference tokens.
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_models["qwen2_5_vl"])
    processor.tokenizer.padding_side = "left"
    asked = encode_requests(processor, [backend.sent[0]], 14)["input_ids"][0]
    trained = encode_requests(processor, [builder.request(examples[0])], 14, answers=["3"])["input_ids"][0]
    assert torch.equal(trained[: len(asked)], asked)


def test_sampling_covers_every_score_and_every_final_frame(demo_root):
    source = EpisodeSource.open(demo_root)
    targets = read_targets("ground_truth", source, source.episode_indices)
    instructions = {e: source.episode(e).task for e in source.episode_indices}
    examples = sample_examples(targets, instructions, 500, np.random.default_rng(0))
    counts = np.bincount([e.score for e in examples], minlength=6)[1:]
    assert counts.min() > 0.6 * counts.max()  # balanced over the five scores
    finals = {(e.episode, e.frame) for e in examples}
    assert all((ep, len(t.score) - 1) in finals for ep, t in targets.items())
    assert len({e.frame for e in examples if e.episode == 6}) > 5  # keyframes over the whole episode


def test_two_hot_and_batch_order_are_exact():
    assert two_hot(3.0).tolist() == [0, 0, 1, 0, 0]
    np.testing.assert_allclose(two_hot(4.25).numpy(), [0, 0, 0, 0.75, 0.25])
    np.testing.assert_allclose(two_hot(5.0).numpy(), [0, 0, 0, 0, 1])
    first_epoch = batch_indices(0, 10, 10, seed=1)
    assert sorted(first_epoch) == list(range(10))  # an epoch sees every example once
    assert batch_indices(4, 3, 10, seed=1) == first_epoch[4:7]
    assert batch_indices(10, 10, 10, seed=1) != first_epoch


def finetune(demo_root, out, *extra, steps=8):
    return main(["--dataset", str(demo_root), "--labels", "ground_truth", "--out", str(out), "--steps", str(steps),
                 "--batch-size", "4", "--examples", "8", "--warmup-steps", "1", "--image-size", "64",
                 "--checkpoint-every", "2", "--quiet", *extra])


def test_lora_loss_falls_and_the_merged_model_equals_base_plus_adapter(demo_root, tiny_models, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = tmp_path / "lora"
    assert finetune(demo_root, out, "--base", str(tiny_models["qwen2_5_vl"]), "--lora", "--lr", "1e-2",
                    "--episodes", "0-3", "--examples", "4", steps=16) == 0  # one fixed batch of 4
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["mode"] == "lora" and summary["trainable_parameters"] < summary["parameters"] / 2
    losses = summary["loss_curve"]
    # The tiny model's frozen random LM head bounds its logits (about ±1.3), so the loss cannot
    # approach zero under LoRA; it must still fall clearly below where it started.
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.5
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "loss.png").is_file()

    processor = AutoProcessor.from_pretrained(out)
    processor.tokenizer.padding_side = "left"
    source = EpisodeSource.open(demo_root)
    example = Example(4, 20, source.episode(4).task, 3, 3.0, "progress")
    builder = RequestBuilder([source], ClipSpec(source.camera_keys, image_size=64), ProgressConfig(), PromptLibrary(),
                             [example])
    inputs = encode_requests(processor, [builder.request(example)], 14)
    merged = AutoModelForImageTextToText.from_pretrained(out).eval()
    base = AutoModelForImageTextToText.from_pretrained(tiny_models["qwen2_5_vl"]).eval()
    with torch.no_grad():
        before = base(**inputs, logits_to_keep=1).logits[0, -1]
        adapted = PeftModel.from_pretrained(base, out / "adapter").eval()  # wraps `base` in place
        a = merged(**inputs, logits_to_keep=1).logits[0, -1]
        b = adapted(**inputs, logits_to_keep=1).logits[0, -1]
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, before, atol=1e-3)  # the adapter changed the answer

    from labeling.run import main as label

    labeled = tmp_path / "labeled"
    assert label(["--dataset", str(demo_root), "--out", str(labeled), "--model", str(out), "--episodes", "4",
                  "--stages", "progress", "--image-size", "64", "--quiet"]) == 0
    summary = json.loads((labeled / "labeling_summary.json").read_text())
    assert summary["frames_labeled"] == source.episode(4).length and summary["missing_answers"] == 0


@pytest.mark.slow
def test_small_model_from_scratch_overfits_a_handful_of_examples(demo_root, tmp_path):
    out = tmp_path / "small"
    assert finetune(demo_root, out, "--init", "small", "--episodes", "3-6", "--examples", "4", "--lr", "3e-3",
                    steps=60) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["mode"] == "small" and summary["trainable_parameters"] == summary["parameters"]
    source = EpisodeSource.open(demo_root)
    episodes = [3, 4, 5, 6]
    targets = read_targets("ground_truth", source, episodes)
    examples = sample_examples(targets, {e: source.episode(e).task for e in episodes}, 4, np.random.default_rng(0))
    builder = RequestBuilder([source], ClipSpec(source.camera_keys, image_size=64), ProgressConfig(), PromptLibrary(),
                             examples)
    backend = make_backend("transformers", str(out), device="cpu")
    answers = backend.generate([builder.request(e) for e in examples], PROGRESS_SAMPLING)
    predicted = [1 + int(np.argmax([r.choice_probs[c] for c in SCORE_CHOICES])) for r in answers]
    assert predicted == [e.score for e in examples]


def test_a_killed_run_resumes_where_it_stopped(demo_root, tiny_models, tmp_path, monkeypatch):
    base = ["--base", str(tiny_models["qwen2_5_vl"]), "--lr", "1e-3"]
    assert finetune(demo_root, tmp_path / "whole", *base, steps=6) == 0
    summary = json.loads((tmp_path / "whole" / "training_summary.json").read_text())
    assert summary["options"]["training"]["steps"] == 6 and summary["command"].startswith("python -m training.finetune_vlm")
    whole = summary["loss_curve"]
    assert declared_stages(tmp_path / "whole") == ("progress",)  # the only answer it was trained on

    saved = trainer.save_state

    def save_then_die(path, model, optimizer, state):
        saved(path, model, optimizer, state)
        if state.step == 4:
            raise KeyboardInterrupt  # the process dies right after its step-4 checkpoint

    monkeypatch.setattr(trainer, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune(demo_root, tmp_path / "resumed", *base, steps=6)
    assert not (tmp_path / "resumed").exists() and (tmp_path / "resumed.partial" / "state.pt").is_file()
    monkeypatch.setattr(trainer, "save_state", saved)
    assert finetune(demo_root, tmp_path / "resumed", *base, steps=6) == 0
    resumed = json.loads((tmp_path / "resumed" / "training_summary.json").read_text())["loss_curve"]
    np.testing.assert_allclose(resumed, whole, rtol=1e-4)
    assert not (tmp_path / "resumed.partial").exists()


def test_bad_inputs_are_one_line_and_exit_2(demo_root, tiny_models, tmp_path, cli):
    no_truth = tmp_path / "no_truth"
    shutil.copytree(demo_root, no_truth)
    shutil.rmtree(no_truth / "ground_truth")
    cases = [
        (["--dataset", str(no_truth), "--labels", "ground_truth", "--init", "small"], "has no ground truth"),
        (["--dataset", str(demo_root), "--labels", f"labels:{tmp_path / 'nowhere'}", "--init", "small"], "not found"),
        (["--dataset", str(demo_root), "--labels", "ground_truth", "--base", str(tmp_path / "no-model")],
         "cannot load model"),
        (["--dataset", str(demo_root), "--labels", "ground_truth", "--init", "small", "--lora"], "--lora needs"),
    ]
    for args, message in cases:
        result = cli("training.finetune_vlm", *args, "--out", tmp_path / "o", "--steps", 1)
        assert result.returncode == 2, result.stderr[-500:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


def test_a_dataset_without_the_training_cameras_is_refused_before_training(demo_root, tmp_path, cli):
    from data.benchmark import GenerateConfig, generate
    from data.rollout import RolloutConfig

    top_only = generate(GenerateConfig(out=tmp_path / "top_only", tasks=("reach-v3",), successes=1, failures_per_kind=0,
                                       rollout=RolloutConfig(cameras=("topview",), image_size=32)), progress=False)
    for where in (["--eval-dataset", top_only], ["--dataset", top_only]):  # a held-out or a second training set
        result = cli("training.finetune_vlm", "--dataset", demo_root, "--labels", "ground_truth", "--init", "small",
                     *where, "--out", tmp_path / "o", "--steps", 1)
        assert result.returncode == 2 and "lacks the cameras the model trains on (observation.images.corner2)" in \
            result.stderr, result.stderr[-500:]
        assert not (tmp_path / "o.partial").exists()  # nothing trained


def test_one_model_trains_on_datasets_of_different_frame_rates(demo_root, tiny_models, tmp_path, cli):
    from data.benchmark import GenerateConfig, generate
    from data.rollout import RolloutConfig

    slow = generate(GenerateConfig(out=tmp_path / "slow", tasks=("push-v3",), successes=2, failures_per_kind=0,
                                   rollout=RolloutConfig(image_size=32, action_repeat=4, operator_speed=0.5)),
                    progress=False)
    demo, other = EpisodeSource.open(demo_root), EpisodeSource.open(slow)
    assert other.fps == 20 != demo.fps
    # An example of the second dataset is rendered from that dataset's frames, as on its own.
    clip, config, prompts = ClipSpec(demo.camera_keys, image_size=64), ProgressConfig(), PromptLibrary()
    example = Example(1, other.episode(1).length - 1, other.episode(1).task, 5, 5.0, "progress")
    both = RequestBuilder([demo, other], clip, config, prompts, [replace(example, dataset=1)])
    alone = RequestBuilder([other], clip, config, prompts, [example]).request(example)
    built = both.request(replace(example, dataset=1))
    assert built.prompt == alone.prompt and all(np.array_equal(a, b) for a, b in zip(built.images, alone.images,
                                                                                     strict=True))

    out = tmp_path / "model"
    assert main(["--dataset", str(demo_root), str(slow), "--labels", "ground_truth", "--out", str(out),
                 "--base", str(tiny_models["qwen2_5_vl"]), "--steps", "2", "--batch-size", "4", "--examples", "40",
                 "--image-size", "64", "--quiet"]) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["dataset"] == [str(demo_root), str(slow)]
    assert summary["episodes"] == len(demo.episode_indices) + 2
    # examples in proportion to episodes, each dataset's last frames included
    share = round(40 * 2 / summary["episodes"])
    assert summary["examples_by_dataset"] == {str(demo_root): 40 - share, str(slow): share}
    balanced = tmp_path / "balanced"
    assert main(["--dataset", str(demo_root), str(slow), "--labels", "ground_truth", "--out", str(balanced),
                 "--base", str(tiny_models["qwen2_5_vl"]), "--steps", "1", "--batch-size", "4", "--examples", "40",
                 "--image-size", "64", "--quiet", "--balance-datasets"]) == 0
    summary = json.loads((balanced / "training_summary.json").read_text())
    assert summary["examples_by_dataset"] == {str(demo_root): 20, str(slow): 20}
    tasks = {source.episode(e).task for source in (demo, other) for e in source.episode_indices}
    assert len(tasks) == 3 and all(task in (out / "README.md").read_text() for task in tasks)

    for args, message in [(["--labels", "ground_truth", "ground_truth", "ground_truth"], "one per dataset"),
                          (["--labels", "ground_truth", "--episodes", "0-1"], "--episodes selects"),
                          (["--dataset", slow, "--labels", "ground_truth"], "given more than once")]:
        result = cli("training.finetune_vlm", "--dataset", demo_root, slow, *args, "--init", "small",
                     "--out", tmp_path / "o", "--steps", 1)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-500:]


def test_lora_without_the_target_modules_is_a_clear_error():
    config = FinetuneConfig(base="x", lora=True, tune_vision=False, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                            steps=1, batch_size=1, grad_accum=1, lr=1e-3, warmup_steps=1, weight_decay=0.0,
                            soft_targets=False, examples=1, seed=0)
    not_a_vlm = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(DatasetError, match="none of the target modules"):
        prepare_trainable(not_a_vlm, config)

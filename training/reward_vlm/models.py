"""Qwen-VL checkpoints built from scratch on disk: tiny random ones for tests and benchmarks,
and the small one `training.finetune_vlm --init small` trains.

No pretrained weights exist on these machines, so the labeling pipeline is exercised with
models that have the real architecture, processor, tokenizer and chat template of Qwen2-VL,
Qwen2.5-VL or Qwen3-VL, loaded with `from_pretrained` like a hub checkpoint, but a few
hundred thousand random parameters. Their answers are noise; the code path is the real one.
"""

from __future__ import annotations

from pathlib import Path

import torch

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
# Qwen2's pre-tokenizer: digits are split one per token, as in the real checkpoints.
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "ANSWER: 1", "ANSWER: 2", "ANSWER: 3", "ANSWER: 4", "ANSWER: 5", "1 2 3 4 5 0 6 7 8 9",
    "No Success. Minimal Progress. Partial Completion. Near Completion. Perfect Completion.",
    "You are a reward model for robot manipulation. Score the progress of the task in the video.",
    "INSTRUCTION: pick up the puck and place it at the goal. PARAPHRASE: move the puck to the target.",
    "VERDICT: CONSISTENT VERDICT: INCONSISTENT SCORE: The robot arm reaches, grasps, lifts, pushes.",
    "Describe the scene, the robot's actions and the final state of the objects.",
]


# Model sizes: "tiny" for tests (noise answers, ~0.3 M parameters); "small" is the from-scratch
# reward VLM that `training.finetune_vlm --init small` trains on this CPU (~2 M parameters).
SIZES = {
    "tiny": dict(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vision_hidden=32, vision_intermediate=64,
                 vision_depth=2, vision_heads=2, vocab=600),
    "small": dict(hidden=128, intermediate=384, layers=4, heads=4, kv_heads=2, vision_hidden=128,
                  vision_intermediate=256, vision_depth=4, vision_heads=4, vocab=1200),
}


def build_tokenizer(corpus: list[str] | None = None, vocab_size: int = 600):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator((CORPUS + list(corpus or [])) * 4, trainer=trainer)
    wrapped = Qwen2TokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_config(family: str, tokenizer, size: str = "tiny"):
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
    )}
    dims = SIZES[size]
    text = dict(
        vocab_size=len(tokenizer), hidden_size=dims["hidden"], intermediate_size=dims["intermediate"],
        num_hidden_layers=dims["layers"], num_attention_heads=dims["heads"], num_key_value_heads=dims["kv_heads"],
        max_position_embeddings=4096, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=size != "tiny",
    )
    if size != "tiny":
        # Qwen's 0.02 suits a 3584-wide model; at width 128 it leaves the attention uniform and
        # the answer blind to the images. Scale by fan-in instead.
        text["initializer_range"] = dims["hidden"] ** -0.5
    head_dim = dims["hidden"] // dims["heads"]
    mrope = [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]  # Qwen's 16:24:24 split of half a head
    if family == "qwen2_vl":
        from transformers import Qwen2VLConfig

        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope}
        vision = dict(depth=dims["vision_depth"] // 2, embed_dim=dims["vision_hidden"], hidden_size=dims["hidden"],
                      num_heads=dims["vision_heads"], mlp_ratio=2, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2)
        return Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope}
        depth = dims["vision_depth"]
        vision = dict(depth=depth, hidden_size=dims["vision_hidden"], intermediate_size=dims["vision_intermediate"],
                      num_heads=dims["vision_heads"], out_hidden_size=dims["hidden"], patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                      # small: full attention in every block (thousands of tiny windows are slow on a CPU)
                      fullatt_block_indexes=list(range(1, depth, 2)) if size == "tiny" else list(range(depth)))
        if size != "tiny":
            vision["initializer_range"] = dims["vision_hidden"] ** -0.5
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids,
                                **({"initializer_range": text["initializer_range"]} if size != "tiny" else {}))
    if family == "qwen3_vl":
        from transformers import Qwen3VLConfig

        text.update(head_dim=head_dim, rope_parameters={
            "rope_type": "default", "rope_theta": 5e6, "mrope_section": mrope, "mrope_interleaved": True,
        })
        vision = dict(depth=dims["vision_depth"], hidden_size=dims["vision_hidden"],
                      intermediate_size=dims["vision_intermediate"], num_heads=dims["vision_heads"],
                      out_hidden_size=dims["hidden"], patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                      num_position_embeddings=64, deepstack_visual_indexes=[0])
        return Qwen3VLConfig(text_config=text, vision_config=vision, **ids)
    raise ValueError(f"unknown family '{family}'; choose from {', '.join(FAMILIES)}")


def build_processor(family: str, tokenizer):
    if family == "qwen3_vl":
        from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

        patch, cls, video_cls = 16, Qwen3VLProcessor, Qwen3VLVideoProcessor
    else:
        from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

        patch, cls, video_cls = 14, Qwen2VLProcessor, Qwen2VLVideoProcessor
    factor = patch * 2
    sizes = dict(patch_size=patch, merge_size=2, temporal_patch_size=2,
                 size={"shortest_edge": 4 * factor**2, "longest_edge": 64 * factor**2})
    return cls(
        image_processor=Qwen2VLImageProcessor(**sizes),
        tokenizer=tokenizer,
        video_processor=video_cls(**sizes),
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_vlm(family: str, out: str | Path, seed: int = 0, size: str = "tiny",
                   corpus: list[str] | None = None) -> Path:
    """Write config, random weights, tokenizer and processor to `out` (from_pretrained-ready).

    `corpus`: extra text the tokenizer learns (e.g. the prompt files), so prompts take fewer tokens.
    """
    from transformers import AutoModelForImageTextToText

    out = Path(out)
    tokenizer = build_tokenizer(corpus, SIZES[size]["vocab"])
    config = build_config(family, tokenizer, size)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    build_processor(family, tokenizer).save_pretrained(out)
    return out


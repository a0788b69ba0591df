"""In-process Qwen2-VL / Qwen2.5-VL / Qwen3-VL through transformers and qwen-vl-utils.

Follows the models' documented recipe: `AutoProcessor` + `AutoModelForImageTextToText`,
`processor.apply_chat_template(..., add_generation_prompt=True)`, images through
`qwen_vl_utils.process_vision_info` (patch 16 and `do_resize=False` for Qwen3-VL, as its
model card does), left padding for batches.
"""

from __future__ import annotations

import torch
from PIL import Image

from common.cli import error_line
from labeling.backends.base import (BackendUnavailable, SamplingParams, VLMBackend, VLMRequest, VLMResponse,
                                    model_revision, normalise_choices)


def load_vlm(model: str, dtype: torch.dtype, flag: str = "--model"):
    """(processor, model) of a Qwen-VL checkpoint directory or hub id, padded on the left so a
    batch's prompts end aligned (where generation continues and the trainer's answer tokens sit).
    A model that cannot be loaded is one line naming the command's `flag`."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(model)
        net = AutoModelForImageTextToText.from_pretrained(model, dtype=dtype)
    except (OSError, ValueError) as err:
        raise BackendUnavailable(f"cannot load model '{model}' with transformers: {error_line(err)} "
                                 f"(offline? pass a local checkpoint directory with {flag})") from err
    processor.tokenizer.padding_side = "left"
    return processor, net


class TransformersBackend(VLMBackend):
    name = "transformers"

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = 4,
                 max_pixels: int | None = None):
        self.model = model
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.processor, self.net = load_vlm(model, getattr(torch, dtype))
        self.net.to(self.device).eval()
        self.revision = model_revision(model, self.net.config)  # the weights loaded
        config = self.net.config
        self.patch_size = config.vision_config.patch_size
        self.image_token_id = config.image_token_id
        self.processor_kwargs = processor_options(config)

    def identity(self) -> dict:
        return {"backend": self.name, "model": self.model, "revision": self.revision, "dtype": self.dtype,
                "model_type": self.net.config.model_type, "max_pixels": self.max_pixels}

    def describe(self) -> dict:
        return {**self.identity(), "device": self.device}

    def _encode(self, requests: list[VLMRequest]):
        return encode_requests(self.processor, requests, self.patch_size, self.processor_kwargs,
                               self.max_pixels).to(self.device)

    def _counts(self, inputs) -> tuple[list[int], list[int]]:
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        image_tokens = (inputs["input_ids"] == self.image_token_id).sum(dim=1).tolist()
        return prompt_tokens, image_tokens

    @torch.inference_mode()
    def _generate_text(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        responses = []
        sampling = {"do_sample": params.temperature > 0}
        if params.temperature > 0:
            sampling["temperature"] = params.temperature
            torch.manual_seed(params.seed)
        for batch in _batches(requests, self.batch_size):
            inputs = self._encode(batch)
            output = self.net.generate(**inputs, max_new_tokens=params.max_tokens, **sampling)
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
            prompt_tokens, image_tokens = self._counts(inputs)
            responses += [
                VLMResponse(text=request.answer_prefix + text, prompt_tokens=p, image_tokens=i)
                for request, text, p, i in zip(batch, texts, prompt_tokens, image_tokens, strict=True)
            ]
        return responses

    @torch.inference_mode()
    def _score_choices(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        choices = params.choices
        choice_ids = [self.processor.tokenizer.encode(c, add_special_tokens=False) for c in choices]
        if any(len(ids) != 1 for ids in choice_ids):  # cannot read one token per choice: answer in text
            return self._generate_text(requests, params)
        choice_ids = [ids[0] for ids in choice_ids]
        responses = []
        for batch in _batches(requests, self.batch_size):
            inputs = self._encode(batch)
            logits = self.net(**inputs, logits_to_keep=1).logits[:, -1, :].float()
            probs = logits.softmax(dim=-1)[:, choice_ids].cpu()
            prompt_tokens, image_tokens = self._counts(inputs)
            for row, p, i in zip(probs, prompt_tokens, image_tokens, strict=True):
                normalised, mass = normalise_choices(dict(zip(choices, row.tolist(), strict=True)), choices)
                responses.append(VLMResponse(choice_probs=normalised, choice_mass=mass, prompt_tokens=p, image_tokens=i))
        return responses


def processor_options(config) -> dict:
    """Processor call options a model family's card prescribes (Qwen3-VL: resize in qwen-vl-utils only)."""
    return {"do_resize": False} if config.model_type.startswith("qwen3") else {}


def encode_requests(processor, requests: list[VLMRequest], patch_size: int, processor_kwargs: dict | None = None,
                    max_pixels: int | None = None, answers: list[str] | None = None):
    """Model inputs of a batch of requests, exactly as the backend sends them.

    Each text is the chat template's user turn (images first, then the prompt) and the
    generation prompt, followed by the request's `answer_prefix`. `answers` (for training)
    appends each full answer after the prefix, closed by the end-of-turn token. The
    processor's tokenizer must pad on the left, so the answers of a batch end aligned.
    """
    from qwen_vl_utils import process_vision_info

    conversations = []
    for request in requests:
        content = []
        for image in request.images:
            item = {"type": "image", "image": Image.fromarray(image)}
            if max_pixels:
                item["max_pixels"] = max_pixels
            content.append(item)
        content.append({"type": "text", "text": request.prompt})
        conversations.append([{"role": "user", "content": content}])
    texts = [
        processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True) + request.answer_prefix
        for conversation, request in zip(conversations, requests, strict=True)
    ]
    if answers is not None:
        end_of_turn = processor.tokenizer.eos_token
        texts = [text + answer + end_of_turn for text, answer in zip(texts, answers, strict=True)]
    images = None
    if any(request.images for request in requests):
        images, _ = process_vision_info(conversations, image_patch_size=patch_size)
    return processor(text=texts, images=images, padding=True, return_tensors="pt", **(processor_kwargs or {}))


def _batches(requests: list[VLMRequest], size: int):
    for start in range(0, len(requests), size):
        yield requests[start : start + size]

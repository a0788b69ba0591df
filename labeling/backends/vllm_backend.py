"""vLLM's offline engine in-process (optional extra, CUDA only), imported only when chosen.

Uses `LLM.chat` with OpenAI-style image parts; a request with an `answer_prefix` is sent as
a final assistant message continued by the model (`continue_final_message=True`), so the
first generated token is the score and its `logprobs` give the distribution.
"""

from __future__ import annotations

import math

from labeling.backends.base import (BackendUnavailable, SamplingParams, VLMBackend, VLMRequest, VLMResponse,
                                    model_revision, normalise_choices, png_data_url)

MISSING = (
    "the vLLM engine is not installed here: `pip install 'reward-labeling[vllm]'` on a CUDA machine, "
    "or serve the model with `vllm serve <model>` and use --backend openai --base-url <url>"
)


class VLLMBackend(VLMBackend):
    name = "vllm"

    def __init__(self, model: str, max_images: int = 16, dtype: str = "auto", gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, seed: int = 0, top_logprobs: int = 20,
                 engine_args: dict | None = None):
        """`engine_args`: further keyword arguments of `vllm.LLM` (e.g. enforce_eager)."""
        try:
            from vllm import LLM
            from vllm import SamplingParams as VLLMSamplingParams
        except ImportError as err:
            raise BackendUnavailable(MISSING) from err
        self.model = model
        self.batch_size = 64  # vLLM schedules its own batches; this only sizes progress updates
        self.top_logprobs = top_logprobs
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.engine_args = dict(engine_args or {})
        self._sampling_params = VLLMSamplingParams
        self.llm = LLM(model=model, limit_mm_per_prompt={"image": max_images}, dtype=dtype,
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len, seed=seed,
                       **self.engine_args)
        self.revision = model_revision(model)  # after the engine resolved (and fetched) the weights
        self.image_token_id = getattr(self.llm.model_config.hf_config, "image_token_id", None)

    def identity(self) -> dict:
        """The weights and how they run: dtype, context length, the logprobs read, and any
        further engine argument (quantization, tokenizer, ...)."""
        return {"backend": self.name, "model": self.model, "revision": self.revision, "dtype": self.dtype,
                "max_model_len": self.max_model_len, "top_logprobs": self.top_logprobs,
                "engine_args": self.engine_args}

    def _generate_text(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        sampling = self._sampling_params(temperature=params.temperature, max_tokens=params.max_tokens,
                                         seed=params.seed)
        return [
            VLMResponse(text=request.answer_prefix + output.outputs[0].text, **self._counts(output))
            for request, output in zip(requests, self._chat(requests, sampling), strict=True)
        ]

    def _score_choices(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        choices = params.choices
        sampling = self._sampling_params(temperature=0.0, max_tokens=1, logprobs=self.top_logprobs)
        responses = []
        for output in self._chat(requests, sampling):
            first = output.outputs[0].logprobs[0] if output.outputs[0].logprobs else {}
            probs: dict[str, float] = {}
            for logprob in first.values():
                token = (logprob.decoded_token or "").strip()
                if token in choices:
                    probs[token] = probs.get(token, 0.0) + math.exp(logprob.logprob)
            normalised, mass = normalise_choices(probs, choices)
            responses.append(VLMResponse(text=output.outputs[0].text, choice_probs=normalised, choice_mass=mass,
                                         **self._counts(output)))
        return responses

    def _chat(self, requests: list[VLMRequest], sampling) -> list:
        """One `LLM.chat` call per prefix mode (it takes a single add_generation_prompt flag)."""
        outputs: list = [None] * len(requests)
        for prefixed in (False, True):
            picked = [i for i, r in enumerate(requests) if bool(r.answer_prefix) == prefixed]
            if not picked:
                continue
            conversations = [self._conversation(requests[i]) for i in picked]
            results = self.llm.chat(
                conversations, sampling_params=sampling, use_tqdm=False,
                add_generation_prompt=not prefixed, continue_final_message=prefixed,
            )
            for i, result in zip(picked, results, strict=True):
                outputs[i] = result
        return outputs

    @staticmethod
    def _conversation(request: VLMRequest) -> list[dict]:
        content = [{"type": "image_url", "image_url": {"url": png_data_url(image)}} for image in request.images]
        content.append({"type": "text", "text": request.prompt})
        conversation = [{"role": "user", "content": content}]
        if request.answer_prefix:
            conversation.append({"role": "assistant", "content": request.answer_prefix})
        return conversation

    def _counts(self, output) -> dict:
        prompt_ids = list(output.prompt_token_ids or [])
        images = prompt_ids.count(self.image_token_id) if self.image_token_id is not None else 0
        return {"prompt_tokens": len(prompt_ids), "image_tokens": images}

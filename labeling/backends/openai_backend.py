"""Any OpenAI-compatible chat server: `vllm serve`, SGLang, Ollama, hosted APIs.

Sends `/chat/completions` with images as PNG data URLs, a bounded number of requests at
once, and retries 429 / 5xx / connection errors with exponential backoff (honouring
Retry-After).

A request's `answer_prefix` is prefilled as a final assistant message that the model
continues (`continue_final_message`, `add_generation_prompt: false`: vLLM's and SGLang's
chat extensions), so the server is asked exactly what the in-process backends ask. A server
that rejects those fields (HTTP 400) is asked without the prefill from then on: the model
then writes `ANSWER: k` itself, which the parser and the logprob reader both accept.
When the server returns `logprobs`, the score distribution is read from the `top_logprobs`
of the first generated token after a prefill, else of the first 1-5 digit after `ANSWER:`;
a server that rejects `logprobs` is asked for text, which is parsed.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

from labeling.backends.base import (BackendUnavailable, SamplingParams, VLMBackend, VLMRequest, VLMResponse,
                                    normalise_choices, png_data_url)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
# qwen-vl-utils' resize rule for Qwen2/2.5-VL (28 px per token after merging), used only to
# estimate image tokens, since servers report prompt tokens without splitting out images.
ESTIMATE_FACTOR = 28


class OpenAIBackend(VLMBackend):
    name = "openai"
    image_tokens_measured = False

    def __init__(self, model: str, base_url: str = "http://localhost:8000/v1", api_key: str | None = None,
                 concurrency: int = 8, timeout_s: float = 120.0, max_retries: int = 5, backoff_s: float = 1.0,
                 top_logprobs: int = 20):
        import httpx

        self.model = model
        self.base_url = base_url.rstrip("/")
        self.batch_size = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.top_logprobs = top_logprobs
        self.logprobs = True  # switched off if the server rejects the parameter
        self.prefill = True  # switched off if the server rejects continuing an assistant message
        key = api_key or os.environ.get("OPENAI_API_KEY", "EMPTY")
        self.client = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {key}"})
        self._http_errors = (httpx.TransportError,)

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model, "base_url": self.base_url, "logprobs": self.logprobs,
                "prefill": self.prefill}

    def _generate_text(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        return self._map(requests, params)

    def _score_choices(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        return self._map(requests, params)

    def _map(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            return list(pool.map(lambda r: self._one(r, params), requests))

    def _one(self, request: VLMRequest, params: SamplingParams) -> VLMResponse:
        """One chat completion; with `params.choices`, also asks for the first token's top logprobs."""
        choices = params.choices or ()
        content = [{"type": "image_url", "image_url": {"url": png_data_url(image)}} for image in request.images]
        content.append({"type": "text", "text": request.prompt})
        while True:
            prefilled = bool(request.answer_prefix) and self.prefill
            payload = {
                "model": self.model,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": params.max_tokens,
                "temperature": params.temperature,
                "seed": params.seed,
            }
            if prefilled:
                payload["messages"].append({"role": "assistant", "content": request.answer_prefix})
                payload.update(continue_final_message=True, add_generation_prompt=False)
            if choices and self.logprobs:
                payload.update(logprobs=True, top_logprobs=self.top_logprobs)
            status, body = self._post(payload)
            if status != 400:
                break
            # Drop what the server does not support, one extension at a time, then ask again.
            if "logprobs" in payload and (not prefilled or "logprob" in str(body).lower()):
                self.logprobs = False
            elif prefilled:
                self.prefill = False
            else:
                break
        if status != 200:
            return VLMResponse(error=f"HTTP {status}: {str(body)[:200]}")
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError):
            return VLMResponse(error=f"malformed response: {str(body)[:200]}")
        usage = body.get("usage") or {}
        response = VLMResponse(
            text=request.answer_prefix + text if prefilled else text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            image_tokens=sum(_estimated_image_tokens(image) for image in request.images),
            extra={"prefilled": prefilled},
        )
        if choices:
            probs = _choice_probs(choice.get("logprobs"), choices, prefilled)
            if probs is not None:
                response.choice_probs, response.choice_mass = normalise_choices(probs, choices)
        return response

    def _post(self, payload: dict) -> tuple[int, dict | str]:
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * 2**attempt
            try:
                reply = self.client.post(f"{self.base_url}/chat/completions", json=payload)
            except self._http_errors as err:
                last = f"{type(err).__name__}: {err}"
            else:
                if reply.status_code not in RETRY_STATUS:
                    try:
                        return reply.status_code, reply.json()
                    except ValueError:
                        return reply.status_code, reply.text
                last = f"HTTP {reply.status_code}"
                wait = _retry_after(reply.headers.get("retry-after"), wait)
            if attempt < self.max_retries:
                time.sleep(min(wait, 30.0))
        raise BackendUnavailable(
            f"{self.base_url} did not answer after {self.max_retries + 1} attempts ({last}); "
            "is the server running? (e.g. `vllm serve <model>`; pass its URL with --base-url)"
        )


def _retry_after(header: str | None, default: float) -> float:
    try:
        return float(header) if header else default
    except ValueError:
        return default


def _choice_probs(logprobs: dict | None, choices: tuple[str, ...], prefilled: bool) -> dict[str, float] | None:
    """Probabilities of the choices at the score token: the first generated token after a
    prefill, else the first choice token that follows 'ANSWER'."""
    if not logprobs or not logprobs.get("content"):
        return None
    seen = ""
    for entry in logprobs["content"]:
        token = entry.get("token", "")
        if prefilled or (token.strip() in choices and "answer" in seen.lower()):
            probs: dict[str, float] = {}
            for alternative in entry.get("top_logprobs") or [entry]:
                key = alternative.get("token", "").strip()
                if key in choices:
                    probs[key] = probs.get(key, 0.0) + math.exp(alternative.get("logprob", -math.inf))
            return probs
        seen += token
    return None


def _estimated_image_tokens(image) -> int:
    from qwen_vl_utils.vision_process import smart_resize

    height, width = image.shape[:2]
    resized_height, resized_width = smart_resize(height, width, factor=ESTIMATE_FACTOR)
    return (resized_height // ESTIMATE_FACTOR) * (resized_width // ESTIMATE_FACTOR)

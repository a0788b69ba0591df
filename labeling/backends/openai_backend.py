"""Any OpenAI-compatible chat server: `vllm serve`, SGLang, Ollama, hosted APIs.

Sends `/chat/completions` with images as PNG data URLs, a bounded number of requests at
once, and retries 429 / 5xx / connection errors with exponential backoff (honouring
Retry-After). Before any real request, a preflight asks `/models` what the server serves
under the model's name and sends one tiny completion: a refused API key (401/403) or an
unknown model (404) ends the run there, in one line, as it does at any later request.

Three request features are optional. Each is dropped, for the rest of the run, only when a
400's message names it; the preflight finds out before any real request, so a run's answers
are asked with one feature set, and each is cached under the features it was asked with:
- `max_completion_tokens` (else the older `max_tokens`);
- the prefill: a request's `answer_prefix` is sent as a final assistant message that the
  model continues (`continue_final_message`, `add_generation_prompt: false`: vLLM's and
  SGLang's chat extensions), so the server is asked exactly what the in-process backends
  ask; without it the model writes `ANSWER: k` itself, which the parser and the logprob
  reader both accept;
- `logprobs`: the score distribution is read from the `top_logprobs` of the first generated
  token after a prefill, else of the first 1-5 digit after `ANSWER:`; without them the text
  is parsed.
Any other 400 (context too long, too many images) is that request's error, never retried.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

from labeling.backends.base import (SCORE_CHOICES, BackendUnavailable, SamplingParams, VLMBackend, VLMRequest,
                                    VLMResponse, normalise_choices, png_data_url)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
# Optional request features, by the request arguments whose name in a 400's message drops them.
FEATURES = {
    "max_completion_tokens": ("max_completion_tokens",),
    "prefill": ("continue_final_message", "add_generation_prompt"),
    "logprobs": ("logprobs",),  # top_logprobs too
}
# What a served name stands for, as vLLM's /models reports it (the checkpoint, a LoRA's base,
# the context length); `created` and `permission` change with every request, so they are left out.
MODEL_CARD_FIELDS = ("root", "parent", "max_model_len")
PREFLIGHT = VLMRequest(prompt="Reply with exactly one line: ANSWER: 1", answer_prefix="ANSWER: ")
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
        self.features = set(FEATURES)  # those the server refuses are removed
        key = api_key or os.environ.get("OPENAI_API_KEY", "EMPTY")
        self.client = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {key}"})
        self._http_errors = (httpx.TransportError,)
        self.served = self._served_model()
        self._complete(PREFLIGHT, SamplingParams(max_tokens=1, choices=SCORE_CHOICES))

    def identity(self) -> dict:
        return self._identity(self.features)

    def _identity(self, features: set[str]) -> dict:
        """The served name and what the server says is behind it; where it says nothing more
        than the name, the server itself (base URL). `max_tokens` and `max_completion_tokens`
        ask for the same answer, so only the prefill and logprobs are keyed."""
        return {"backend": self.name, "model": self.model, "served": self.served or {"base_url": self.base_url},
                "top_logprobs": self.top_logprobs, "features": sorted(features - {"max_completion_tokens"})}

    def describe(self) -> dict:
        return {**self.identity(), "base_url": self.base_url}

    def _generate_text(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        return self._map(requests, params)

    def _score_choices(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        return self._map(requests, params)

    def _map(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            return list(pool.map(lambda r: self._complete(r, params), requests))

    def _served_model(self) -> dict:
        """The server's card for `self.model` (GET /models); {} from a server without the endpoint."""
        status, body = self._send("GET", "/models")
        if status != 404:  # no endpoint; a wrong --base-url or model is caught by the preflight completion
            self._refuse_fatal(status, body)
        cards = body.get("data") if isinstance(body, dict) else None
        if status != 200 or not isinstance(cards, list):
            return {}
        card = next((c for c in cards if isinstance(c, dict) and c.get("id") == self.model), None)
        if card is None:
            served = ", ".join(sorted(str(c.get("id")) for c in cards if isinstance(c, dict))) or "nothing"
            raise BackendUnavailable(f"{self.base_url} serves no model '{self.model}' (it serves: {served}); "
                                     "pass the served name with --model")
        return {field: card[field] for field in MODEL_CARD_FIELDS if card.get(field) is not None}

    def _complete(self, request: VLMRequest, params: SamplingParams) -> VLMResponse:
        """One chat completion; with `params.choices`, also asks for the first token's top logprobs."""
        choices = params.choices or ()
        content = [{"type": "image_url", "image_url": {"url": png_data_url(image)}} for image in request.images]
        content.append({"type": "text", "text": request.prompt})
        while True:
            features = set(self.features)  # what this request is asked with, whatever other threads learn
            used = {"max_completion_tokens"} & features
            payload = {"model": self.model, "messages": [{"role": "user", "content": content}],
                       "max_completion_tokens" if used else "max_tokens": params.max_tokens,
                       "temperature": params.temperature, "seed": params.seed}
            if request.answer_prefix and "prefill" in features:
                used.add("prefill")
                payload["messages"].append({"role": "assistant", "content": request.answer_prefix})
                payload.update(continue_final_message=True, add_generation_prompt=False)
            if choices and "logprobs" in features:
                used.add("logprobs")
                payload.update(logprobs=True, top_logprobs=self.top_logprobs)
            status, body = self._send("POST", "/chat/completions", payload)
            self._refuse_fatal(status, body)
            refused = _named(_message(body), used) if status == 400 else set()
            if len(refused) != 1:  # a message naming several echoes the request: not about a feature
                break
            self.features -= refused
        identity = self._identity(features)
        if status != 200:
            return VLMResponse(error=f"HTTP {status}: {_message(body)[:200]}", identity=identity)
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError):
            return VLMResponse(error=f"malformed response: {str(body)[:200]}", identity=identity)
        prefilled = "prefill" in used
        usage = body.get("usage") or {}
        response = VLMResponse(
            text=request.answer_prefix + text if prefilled else text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            image_tokens=sum(_estimated_image_tokens(image) for image in request.images),
            identity=identity,
            extra={"prefilled": prefilled},
        )
        if choices:
            probs = _choice_probs(choice.get("logprobs"), choices, prefilled)
            if probs is not None:
                response.choice_probs, response.choice_mass = normalise_choices(probs, choices)
        return response

    def _refuse_fatal(self, status: int, body: dict | str) -> None:
        """A refused key or an unknown model fails every request alike: end the run at once."""
        if status in (401, 403):
            raise BackendUnavailable(f"{self.base_url} refused the API key (HTTP {status}: {_message(body)[:200]}); "
                                     "set OPENAI_API_KEY")
        if status == 404:
            raise BackendUnavailable(f"{self.base_url} has no model '{self.model}' (HTTP 404: {_message(body)[:200]}); "
                                     "check --model (the served name) and --base-url (ending in /v1)")

    def _send(self, method: str, path: str, payload: dict | None = None) -> tuple[int, dict | str]:
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * 2**attempt
            try:
                reply = self.client.request(method, f"{self.base_url}{path}", json=payload)
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


def _message(body: dict | str) -> str:
    """The server's error message (OpenAI: {"error": {"message"}}; vLLM: {"message"}), else the body."""
    if isinstance(body, dict):
        error = body.get("error")
        for found in (error.get("message") if isinstance(error, dict) else error, body.get("message"),
                      body.get("detail")):
            if isinstance(found, str) and found:
                return found
    return str(body)


def _named(message: str, features: set[str]) -> set[str]:
    """The features among `features` whose request arguments `message` names."""
    message = message.lower()
    return {feature for feature in features if any(argument in message for argument in FEATURES[feature])}


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

"""The backend interface and the records that cross it, in the shape of vLLM's
`LLM.generate(prompts, SamplingParams)`: a request carries what is asked (images, prompt, the
start of the answer), the sampling parameters carry how it is answered (length, temperature,
seed, and the allowed choices when probabilities are wanted instead of text)."""

from __future__ import annotations

import base64
import hashlib
import io
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from common.cli import UserError
from common.scale import SCORES

SCORE_CHOICES = tuple(str(score) for score in SCORES)  # the answer tokens whose probabilities are read


class BackendUnavailable(UserError, RuntimeError):
    """The model or server cannot be used at all (not installed, not found, unreachable)."""


@dataclass(frozen=True)
class VLMRequest:
    prompt: str
    images: tuple[np.ndarray, ...] = ()  # uint8 (H, W, 3), shown before the prompt, in order
    answer_prefix: str = ""  # the answer starts with this; prefilled where the backend allows


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings shared by one `generate` call's requests (names as in vLLM's)."""

    max_tokens: int = 48
    temperature: float = 0.0  # 0: greedy
    seed: int = 0
    # Read the probabilities of these answers as the next token after the answer prefix,
    # instead of generating text (a backend that cannot read them generates text).
    choices: tuple[str, ...] | None = None


@dataclass
class VLMResponse:
    text: str | None = None
    choice_probs: dict[str, float] | None = None  # over the requested choices, summing to 1
    choice_mass: float | None = None  # the choices' share of the whole next-token distribution
    prompt_tokens: int = 0
    image_tokens: int = 0
    error: str | None = None  # why there is no answer (HTTP status, malformed reply): never asked again
    # The backend's identity when this request was asked, where it can change during a run
    # (an OpenAI server's refused feature): the answer is cached under it.
    identity: dict | None = None
    extra: dict = field(default_factory=dict)


class VLMBackend(ABC):
    name: str
    model: str
    image_tokens_measured: bool = True  # False when image tokens are estimated, not counted
    batch_size: int = 1

    def generate(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        """One response per request: with `params.choices`, the probabilities of each choice
        (`choice_probs`; None with the generated text where they cannot be read, for the caller
        to parse); else the text answer, `answer_prefix` included."""
        if params.choices:
            return self._score_choices(requests, params)
        return self._generate_text(requests, params)

    @abstractmethod
    def _generate_text(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        """Text answers (greedy at temperature 0), `answer_prefix` included in `text`."""

    @abstractmethod
    def _score_choices(self, requests: list[VLMRequest], params: SamplingParams) -> list[VLMResponse]:
        """Probabilities of each of `params.choices` as the next token after `answer_prefix`."""

    def identity(self) -> dict:
        """Everything about this backend that changes its answers: part of every cache key."""
        return {"backend": self.name, "model": self.model}

    def describe(self) -> dict:
        """What produced the labels, for provenance: the identity and how it ran."""
        return self.identity()


def model_revision(model: str, config=None) -> str | None:
    """Which weights `model` names: for a local directory (or single weights file, as vLLM
    takes a GGUF) a fingerprint of its files (name, size, modification time); for a hub id
    the commit it was loaded at (from the loaded config, else the snapshot the hub cache
    resolves it to)."""
    path = Path(model)
    if path.exists():
        files = [path] if path.is_file() else sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
        digest = hashlib.sha256()
        for file in files:
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        return "local:" + digest.hexdigest()[:16]
    commit = getattr(config, "_commit_hash", None)
    if commit is None:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.errors import HFValidationError

        try:
            cached = try_to_load_from_cache(model, "config.json")  # .../snapshots/<commit>/config.json
        except HFValidationError:  # neither a local path nor a hub id: nothing to resolve
            cached = None
        commit = Path(cached).parent.name if isinstance(cached, str) else None
    return commit


def png_data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def normalise_choices(probs: dict[str, float], choices: tuple[str, ...]) -> tuple[dict[str, float] | None, float]:
    """Renormalise the choices' probabilities; None when the model put no mass on any."""
    mass = float(sum(probs.get(c, 0.0) for c in choices))
    if mass <= 0.0:
        return None, 0.0
    return {c: float(probs.get(c, 0.0)) / mass for c in choices}, mass

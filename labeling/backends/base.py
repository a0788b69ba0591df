"""The backend interface and the records that cross it."""

from __future__ import annotations

import base64
import hashlib
import io
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SCORE_CHOICES = ("1", "2", "3", "4", "5")


class BackendUnavailable(RuntimeError):
    """The model or server cannot be used at all (not installed, not found, unreachable)."""


@dataclass(frozen=True)
class VLMRequest:
    prompt: str
    images: tuple[np.ndarray, ...] = ()  # uint8 (H, W, 3), shown before the prompt, in order
    answer_prefix: str = ""  # the answer starts with this; prefilled where the backend allows
    max_new_tokens: int = 48
    temperature: float = 0.0
    seed: int = 0


@dataclass
class VLMResponse:
    text: str | None = None
    choice_probs: dict[str, float] | None = None  # over the requested choices, summing to 1
    choice_mass: float | None = None  # the choices' share of the whole next-token distribution
    prompt_tokens: int = 0
    image_tokens: int = 0
    error: str | None = None
    extra: dict = field(default_factory=dict)


class VLMBackend(ABC):
    name: str
    model: str
    image_tokens_measured: bool = True  # False when image tokens are estimated, not counted
    batch_size: int = 1

    @abstractmethod
    def generate(self, requests: list[VLMRequest]) -> list[VLMResponse]:
        """Text answers (greedy at temperature 0), `answer_prefix` included in `text`."""

    @abstractmethod
    def score_choices(self, requests: list[VLMRequest], choices: tuple[str, ...]) -> list[VLMResponse]:
        """Probabilities of each choice as the next token after `answer_prefix`.

        Backends that cannot read token probabilities return the generated text instead
        (`choice_probs` None), for the caller to parse.
        """

    def describe(self) -> dict:
        """What produced the labels, for provenance."""
        return {"backend": self.name, "model": self.model}


def model_revision(model: str, config=None) -> str | None:
    """Which weights `model` names: the hub commit a checkpoint was loaded at, or for a local
    directory a fingerprint of its files (name, size, modification time)."""
    path = Path(model)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json")):
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        return "local:" + digest.hexdigest()[:16]
    return getattr(config, "_commit_hash", None)


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

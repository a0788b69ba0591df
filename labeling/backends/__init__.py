"""VLM backends behind one interface, `generate(requests, SamplingParams)`: text answers, or
the probabilities of a fixed set of answers."""

from labeling.backends.base import (SCORE_CHOICES, BackendUnavailable, SamplingParams, VLMBackend, VLMRequest,
                                    VLMResponse)

BACKENDS = ("transformers", "openai", "vllm")


def make_backend(name: str, model: str, **options) -> VLMBackend:
    """Construct a backend by name; heavy imports happen only for the one chosen."""
    if name == "transformers":
        from labeling.backends.transformers_backend import TransformersBackend

        return TransformersBackend(model, **options)
    if name == "openai":
        from labeling.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(model, **options)
    if name == "vllm":
        from labeling.backends.vllm_backend import VLLMBackend

        return VLLMBackend(model, **options)
    raise ValueError(f"unknown backend '{name}'; choose from {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "SCORE_CHOICES", "BackendUnavailable", "SamplingParams", "VLMBackend", "VLMRequest",
           "VLMResponse", "make_backend"]

"""One nested configuration of a labeling run: built from the command line, saved whole as
provenance, and handed to every stage (and to every Ray replica). Each default lives here once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from common.cli import ConfigError
from labeling.calls import CallsConfig
from labeling.clips import ClipSpec
from labeling.context import LabelingContext
from labeling.progress import ProgressConfig
from labeling.records import EpisodeLabels

STAGES = ("rewrite", "progress", "negatives", "validate")
BAD_EPISODE_POLICIES = ("fail", "skip")


@dataclass(frozen=True)
class BackendConfig:
    """Which model answers, and how it is reached."""

    name: str = "transformers"  # transformers | openai | vllm
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # hub id or local checkpoint; the served name for openai
    base_urls: tuple[str, ...] = ("http://localhost:8000/v1",)  # openai; replicas spread over them
    device: str = "auto"  # transformers
    dtype: str = "auto"  # transformers, vllm
    batch_size: int = 4  # transformers: requests per forward pass
    concurrency: int = 8  # openai: requests in flight

    def options(self, views: ClipSpec, progress: ProgressConfig, replica: int = 0) -> dict:
        """Keyword arguments of `make_backend` for this backend (replica `replica` of a pool)."""
        if self.name == "transformers":
            return {"device": self.device, "dtype": self.dtype, "batch_size": self.batch_size}
        if self.name == "openai":
            return {"base_url": self.base_urls[replica % len(self.base_urls)], "concurrency": self.concurrency}
        # vLLM refuses prompts with more images than it was started for: the most any stage sends.
        return {"dtype": self.dtype, "max_images": progress.context_frames * views.images_per_frame()}


@dataclass(frozen=True)
class RewriteConfig:
    paraphrases: int = 2


@dataclass(frozen=True)
class NegativesConfig:
    counterfactuals: int = 3  # alternative instructions proposed per episode (described from
    # progress.context_frames frames, so one vLLM image limit covers every stage)


@dataclass(frozen=True)
class ValidationConfig:
    fraction: float = 0.2  # share of each episode's scored keyframes re-checked


@dataclass(frozen=True)
class OutcomeConfig:
    """Each labeled episode's verdict, decided from its labels: success when the expected score
    of its last frame reaches `success_min_final_expected`. The default 3.5 is where the label
    rounds to 4 (Near Completion) or 5: an episode that ends nearly or fully done. Consumers use
    the verdict (`common.label_files.read_outcomes`): failures are not imitated and give no negatives."""

    success_min_final_expected: float = 3.5

    def __post_init__(self):
        if not 1.0 <= self.success_min_final_expected <= 5.0:
            raise ConfigError("success_min_final_expected must be on the 1-5 scale, "
                              f"got {self.success_min_final_expected}")

    def succeeded(self, label: EpisodeLabels) -> bool:
        return bool(label.expected[-1] >= self.success_min_final_expected - 1e-9)


@dataclass(frozen=True)
class LabelingConfig:
    backend: BackendConfig = field(default_factory=BackendConfig)
    views: ClipSpec = field(default_factory=lambda: ClipSpec(cameras=()))
    progress: ProgressConfig = field(default_factory=ProgressConfig)
    rewrite: RewriteConfig = field(default_factory=RewriteConfig)
    negatives: NegativesConfig = field(default_factory=NegativesConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    stages: tuple[str, ...] = STAGES
    episodes_per_group: int = LabelingContext.episodes_per_group
    on_bad_episode: str = "fail"  # an unreadable episode ends the run, or is skipped and recorded

    def __post_init__(self):
        unknown = set(self.stages) - set(STAGES)
        if unknown:
            raise ConfigError(f"unknown stage(s) {sorted(unknown)}; choose from {', '.join(STAGES)}")
        if "progress" not in self.stages:
            raise ConfigError("the progress stage produces the labels and cannot be left out")
        if self.on_bad_episode not in BAD_EPISODE_POLICIES:
            raise ConfigError(f"on_bad_episode must be one of {BAD_EPISODE_POLICIES}, got '{self.on_bad_episode}'")

    def as_dict(self) -> dict:
        return asdict(self)


def parse_stages(spec: str) -> tuple[str, ...]:
    """'progress,rewrite' -> ('rewrite', 'progress'): the stages named, in the order they run."""
    named = [s.strip() for s in spec.split(",") if s.strip()]
    return tuple(s for s in STAGES if s in named) + tuple(sorted(set(named) - set(STAGES)))

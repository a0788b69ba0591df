"""One nested configuration of a labeling run: built from the command line, saved whole as
provenance, and handed to every stage (and to every Ray replica). Each default lives here once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from common.cli import ConfigError
from common.options import option
from labeling.backends import BACKENDS
from labeling.calls import CallsConfig
from labeling.clips import ClipSpec
from labeling.context import LabelingContext
from labeling.progress import ProgressConfig
from labeling.records import EpisodeLabels

STAGES = ("rewrite", "progress", "negatives", "validate")
BAD_EPISODE_POLICIES = ("fail", "skip")


def parse_stages(spec: str) -> tuple[str, ...]:
    """'progress,rewrite' -> ('rewrite', 'progress'): the stages named, in the order they run."""
    named = [s.strip() for s in spec.split(",") if s.strip()]
    return tuple(s for s in STAGES if s in named) + tuple(sorted(set(named) - set(STAGES)))


@dataclass(frozen=True)
class BackendConfig:
    """Which model answers, and how it is reached."""

    name: str = option("transformers", flag="--backend", choices=BACKENDS, help="what answers the requests")
    model: str = option("Qwen/Qwen2.5-VL-7B-Instruct",
                        help="hub id or local checkpoint (transformers/vllm); served name (openai)")
    base_urls: tuple[str, ...] = option(("http://localhost:8000/v1",), flag="--base-url",
                                        help="OpenAI-compatible server(s) (--backend openai); Ray replicas are "
                                             "spread over several")
    device: str = option("auto", help="transformers: auto, cpu, cuda, cuda:1")
    dtype: str = option("auto", help="transformers, vllm: auto, float32, bfloat16, float16")
    batch_size: int = option(4, help="transformers: requests per forward pass")
    concurrency: int = option(8, help="openai: requests in flight")

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
    paraphrases: int = option(2, help="paraphrases of each rewritten instruction")


@dataclass(frozen=True)
class NegativesConfig:
    # Described from progress.context_frames frames, so one vLLM image limit covers every stage.
    counterfactuals: int = option(3, help="alternative instructions proposed per episode")


@dataclass(frozen=True)
class ValidationConfig:
    fraction: float = option(0.2, flag="--validate-fraction", help="share of each episode's scored keyframes "
                                                                   "re-checked by validation")


@dataclass(frozen=True)
class OutcomeConfig:
    """Each labeled episode's verdict, decided from its labels: success when the expected score
    of its last frame reaches `success_min_final_expected`. The default 3.5 is where the label
    rounds to 4 (Near Completion) or 5: an episode that ends nearly or fully done. Consumers use
    the verdict (`common.label_files.read_outcomes`): failures are not imitated and give no negatives."""

    success_min_final_expected: float = option(3.5, help="an episode succeeds when its last frame's expected score "
                                                         "reaches this (1-5); failures are not imitated by RewACT "
                                                         "and give no negatives")

    def __post_init__(self):
        if not 1.0 <= self.success_min_final_expected <= 5.0:
            raise ConfigError("success_min_final_expected must be on the 1-5 scale, "
                              f"got {self.success_min_final_expected}")

    def succeeded(self, label: EpisodeLabels) -> bool:
        return bool(label.expected[-1] >= self.success_min_final_expected - 1e-9)


@dataclass(frozen=True)
class LabelingConfig:
    backend: BackendConfig = field(default_factory=BackendConfig)
    views: ClipSpec = field(default_factory=ClipSpec)
    progress: ProgressConfig = field(default_factory=ProgressConfig)
    rewrite: RewriteConfig = field(default_factory=RewriteConfig)
    negatives: NegativesConfig = field(default_factory=NegativesConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    stages: tuple[str, ...] = STAGES  # from --stages, or the stages the model declares (labeling.run)
    episodes_per_group: int = option(LabelingContext.episodes_per_group, help="episodes decoded and batched together")
    on_bad_episode: str = option("fail", choices=BAD_EPISODE_POLICIES,
                                 help="an episode whose frames cannot be read: end the run, or leave it unlabeled "
                                      "and record why")

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


"""The stages in order, for whichever episodes a context holds: all of them in-process, or
one at a time on a Ray replica. Both executors run exactly this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from common.cli import RunFailed
from labeling.config import LabelingConfig
from labeling.context import LabelingContext
from labeling.negatives import counterfactuals, temporal_clips
from labeling.progress import score_progress, too_few_readable
from labeling.records import EpisodeLabels, NegativeRecord, TaskRewrite, Verdict
from labeling.rewrite import rewrite_tasks, unchanged_tasks
from labeling.validate import mark_unverified, validate_negatives, validate_progress


@dataclass
class LabeledEpisodes:
    labels: dict[int, EpisodeLabels] = field(default_factory=dict)
    outcomes: dict[int, bool] = field(default_factory=dict)  # labeled episode -> success (OutcomeConfig)
    negatives: list[NegativeRecord] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    # episode -> why it got no labels: its frames could not be read, or too few answers could
    skipped: dict[int, str] = field(default_factory=dict)

    def add(self, other: LabeledEpisodes) -> None:
        self.labels.update(other.labels)
        self.outcomes.update(other.outcomes)
        self.negatives += other.negatives
        self.verdicts += other.verdicts
        self.skipped.update(other.skipped)


def rewrites(ctx: LabelingContext, config: LabelingConfig) -> dict[str, TaskRewrite]:
    if "rewrite" in config.stages:
        return rewrite_tasks(ctx, config.rewrite.paraphrases)
    return unchanged_tasks(ctx)


def label_episodes(ctx: LabelingContext, config: LabelingConfig, instructions: dict[int, str],
                   after_progress: Callable[[dict[int, EpisodeLabels]], None] | None = None) -> LabeledEpisodes:
    """Each step uses the labels as the steps before left them: progress; episodes with too few
    readable answers left unlabeled; validation of a sample of keyframes (a relabel refills its
    episode); the outcome verdict from the final labels; negatives from successful episodes only;
    validation of the negatives. Nothing of a skipped episode is kept.
    `after_progress` sees the labels before any further call is spent (e.g. to fail early)."""
    labels = score_progress(ctx, instructions, config.progress)
    if after_progress is not None:
        after_progress(labels)
    for episode, label in labels.items():
        reason = too_few_readable(label, config.progress.min_readable_keyframes)
        if reason is not None:
            ctx.skipped[episode] = reason
    labels = {e: label for e, label in labels.items() if e not in ctx.skipped}
    verdicts = []
    if "validate" in config.stages:
        verdicts += validate_progress(ctx, labels, config.validation.fraction, config.progress)
    outcomes = {e: config.outcome.succeeded(label) for e, label in labels.items()}
    negatives = []
    if "negatives" in config.stages:
        successes = {e: label for e, label in labels.items() if outcomes[e]}
        negatives = temporal_clips(successes) + counterfactuals(ctx, successes, config.negatives.counterfactuals,
                                                                config.progress.context_frames)
    if "validate" in config.stages:
        verdicts += validate_negatives(ctx, negatives, config.progress)
    mark_unverified(negatives)
    kept = [e for e in labels if e not in ctx.skipped]
    return LabeledEpisodes({e: labels[e] for e in kept}, {e: outcomes[e] for e in kept},
                           [n for n in negatives if n.episode not in ctx.skipped],
                           [v for v in verdicts if v.episode not in ctx.skipped], dict(ctx.skipped))


def check_not_all_skipped(result: LabeledEpisodes, episodes: list[int]) -> None:
    if result.skipped and len(result.skipped) == len(episodes):
        episode, reason = next(iter(result.skipped.items()))
        raise RunFailed(f"every episode was unreadable (episode {episode}: {reason}); nothing was written")

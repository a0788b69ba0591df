"""`labeling.run --executor ray`: label on a Ray cluster, one actor per replica.

Each replica is a Ray actor that opens the dataset and holds one backend (transformers on its
GPU, a vLLM engine, or an OpenAI client for one of several servers). Episodes are the unit of
work: a replica decodes an episode, builds its requests and scores it through the same
`labeling.pipeline` as an in-process run, so frames never travel through the driver. The
driver streams each finished episode's labels and raw answers back into the run's cache (the
same SQLite format), then writes the output once, like an in-process run.

Faults: a replica that dies is restarted by Ray and its episode retried (`max_restarts`,
`max_task_retries`). A driver killed mid-run resumes on the next run: each episode is sent
with the cached answers of its earlier attempt, so a finished episode costs no model call.
Ray Core actors rather than Ray Data: results stream back to one writer in episode units,
which is what the cache, the resume and the output need.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from common.cli import ConfigError, error_line
from common.dataset import EpisodeSource
from common.options import option
from labeling.backends import BackendUnavailable, make_backend
from labeling.calls import CallCache, CallStats, MissingBudget, ModelCaller
from labeling.config import LabelingConfig
from labeling.context import LabelingContext
from labeling.pipeline import LabeledEpisodes, label_episodes, rewrites
from labeling.prompts import PromptLibrary
from labeling.records import TaskRewrite

RAY_MISSING = ("--executor ray needs Ray, which is not installed here: "
               "pip install 'reward-labeling[ray]' (ray[data]==2.60.0)")
RESTARTS = 3  # per replica, and retries per episode after a replica died


@dataclass(frozen=True)
class RayOptions:
    address: str | None = option(None, flag="--ray-address", help="Ray cluster to join ('auto' after `ray start`; "
                                                                  "default: start a local one)")
    replicas: int = option(1, help="ray: backends labeling episodes in parallel")
    gpus_per_replica: float = option(0.0, help="ray: GPUs each replica reserves")
    cpus_per_replica: float = option(1.0, help="ray: CPUs each replica reserves")

    def __post_init__(self):
        if self.replicas < 1:
            raise ConfigError(f"--replicas must be >= 1, got {self.replicas}")


@dataclass
class EpisodeResult:
    episode: int
    labeled: LabeledEpisodes
    calls: list[tuple[str, str, dict, int | None]]  # the episode's new answers, as cache rows
    stats: CallStats
    replica: int


@dataclass
class RayRun:
    labeled: LabeledEpisodes
    rewrites: dict[str, TaskRewrite]
    stats: CallStats
    backend: dict  # the replicas' backend.describe()
    image_tokens_measured: bool
    episodes_by_replica: dict[int, int] = field(default_factory=dict)


class LabelingReplica:
    """One backend and the dataset, on one worker; labels the episodes it is sent."""

    def __init__(self, dataset: str, revision: str | None, config: LabelingConfig, prompts_dir: str, replica: int):
        self.replica = replica
        self.config = config
        self.source = EpisodeSource.open(dataset, revision)
        self.prompts = PromptLibrary(prompts_dir)
        options = config.backend.options(config.views, config.progress, replica)
        self.backend = make_backend(config.backend.name, config.backend.model, **options)

    def describe(self) -> tuple[dict, bool]:
        return self.backend.describe(), self.backend.image_tokens_measured

    def _context(self, episodes: list[int], cached: list) -> tuple[LabelingContext, CallCache]:
        cache = CallCache(":memory:")
        cache.put_many(cached)
        caller = ModelCaller(self.backend, cache, self.config.calls.max_retries, progress=False,
                             retry_temperature=self.config.calls.retry_temperature)
        ctx = LabelingContext(self.source, caller, self.prompts, self.config.views, episodes,
                              skip_bad_episodes=self.config.on_bad_episode == "skip")
        return ctx, cache

    def rewrite(self, episodes: list[int], cached: list) -> tuple[dict[str, TaskRewrite], list, CallStats]:
        ctx, cache = self._context(episodes, cached)
        return rewrites(ctx, self.config), _new_rows(cache, cached), ctx.caller.stats

    def label(self, episode: int, instruction: str, cached: list) -> EpisodeResult:
        ctx, cache = self._context([episode], cached)
        labeled = label_episodes(ctx, self.config, {episode: instruction})
        return EpisodeResult(episode, labeled, _new_rows(cache, cached), ctx.caller.stats, self.replica)


def _new_rows(cache: CallCache, seeded: list) -> list:
    """The answers a replica added to what it was sent: only these go back to the driver."""
    known = {row[0] for row in seeded}
    return [row for row in cache.rows() if row[0] not in known]


def run_on_ray(dataset: str, revision: str | None, config: LabelingConfig, prompts_dir: Path, episodes: list[int],
               cache: CallCache, options: RayOptions, budget: MissingBudget, progress: bool = True) -> RayRun:
    """`budget` is judged on every finished episode's progress answers, as they stream in."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as err:
        raise BackendUnavailable(RAY_MISSING) from err
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    try:
        remote = ray.remote(LabelingReplica).options(
            num_cpus=options.cpus_per_replica, num_gpus=options.gpus_per_replica,
            max_restarts=RESTARTS, max_task_retries=RESTARTS)
        replicas = [remote.remote(dataset, revision, config, str(prompts_dir), i) for i in range(options.replicas)]
        try:
            backend, measured = ray.get(replicas[0].describe.remote())
        except ray.exceptions.RayActorError as err:
            cause = error_line(err, last=True)[:300]
            raise BackendUnavailable(f"a replica could not start its backend: {cause}") from err
        stats = CallStats()
        task_rewrites, rows, rewrite_stats = ray.get(replicas[0].rewrite.remote(episodes, cache.rows_of(None)))
        cache.put_many(rows)
        stats.add(rewrite_stats)
        source = EpisodeSource.open(dataset, revision)
        instructions = {e: task_rewrites[source.episode(e).task].instruction for e in episodes}

        pool = ActorPool(replicas)
        for episode in episodes:
            pool.submit(lambda actor, e: actor.label.remote(e, instructions[e], cache.rows_of(e)), episode)
        labeled, by_replica = LabeledEpisodes(), {}
        started = time.perf_counter()
        with tqdm(total=len(episodes), desc=f"episodes ({options.replicas} replicas)", unit="episode",
                  disable=not progress) as bar:
            while pool.has_next():
                result: EpisodeResult = pool.get_next_unordered()
                cache.put_many(result.calls)  # streamed: a killed driver keeps every finished episode
                labeled.add(result.labeled)
                stats.add(result.stats)
                budget.record(budget.stage, [k.reason or "unknown" if k.expected is None else None
                                             for label in result.labeled.labels.values()
                                             for k in label.keyframes.values()])
                budget.check()
                by_replica[result.replica] = by_replica.get(result.replica, 0) + 1
                bar.update(1)
                bar.set_postfix(calls=stats.model_calls, cached=stats.cached_calls,
                                eps=f"{bar.n / (time.perf_counter() - started):.2f}/s")
        budget.check(final=True)
        return RayRun(labeled, task_rewrites, stats, backend, measured, dict(sorted(by_replica.items())))
    finally:
        if started_here:
            ray.shutdown()

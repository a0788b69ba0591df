"""Every model call goes through here: resume cache, retry of unreadable answers, counters.

A call's cache key is derived here, from everything that determines the answer: the
rendered prompt, the answer prefix, the pixels of every image, the sampling parameters (with
the choices whose probabilities were read), the backend's identity (model, revision and
whatever else of its own changes answers), and the cache format.
So an edited prompt or rubric, another image size or camera layout, or another model can
never be served an old answer. The cache holds raw answers (text and score probabilities),
and they are parsed when read, so a parser fix reaches cached answers too. A request the
backend answered with an error is neither stored nor asked again with a format reminder:
the model never sees a transport or HTTP error. Answers are committed to SQLite as each
batch returns, so a run killed at any point resumes without repeating a finished call.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common.cli import RunFailed
from common.options import option
from labeling.backends import SamplingParams, VLMBackend, VLMRequest, VLMResponse

CACHE_VERSION = 3
RETRY_NOTE = "\n\nYour previous reply could not be used ({reason}). Reply exactly in the format asked for."
# (value, reason): the parsed value, or None and why not.
Parser = Callable[[str | None], tuple[Any, str | None]]


@dataclass(frozen=True)
class CallsConfig:
    """How answers are asked for, retried and judged."""

    max_retries: int = option(2, help="re-asks of an unreadable answer, with a format reminder")
    retry_temperature: float = 0.7  # greedy decoding would repeat the unreadable answer
    max_missing: float = option(0.5, help="fail (exit 1, nothing written) when more than this share of progress "
                                          "answers is unreadable")
    # Progress answers after which the running share is judged, so a model or server that
    # answers nothing readable ends the run early; fewer would let a few bad first answers do it.
    missing_sample: int = 50


@dataclass(frozen=True)
class Job:
    about: dict  # what the call is about (episode, frames, ...), for the stage's bookkeeping
    request: VLMRequest


@dataclass(frozen=True)
class StageRequests:
    """What one stage would send: its jobs and the sampling parameters they share. Stages build
    these apart from running them, so `--dry-run` shows exactly what a run would send."""

    stage: str
    prompt: str  # the prompt file's name
    jobs: list[Job]
    params: SamplingParams


@dataclass
class CallResult:
    value: Any = None
    reason: str | None = None  # why `value` is None
    text: str | None = None
    probs: list[float] | None = None  # over 1..5, when read from token probabilities
    attempts: int = 0
    prompt_tokens: int = 0
    image_tokens: int = 0
    cached: bool = False  # the last answer came from the resume cache
    failed: bool = False  # the backend answered with an error, not the model: never asked again

    @property
    def expected(self) -> float | None:
        """Expected score under `probs`, else the parsed score."""
        if self.probs is not None:
            return float(sum(p * (k + 1) for k, p in enumerate(self.probs)))
        return float(self.value) if isinstance(self.value, int) else None


# Where a run's wall time goes: decoding frames (and resizing them), the backend's calls,
# filling labels between keyframes, writing the output.
PHASES = ("decode", "model", "fill", "write")


@dataclass
class CallStats:
    """A run's counters: calls, tokens, missing answers, and wall seconds per phase."""

    model_calls: int = 0  # requests sent to the backend by this run, retries included
    cached_calls: int = 0  # answers taken from the resume cache
    failed_calls: int = 0  # requests the backend answered with an error
    retries: int = 0
    prompt_tokens: int = 0
    image_tokens: int = 0
    missing: Counter = field(default_factory=Counter)  # unusable final answers, by reason
    by_stage: Counter = field(default_factory=Counter)  # model calls per stage
    image_tokens_by_stage: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)  # wall seconds by phase (PHASES); Ray: replicas added up

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Adds the wall time of the `with` block to `phase`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - start

    def add(self, other: CallStats) -> None:
        """Fold in another caller's counts (a Ray replica's, per episode)."""
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict:
        data = asdict(self)
        for key in ("missing", "by_stage", "image_tokens_by_stage", "seconds"):
            data[key] = dict(getattr(self, key))
        return data


def request_material(request: VLMRequest, params: SamplingParams) -> dict:
    """What of a request determines its answer: text, images' pixels, sampling parameters."""
    return {
        "prompt": request.prompt, "answer_prefix": request.answer_prefix, "sampling": asdict(params),
        "images": [hashlib.sha256(image.tobytes()).hexdigest() + f":{'x'.join(map(str, image.shape))}:{image.dtype}"
                   for image in request.images],
    }


class CallCache:
    """Append-only SQLite store of finished calls (WAL: safe against a killed process).

    Rows are (key, stage, raw answer, episode): the episode (None for per-task calls) lets a
    Ray replica be sent the answers of the one episode it labels. `:memory:` keeps no file.
    """

    def __init__(self, path: str | Path):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(str(path))
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, stage TEXT, value TEXT, episode INTEGER)")
        columns = {row[1] for row in self.connection.execute("PRAGMA table_info(calls)")}
        if "episode" not in columns:  # a cache written before answers were filed by episode
            self.connection.execute("ALTER TABLE calls ADD COLUMN episode INTEGER")
        self.connection.commit()

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        found = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self.connection.execute(
                f"SELECT key, value FROM calls WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update({key: json.loads(value) for key, value in rows})
        return found

    def put_many(self, rows: list[tuple[str, str, dict, int | None]]) -> None:
        self.connection.executemany(
            "INSERT OR REPLACE INTO calls (key, stage, value, episode) VALUES (?, ?, ?, ?)",
            [(key, stage, json.dumps(value), episode) for key, stage, value, episode in rows],
        )
        self.connection.commit()

    def rows(self) -> list[tuple[str, str, dict, int | None]]:
        return self._select("", ())

    def rows_of(self, episode: int | None) -> list[tuple[str, str, dict, int | None]]:
        """The answers about one episode; None: those about no episode (per-task calls)."""
        if episode is None:
            return self._select("WHERE episode IS NULL", ())
        return self._select("WHERE episode = ?", (int(episode),))

    def _select(self, where: str, values: tuple) -> list[tuple[str, str, dict, int | None]]:
        query = f"SELECT key, stage, value, episode FROM calls {where}"
        return [(key, stage, json.loads(value), episode) for key, stage, value, episode in
                self.connection.execute(query, values)]

    def count(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self.connection.close()


class MissingBudget:
    """Ends a run once too many progress answers are unreadable, judged as they arrive: the
    running share once `sample` answers are in, the whole share when the stage is done."""

    stage = "progress"

    def __init__(self, max_missing: float, raw_answers: str | Path, sample: int = CallsConfig.missing_sample):
        self.max_missing = max_missing
        self.raw_answers = raw_answers  # where the user can read them
        self.sample = sample
        self.answers = 0
        self.missing: Counter = Counter()  # reasons

    def record(self, stage: str, reasons: list[str | None]) -> None:
        """Final answers of `stage`: None for a readable one, else why it is not."""
        if stage == self.stage:
            self.answers += len(reasons)
            self.missing.update(reason for reason in reasons if reason is not None)

    def check(self, final: bool = False) -> None:
        count = sum(self.missing.values())
        if self.answers < (1 if final else self.sample) or count <= self.max_missing * self.answers:
            return
        reason, times = self.missing.most_common(1)[0]
        raise RunFailed(
            f"{count} of {'' if final else 'the first '}{self.answers} progress answers were unreadable "
            f"(most often: {reason}, {times}x), more than --max-missing {self.max_missing:g}; nothing was written. "
            f"The raw answers are in {self.raw_answers} (table calls); check the model and server "
            "(does it follow the prompt? return logprobs?)"
        )


class ModelCaller:
    def __init__(self, backend: VLMBackend, cache: CallCache, max_retries: int = CallsConfig.max_retries,
                 progress: bool = True, retry_temperature: float = CallsConfig.retry_temperature,
                 budget: MissingBudget | None = None):
        self.backend = backend
        self.cache = cache
        self.max_retries = max_retries
        self.retry_temperature = retry_temperature
        self.progress = progress
        self.budget = budget  # checked after every batch of jobs
        self.stats = CallStats()

    def key(self, stage: str, request: VLMRequest, params: SamplingParams, identity: dict | None = None) -> str:
        """`identity`: the backend's as the request was asked (default: as it is now)."""
        material = {"v": CACHE_VERSION, "stage": stage, "model": identity or self.backend.identity(),
                    **request_material(request, params)}
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()

    def run(self, stage: str, jobs: list[Job], params: SamplingParams, parse: Parser,
            show_progress: bool = True) -> list[CallResult]:
        """Answer every job (`params.choices`: read their probabilities). Unreadable answers
        are asked again as text (with a format reminder, sampled) up to `max_retries` times,
        each from the cache where that exact request was answered before; a backend error is
        final."""
        requests = [job.request for job in jobs]
        episodes = [job.about.get("episode") for job in jobs]
        # Greedy decoding would repeat the unreadable answer: retries are sampled.
        retry = replace(params, choices=None, temperature=self.retry_temperature)
        results = [CallResult() for _ in jobs]
        pending = list(range(len(jobs)))
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            if attempt:
                for i in pending:
                    requests[i] = replace(requests[i], prompt=jobs[i].request.prompt + RETRY_NOTE.format(
                        reason=results[i].reason))
                self.stats.retries += len(pending)
            responses = self._responses(stage, [requests[i] for i in pending], [episodes[i] for i in pending],
                                        replace(retry, seed=attempt) if attempt else params,
                                        show_progress and not attempt)
            for i, (response, cached) in zip(pending, responses, strict=True):
                results[i] = self._read(response, parse, results[i], cached)
            pending = [i for i in pending if results[i].value is None and not results[i].failed]
        reasons = [result.reason or "unknown" if result.value is None else None for result in results]
        self.stats.missing.update(reason for reason in reasons if reason is not None)
        if self.budget is not None:
            self.budget.record(stage, reasons)
            self.budget.check()
        return results

    def _responses(self, stage: str, requests: list[VLMRequest], episodes: list[int | None], params: SamplingParams,
                   show_progress: bool) -> list[tuple[VLMResponse, bool]]:
        """(response, from cache) per request; new answers are stored unless the call failed,
        each under the backend identity it was asked with."""
        identity = self.backend.identity()
        keys = [self.key(stage, request, params, identity) for request in requests]
        hits = self.cache.get_many(keys)
        answered: list[tuple[VLMResponse, bool] | None] = [
            (VLMResponse(**hits[key]), True) if key in hits else None for key in keys]
        first_of = {}  # a request asked twice in one run is answered once
        for i, key in enumerate(keys):
            if answered[i] is None:
                first_of.setdefault(key, i)
        missing = sorted(first_of.values())
        self.stats.cached_calls += len(keys) - len(missing)
        step = max(1, self.backend.batch_size)
        with tqdm(total=len(missing), desc=stage, unit="call",
                  disable=not (self.progress and show_progress) or not missing) as bar:
            for start in range(0, len(missing), step):
                chunk = missing[start : start + step]
                batch = [requests[i] for i in chunk]
                with self.stats.timed("model"):
                    responses = self.backend.generate(batch, params)
                self._count(stage, responses)
                self.cache.put_many([
                    (self.key(stage, requests[i], params, response.identity) if response.identity else keys[i],
                     stage, _raw(response), episodes[i])
                    for i, response in zip(chunk, responses, strict=True) if response.error is None])
                for i, response in zip(chunk, responses, strict=True):
                    answered[i] = (response, False)
                bar.update(len(chunk))
        for i, key in enumerate(keys):
            if answered[i] is None:
                answered[i] = (answered[first_of[key]][0], True)
        return answered

    def _count(self, stage: str, responses) -> None:
        self.stats.model_calls += len(responses)
        self.stats.by_stage[stage] += len(responses)
        for response in responses:
            self.stats.prompt_tokens += response.prompt_tokens
            self.stats.image_tokens += response.image_tokens
            self.stats.image_tokens_by_stage[stage] += response.image_tokens
            self.stats.failed_calls += response.error is not None

    @staticmethod
    def _read(response: VLMResponse, parse: Parser, before: CallResult, cached: bool) -> CallResult:
        """Parse a raw answer; tokens and attempts add up over the retries of one job."""
        result = CallResult(text=response.text, attempts=before.attempts + 1, cached=cached,
                            prompt_tokens=before.prompt_tokens + response.prompt_tokens,
                            image_tokens=before.image_tokens + response.image_tokens)
        if response.error:
            result.reason, result.failed = f"backend error: {response.error}", True
        elif response.choice_probs is not None:
            # In the order the choices were asked; the likeliest is read by the stage's own parser.
            result.probs = list(response.choice_probs.values())
            result.value, result.reason = parse(max(response.choice_probs, key=response.choice_probs.get))
        else:
            result.value, result.reason = parse(response.text)
        return result


def _raw(response: VLMResponse) -> dict:
    """What the cache keeps of an answer: the raw text and probabilities, never a parse."""
    return {"text": response.text, "choice_probs": response.choice_probs, "choice_mass": response.choice_mass,
            "prompt_tokens": response.prompt_tokens, "image_tokens": response.image_tokens}

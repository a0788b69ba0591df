"""Every model call goes through here: resume cache, retry of unreadable answers, counters.

A call's cache key is the hash of everything that determines its answer (stage, episode,
frames, instruction, prompt file hash, backend and model). Results are committed to SQLite
as each batch returns, so a run killed at any point resumes without repeating a finished
call, and re-running a finished job calls nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from labeling.backends import SCORE_CHOICES, VLMBackend, VLMRequest

CACHE_VERSION = 1
RETRY_NOTE = "\n\nYour previous reply could not be used ({reason}). Reply exactly in the format asked for."
# (value, reason): the parsed value, or None and why not.
Parser = Callable[[str | None], tuple[Any, str | None]]


@dataclass(frozen=True)
class Job:
    key: dict  # what determines the answer, JSON-able
    request: VLMRequest


@dataclass
class CallResult:
    value: Any = None
    reason: str | None = None  # why `value` is None
    text: str | None = None
    probs: list[float] | None = None  # over 1..5, when read from token probabilities
    attempts: int = 0
    prompt_tokens: int = 0
    image_tokens: int = 0
    cached: bool = False

    @property
    def expected(self) -> float | None:
        """Expected score under `probs`, else the parsed score."""
        if self.probs is not None:
            return float(sum(p * (k + 1) for k, p in enumerate(self.probs)))
        return float(self.value) if isinstance(self.value, int) else None


@dataclass
class CallStats:
    model_calls: int = 0  # requests sent to the backend by this run, retries included
    cached_calls: int = 0  # answers taken from the resume cache
    failed_calls: int = 0  # requests the backend answered with an error
    retries: int = 0
    prompt_tokens: int = 0
    image_tokens: int = 0
    missing: Counter = field(default_factory=Counter)  # unusable final answers, by reason
    by_stage: Counter = field(default_factory=Counter)  # model calls per stage
    image_tokens_by_stage: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        data = asdict(self)
        for key in ("missing", "by_stage", "image_tokens_by_stage"):
            data[key] = dict(getattr(self, key))
        return data


class CallCache:
    """Append-only SQLite store of finished calls (WAL: safe against a killed process)."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(str(path))
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, stage TEXT, value TEXT)")
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

    def put_many(self, rows: list[tuple[str, str, dict]]) -> None:
        self.connection.executemany(
            "INSERT OR REPLACE INTO calls (key, stage, value) VALUES (?, ?, ?)",
            [(key, stage, json.dumps(value)) for key, stage, value in rows],
        )
        self.connection.commit()

    def count(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self.connection.close()


class ModelCaller:
    def __init__(self, backend: VLMBackend, cache: CallCache, max_retries: int = 2, progress: bool = True,
                 scope: dict | None = None):
        self.backend = backend
        self.scope = scope or {}  # e.g. the dataset, so one cache can serve several datasets
        self.cache = cache
        self.max_retries = max_retries
        self.progress = progress
        self.stats = CallStats()
        identity = backend.describe()
        self.identity = {k: v for k, v in identity.items() if k not in ("device", "base_url", "logprobs")}

    def key(self, stage: str, job: Job) -> str:
        material = {"v": CACHE_VERSION, "stage": stage, "model": self.identity, "scope": self.scope, **job.key}
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()

    def run(self, stage: str, jobs: list[Job], parse: Parser, scored: bool = False,
            show_progress: bool = True) -> list[CallResult]:
        """Answer every job, from the cache where possible; `scored` reads 1-5 probabilities."""
        keys = [self.key(stage, job) for job in jobs]
        hits = self.cache.get_many(keys)
        results: list[CallResult | None] = [None] * len(jobs)
        for i, key in enumerate(keys):
            if key in hits:
                results[i] = CallResult(**hits[key], cached=True)
                self.stats.cached_calls += 1
        pending = [i for i, result in enumerate(results) if result is None]
        step = max(1, self.backend.batch_size)
        with tqdm(total=len(pending), desc=stage, unit="call", disable=not (self.progress and show_progress) or not pending) as bar:
            for start in range(0, len(pending), step):
                chunk = pending[start : start + step]
                answered = self._answer([jobs[i].request for i in chunk], parse, scored, stage)
                self.cache.put_many(
                    [(keys[i], stage, _stored(result)) for i, result in zip(chunk, answered, strict=True)]
                )
                for i, result in zip(chunk, answered, strict=True):
                    results[i] = result
                bar.update(len(chunk))
        for result in results:
            if result.value is None:
                self.stats.missing[result.reason or "unknown"] += 1
        return results

    def _answer(self, requests: list[VLMRequest], parse: Parser, scored: bool, stage: str) -> list[CallResult]:
        responses = self.backend.score_choices(requests, SCORE_CHOICES) if scored else self.backend.generate(requests)
        results = [self._read(response, parse) for response in responses]
        self._count(stage, responses)
        for attempt in range(1, self.max_retries + 1):
            retry = [i for i, result in enumerate(results) if result.value is None]
            if not retry:
                break
            # Greedy decoding would repeat itself: remind the model of the format and sample.
            again = [
                replace(requests[i], prompt=requests[i].prompt + RETRY_NOTE.format(reason=results[i].reason),
                        temperature=0.7, seed=attempt)
                for i in retry
            ]
            responses = self.backend.generate(again)
            self._count(stage, responses)
            self.stats.retries += len(again)
            for i, response in zip(retry, responses, strict=True):
                result = self._read(response, parse)
                result.attempts = results[i].attempts + 1
                result.prompt_tokens += results[i].prompt_tokens
                result.image_tokens += results[i].image_tokens
                results[i] = result
        return results

    def _count(self, stage: str, responses) -> None:
        self.stats.model_calls += len(responses)
        self.stats.by_stage[stage] += len(responses)
        for response in responses:
            self.stats.prompt_tokens += response.prompt_tokens
            self.stats.image_tokens += response.image_tokens
            self.stats.image_tokens_by_stage[stage] += response.image_tokens
            self.stats.failed_calls += response.error is not None

    @staticmethod
    def _read(response, parse: Parser) -> CallResult:
        result = CallResult(text=response.text, attempts=1, prompt_tokens=response.prompt_tokens,
                            image_tokens=response.image_tokens)
        if response.error:
            result.reason = f"backend error: {response.error}"
        elif response.choice_probs is not None:
            result.probs = [response.choice_probs[c] for c in SCORE_CHOICES]
            result.value = 1 + max(range(len(result.probs)), key=result.probs.__getitem__)
        else:
            result.value, result.reason = parse(response.text)
        return result


def _stored(result: CallResult) -> dict:
    data = asdict(result)
    data.pop("cached")
    return data

"""The caller: cache keys, resume, and 30+ malformed answers through parse -> retry -> missing."""

from dataclasses import replace

import numpy as np
import pytest

from common.cli import RunFailed
from labeling.backends import SCORE_CHOICES, SamplingParams, VLMBackend, VLMRequest, VLMResponse
from labeling.calls import CallCache, Job, MissingBudget, ModelCaller
from labeling.parsing import parse_score

# first answer -> answer after the format reminder
SCRIPT = {
    "ANSWER: 7": "ANSWER: 3", "": "4", "   ": "ANSWER: 2", "ANSWER: 3.5": "ANSWER: 3", "ANSWER: 0": "nope",
    "I'm sorry, I cannot help.": "ANSWER: 1", "The arm moves.": "The arm moves.", "ANSWER: four": "ANSWER: 4",
    "score 2, or maybe score 4": "ANSWER: 4", "9": "5", "ANSWER: -1": "ANSWER: 5", "answer: ???": "???",
    "<|im_end|>": "ANSWER: 2", "!!!!": "ANSWER: 1", "Rating: 11": "Rating: 1", "12345": "ANSWER: 3",
    "ANSWER: 6/5": "ANSWER: 5", "score: 0.5": "score: 5", "As an AI, I can't.": "As an AI, I can't.",
    "Either 2 out of 5 or 3 out of 5.": "3 out of 5", "It is Partial Completion or Near Completion.": "Near Completion",
    "ANSWER:": "ANSWER: 2", "...": "ANSWER: 3", "no idea": "ANSWER: 4", "ANSWER: 55": "ANSWER: 5",
    "ANSWER: 2.5": "ANSWER: 2", "maybe": "", "ANSWER: one": "ANSWER: 1", "?": "ANSWER: 3", "—": "ANSWER: 4",
    # parse on the first attempt, no retry needed
    "**Answer:** 2": None, "I would rate this 3 out of 5.": None, "perfect completion": None,
}


class ScriptedBackend(VLMBackend):
    name, model, batch_size = "scripted", "script", 4

    def __init__(self):
        self.sent = []

    def _generate_text(self, requests, params):
        self.sent += [(request, params) for request in requests]
        answers = []
        for request in requests:
            first = request.prompt.split("\n\n")[0]
            answers.append(VLMResponse(text=first if params.temperature == 0 else SCRIPT[first], prompt_tokens=10))
        return answers

    def _score_choices(self, requests, params):
        return self._generate_text(requests, params)  # no token probabilities: the text is parsed


SCORED = SamplingParams(max_tokens=8, choices=SCORE_CHOICES)
TEXT = SamplingParams(max_tokens=8)


def parse(text):
    parsed = parse_score(text)
    return parsed.score, parsed.reason


def test_thirty_plus_malformed_answers_are_parsed_retried_or_recorded(tmp_path):
    malformed = [a for a, retry in SCRIPT.items() if retry is not None]
    assert len(malformed) >= 30
    backend = ScriptedBackend()
    caller = ModelCaller(backend, CallCache(tmp_path / "c.sqlite"), max_retries=1, progress=False)
    jobs = [Job(about={"answer": a}, request=VLMRequest(prompt=a)) for a in SCRIPT]
    results = caller.run("progress", jobs, SCORED, parse)
    by_answer = dict(zip(SCRIPT, results))
    assert by_answer["**Answer:** 2"].value == 2 and by_answer["**Answer:** 2"].attempts == 1
    assert by_answer["ANSWER: 7"].value == 3 and by_answer["ANSWER: 7"].attempts == 2
    assert by_answer["Either 2 out of 5 or 3 out of 5."].value == 3
    for answer in ("The arm moves.", "As an AI, I can't.", "ANSWER: 0", "maybe", "answer: ???"):
        assert by_answer[answer].value is None and by_answer[answer].reason, answer
    assert by_answer["As an AI, I can't."].reason == "refusal"
    missing = sum(r.value is None for r in results)
    assert caller.stats.retries == len(malformed)
    assert caller.stats.model_calls == len(SCRIPT) + len(malformed)
    assert sum(caller.stats.missing.values()) == missing == 5
    retried = [(r, params) for r, params in backend.sent if params.temperature > 0]
    assert len(retried) == len(malformed)
    assert all("could not be used" in r.prompt and params.choices is None for r, params in retried)  # as text


class FlakyBackend(ScriptedBackend):
    """Fails its first call with a transport error, like a server that is restarting."""

    failed = False

    def _generate_text(self, requests, params):
        if not self.failed:
            self.failed = True
            return [VLMResponse(error="HTTP 503") for _ in requests]
        return super()._generate_text(requests, params)


def test_an_identical_rerun_is_served_whole_from_the_cache(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    jobs = [Job(about={}, request=VLMRequest(prompt=a)) for a in SCRIPT]
    first = ModelCaller(ScriptedBackend(), cache, max_retries=1, progress=False)
    before = first.run("progress", jobs, TEXT, parse)
    again = ModelCaller(ScriptedBackend(), cache, max_retries=1, progress=False)
    after = again.run("progress", jobs, TEXT, parse)
    assert again.stats.model_calls == 0 and again.stats.cached_calls == first.stats.model_calls  # retries too
    assert [(r.value, r.reason, r.attempts) for r in after] == [(r.value, r.reason, r.attempts) for r in before]
    assert all(r.cached for r in after)


def test_the_key_changes_with_prompt_images_sampling_model_and_stage(tmp_path):
    caller = ModelCaller(ScriptedBackend(), CallCache(tmp_path / "c.sqlite"), progress=False)
    image = np.zeros((8, 16, 3), dtype=np.uint8)
    request = VLMRequest(prompt="Rubric v1. ANSWER?", images=(image,), answer_prefix="ANSWER: ")
    key = caller.key("progress", request, SCORED)
    edited = np.array(image)
    edited[0, 0, 0] = 1
    variants = [
        ("progress", VLMRequest(prompt="Rubric v2. ANSWER?", images=(image,), answer_prefix="ANSWER: "), SCORED),
        ("progress", VLMRequest(prompt=request.prompt, images=(edited,), answer_prefix="ANSWER: "), SCORED),
        ("progress", VLMRequest(prompt=request.prompt, images=(image[:4],), answer_prefix="ANSWER: "), SCORED),  # resized
        ("progress", VLMRequest(prompt=request.prompt, images=(image, image), answer_prefix="ANSWER: "), SCORED),
        ("progress", VLMRequest(prompt=request.prompt, images=(image,), answer_prefix=""), SCORED),
        ("progress", request, SamplingParams(max_tokens=8, choices=SCORE_CHOICES, temperature=0.7)),
        ("progress", request, SamplingParams(max_tokens=9, choices=SCORE_CHOICES)),
        ("progress", request, SamplingParams(max_tokens=8, choices=SCORE_CHOICES, seed=1)),
        ("progress", request, TEXT),
        ("validate", request, SCORED),
    ]
    keys = {caller.key(stage, r, params) for stage, r, params in variants}
    assert len(keys) == len(variants) and key not in keys
    assert caller.key("progress", VLMRequest(prompt=request.prompt, images=(image.copy(),),
                                             answer_prefix="ANSWER: "), SCORED) == key  # same pixels, same key
    other_model = ScriptedBackend()
    other_model.model = "script-v2"
    assert ModelCaller(other_model, caller.cache, progress=False).key("progress", request, SCORED) != key


def test_the_cache_keeps_raw_answers_so_a_new_parser_reaches_them(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    jobs = [Job(about={}, request=VLMRequest(prompt="The arm moves."))]
    first = ModelCaller(ScriptedBackend(), cache, max_retries=0, progress=False).run("progress", jobs, TEXT, parse)
    assert first[0].value is None  # the old parser cannot read it

    def lenient(text):  # a parser fix: any answer about a moving arm scores 2
        return (2, None) if "arm moves" in text else (None, "no score")

    again = ModelCaller(ScriptedBackend(), cache, max_retries=0, progress=False)
    fixed = again.run("progress", jobs, TEXT, lenient)
    assert fixed[0].value == 2 and fixed[0].cached and again.stats.model_calls == 0


def test_a_request_asked_twice_in_one_run_is_answered_once(tmp_path):
    backend = ScriptedBackend()
    caller = ModelCaller(backend, CallCache(tmp_path / "c.sqlite"), progress=False)
    jobs = [Job(about={"i": i}, request=VLMRequest(prompt="**Answer:** 2")) for i in range(3)]
    assert [r.value for r in caller.run("progress", jobs, TEXT, parse)] == [2, 2, 2]
    assert caller.stats.model_calls == 1 and caller.stats.cached_calls == 2 and len(backend.sent) == 1


def test_transport_failures_are_never_cached(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    jobs = [Job(about={}, request=VLMRequest(prompt="**Answer:** 2"))]
    failed = ModelCaller(FlakyBackend(), cache, max_retries=0, progress=False).run("progress", jobs, TEXT, parse)
    assert failed[0].value is None and failed[0].reason == "backend error: HTTP 503"
    assert cache.count() == 0
    again = ModelCaller(ScriptedBackend(), cache, max_retries=0, progress=False)
    assert again.run("progress", jobs, TEXT, parse)[0].value == 2 and again.stats.model_calls == 1


def test_answers_are_filed_by_episode_and_an_older_cache_gains_the_column(tmp_path):
    import sqlite3

    old = tmp_path / "old.sqlite"
    connection = sqlite3.connect(old)
    connection.execute("CREATE TABLE calls (key TEXT PRIMARY KEY, stage TEXT, value TEXT)")
    connection.execute("INSERT INTO calls VALUES ('k0', 'rewrite', '{\"text\": \"x\"}')")
    connection.commit()
    connection.close()
    cache = CallCache(old)
    cache.put_many([("k1", "progress", {"text": "ANSWER: 3"}, 4), ("k2", "progress", {"text": "ANSWER: 1"}, 5)])
    assert cache.rows_of(4) == [("k1", "progress", {"text": "ANSWER: 3"}, 4)]
    assert cache.rows_of(None) == [("k0", "rewrite", {"text": "x"}, None)]
    assert len(cache.rows()) == 3 and cache.get_many(["k0"]) == {"k0": {"text": "x"}}


class RefusingBackend(ScriptedBackend):
    """Answers a prompt about a long context with the server's HTTP 400, like a context-length refusal."""

    def _generate_text(self, requests, params):
        self.sent += [(request, params) for request in requests if "long" in request.prompt]
        answers = iter(super()._generate_text([r for r in requests if "long" not in r.prompt], params))
        return [VLMResponse(error="HTTP 400: context too long") if "long" in r.prompt else next(answers)
                for r in requests]


def test_a_backend_error_is_final_and_never_shown_to_the_model(tmp_path):
    backend = RefusingBackend()
    caller = ModelCaller(backend, CallCache(tmp_path / "c.sqlite"), max_retries=2, progress=False)
    jobs = [Job(about={}, request=VLMRequest(prompt=prompt)) for prompt in ("a long episode", "ANSWER: 7")]
    refused, retried = caller.run("progress", jobs, SCORED, parse)
    assert refused.value is None and refused.failed and refused.reason == "backend error: HTTP 400: context too long"
    assert retried.value == 3 and not retried.failed  # an unreadable answer is still asked again
    asked = [request.prompt for request, _ in backend.sent]
    assert asked.count("a long episode") == 1 and not any("HTTP" in prompt for prompt in asked)
    assert caller.stats.missing == {"backend error: HTTP 400: context too long": 1}


class DegradingBackend(ScriptedBackend):
    """Loses a feature while answering its first batch, as an OpenAI server that refuses the prefill."""

    def __init__(self):
        super().__init__()
        self.features = ["logprobs", "prefill"]

    def identity(self):
        return {**super().identity(), "features": list(self.features)}

    def _generate_text(self, requests, params):
        self.features = ["logprobs"]
        return [replace(answer, identity=self.identity()) for answer in super()._generate_text(requests, params)]


def test_answers_are_cached_under_the_features_they_were_asked_with(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    backend = DegradingBackend()
    caller = ModelCaller(backend, cache, progress=False)
    request = VLMRequest(prompt="**Answer:** 2")
    asked_with_prefill = caller.key("progress", request, TEXT)
    caller.run("progress", [Job(about={}, request=request)], TEXT, parse)
    assert cache.get_many([asked_with_prefill]) == {}  # not the key of the request it was not
    again = ModelCaller(backend, cache, progress=False)  # the backend now asks without prefill
    assert again.run("progress", [Job(about={}, request=request)], TEXT, parse)[0].cached
    assert again.stats.model_calls == 0


def test_the_missing_budget_ends_a_run_as_unreadable_answers_arrive(tmp_path):
    backend = ScriptedBackend()
    caller = ModelCaller(backend, CallCache(tmp_path / "c.sqlite"), max_retries=0, progress=False,
                         budget=MissingBudget(0.5, "the cache", sample=10))
    readable = [Job(about={}, request=VLMRequest(prompt=f"**Answer:** 2{'.' * i}")) for i in range(4)]
    unreadable = [Job(about={}, request=VLMRequest(prompt=f"The arm moves.{'.' * i}")) for i in range(4)]
    caller.run("progress", readable, TEXT, parse)
    caller.run("validate", unreadable, TEXT, parse)  # other stages' answers are not judged
    caller.run("progress", unreadable, TEXT, parse)  # 4 of 8: under the sample, under the share
    with pytest.raises(RunFailed, match=r"^8 of the first 12 progress answers were unreadable \(most often: no score"):
        caller.run("progress", unreadable[:1] + [Job(about={}, request=VLMRequest(prompt=f"?{'?' * i}"))
                                                 for i in range(3)], TEXT, parse)
    budget = MissingBudget(0.5, "the cache", sample=10)
    budget.record("progress", ["no score", "no score", None])
    budget.check()  # 3 answers: judged only at the end
    with pytest.raises(RunFailed, match=r"^2 of 3 progress answers were unreadable"):
        budget.check(final=True)

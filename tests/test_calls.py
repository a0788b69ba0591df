"""The caller: cache keys, resume, and 30+ malformed answers through parse -> retry -> missing."""

from labeling.backends import VLMBackend, VLMRequest, VLMResponse
from labeling.calls import CallCache, Job, ModelCaller
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

    def generate(self, requests):
        self.sent += requests
        answers = []
        for request in requests:
            first = request.prompt.split("\n\n")[0]
            answers.append(VLMResponse(text=first if request.temperature == 0 else SCRIPT[first], prompt_tokens=10))
        return answers

    def score_choices(self, requests, choices):
        return self.generate(requests)  # no token probabilities: the text is parsed


def parse(text):
    parsed = parse_score(text)
    return parsed.score, parsed.reason


def test_thirty_plus_malformed_answers_are_parsed_retried_or_recorded(tmp_path):
    malformed = [a for a, retry in SCRIPT.items() if retry is not None]
    assert len(malformed) >= 30
    backend = ScriptedBackend()
    caller = ModelCaller(backend, CallCache(tmp_path / "c.sqlite"), max_retries=1, progress=False)
    jobs = [Job(key={"answer": a}, request=VLMRequest(prompt=a)) for a in SCRIPT]
    results = caller.run("progress", jobs, parse, scored=True)
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
    retried = [r for r in backend.sent if r.temperature > 0]
    assert all("could not be used" in r.prompt for r in retried)


def test_cache_answers_repeat_runs_and_keys_track_what_matters(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    backend = ScriptedBackend()
    caller = ModelCaller(backend, cache, progress=False)
    jobs = [Job(key={"answer": "**Answer:** 2"}, request=VLMRequest(prompt="**Answer:** 2"))]
    first = caller.run("progress", jobs, parse)
    again = ModelCaller(backend, cache, progress=False)
    second = again.run("progress", jobs, parse)
    assert again.stats.model_calls == 0 and again.stats.cached_calls == 1
    assert second[0].value == first[0].value and second[0].cached
    other_prompt = Job(key={"answer": "**Answer:** 2", "prompt": "v2"}, request=jobs[0].request)
    assert caller.key("progress", other_prompt) != caller.key("progress", jobs[0])
    assert caller.key("validate", jobs[0]) != caller.key("progress", jobs[0])

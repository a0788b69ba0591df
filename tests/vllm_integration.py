"""Against a real vLLM (its CPU build, in .venv-vllm): `make test-vllm`, not part of `make test`.

Serves models/metaworld-reward-vlm (a Qwen2.5-VL saved by transformers 5.5) with vLLM's
OpenAI-compatible server and checks that `labeling.run --backend openai` gets what the
in-process transformers backend gets from the same checkpoint: the assistant prefill is
honoured, logprobs come back, and the score distributions agree. Then drives the in-process
vLLM backend in that venv, where lerobot is not installed.
"""

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from conftest import DEMO_DATASET, REPO_ROOT

VENV_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
MODEL = REPO_ROOT / "models" / "metaworld-reward-vlm"
SERVED = "reward-vlm"
COMMON = ["--dataset", str(DEMO_DATASET), "--episodes", "0-3,7,9", "--stages", "progress", "--image-size", "96",
          "--quiet"]
# Float32 on both sides; the image pipelines differ (PNG over HTTP, vLLM's own processor call).
# The server and engine run eagerly: compiling for CPU takes minutes and changes no answer.
TOLERANCE = 0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    if not VENV_PYTHON.is_file():
        pytest.fail("no .venv-vllm: run `make test-vllm` (scripts/setup_vllm_env.sh builds it)")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    command = [str(VENV_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL),
               "--runner", "generate", "--served-model-name", SERVED, "--max-model-len", "2048",
               "--dtype", "float32", "--limit-mm-per-prompt", '{"image": 8}', "--enforce-eager", "--host", "127.0.0.1",
               "--port", str(port)]
    with log.open("w") as handle:
        # Its own process group: vLLM's engine and worker processes go down with the server.
        server = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        if server.poll() is not None:
            os.killpg(server.pid, signal.SIGKILL)
            pytest.fail(f"vLLM exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/models", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(3)
    else:
        os.killpg(server.pid, signal.SIGKILL)
        pytest.fail(f"vLLM did not start in 1200 s:\n{log.read_text()[-3000:]}")
    yield base_url
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def label(out: Path, *backend: str) -> pd.DataFrame:
    result = subprocess.run([sys.executable, "-m", "labeling.run", *COMMON, "--out", str(out), *backend],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return pd.read_parquet(out / "labels" / "keyframes.parquet").set_index(["episode_index", "frame"])


def test_http_labels_equal_the_in_process_transformers_labels(vllm_server, tmp_path):
    served = label(tmp_path / "http", "--backend", "openai", "--base-url", vllm_server, "--model", SERVED)
    local = label(tmp_path / "local", "--backend", "transformers", "--model", str(MODEL), "--dtype", "float32",
                  "--device", "cpu")
    backend = json.loads((tmp_path / "http" / "labels" / "provenance.json").read_text())["backend"]
    assert backend["features"] == ["logprobs", "prefill"]  # vLLM accepted continue_final_message and logprobs
    assert served.probs.notna().all() and served.expected.notna().all()  # every score read from logprobs
    common = served.index.intersection(local.index)
    assert len(common) >= 0.9 * len(local)  # refinement follows the scores: almost the same keyframes
    difference = (served.loc[common, "expected"] - local.loc[common, "expected"]).abs()
    agree = (served.loc[common, "model_score"] == local.loc[common, "model_score"]).mean()
    print(f"\n{len(common)} keyframes: |expected difference| mean {difference.mean():.4f} max {difference.max():.4f}, "
          f"same argmax {agree:.1%}")
    assert difference.max() <= TOLERANCE and agree >= 0.9


IN_VLLM_VENV = """
import json, pickle, sys
try:
    import lerobot  # noqa: F401
    sys.exit("lerobot is importable in .venv-vllm: this check must run without it")
except ImportError:
    pass
from labeling.backends import SCORE_CHOICES, SamplingParams, make_backend

requests = pickle.load(open(sys.argv[1], "rb"))
backend = make_backend("vllm", sys.argv[2], dtype="float32", max_images=8, engine_args={"enforce_eager": True})
responses = backend.generate(requests, SamplingParams(max_tokens=8, choices=SCORE_CHOICES))
texts = backend.generate(requests[:2], SamplingParams(max_tokens=8))
json.dump({"probs": [r.choice_probs for r in responses], "texts": [r.text for r in texts]}, open(sys.argv[3], "w"))
"""


def test_in_process_vllm_backend_runs_without_lerobot(tmp_path):
    from common.dataset import EpisodeSource
    from labeling.backends import SCORE_CHOICES, make_backend
    from labeling.clips import ClipImages, ClipSpec, context_indices
    from labeling.context import LabelingContext
    from labeling.progress import SAMPLING, ProgressConfig, initial_keyframes, progress_jobs
    from labeling.prompts import PromptLibrary
    from labeling.records import EpisodeLabels

    source = EpisodeSource.open(DEMO_DATASET)
    ctx = LabelingContext(source, None, PromptLibrary(), ClipSpec(cameras=tuple(source.camera_keys), image_size=96), [0])
    config = ProgressConfig()
    labels = EpisodeLabels(0, source.episode(0).length, source.episode(0).task)
    frames = initial_keyframes(labels.length, config.initial_keyframes)
    # The frames the requests need, decoded directly: no model caller (nor its timings) in this process.
    clip = ClipImages(source, ctx.clip, 0, set().union(*(context_indices(f, config.context_frames) for f in frames)))
    requests = [job.request for job in progress_jobs(ctx, labels, frames, config, clip)]
    (tmp_path / "requests.pkl").write_bytes(pickle.dumps(requests))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "VLLM_CPU_KVCACHE_SPACE": "1"}
    result = subprocess.run([str(VENV_PYTHON), "-c", IN_VLLM_VENV, str(tmp_path / "requests.pkl"), str(MODEL),
                             str(tmp_path / "vllm.json")], capture_output=True, text=True, env=env, timeout=1200,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads((tmp_path / "vllm.json").read_text())
    assert all(text.startswith("ANSWER: ") for text in answers["texts"])  # the prefix was continued
    local = make_backend("transformers", str(MODEL), device="cpu", dtype="float32").generate(requests, SAMPLING)
    for engine, transformers in zip(answers["probs"], local, strict=True):
        assert engine is not None
        expected = [sum(int(c) * p[c] for c in SCORE_CHOICES) for p in (engine, transformers.choice_probs)]
        assert abs(expected[0] - expected[1]) <= TOLERANCE, (engine, transformers.choice_probs)
    assert np.isfinite([sum(p.values()) for p in answers["probs"]]).all()

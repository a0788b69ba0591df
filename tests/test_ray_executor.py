"""`labeling.run --executor ray`: a local Ray cluster on this CPU, tiny Qwen2.5-VL replicas."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from labeling.calls import CallCache
from labeling.run import main

EPISODES = "0-5"


def label_args(demo_root, model, out, *extra):
    return ["--dataset", str(demo_root), "--out", str(out), "--model", str(model), "--device", "cpu",
            "--image-size", "64", "--episodes", EPISODES, "--batch-size", "1", "--quiet", *map(str, extra)]


@pytest.fixture(scope="module")
def in_process(demo_root, tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "labeled"
    assert main(label_args(demo_root, tiny_models["qwen2_5_vl"], out)) == 0
    return out


def assert_same_labels(ours, theirs):
    frames = [pd.read_parquet(p / "labels" / "frames.parquet").sort_values(["episode_index", "frame_index"])
              for p in (ours, theirs)]
    assert len(frames[0]) == len(frames[1]) and frames[0].labeled.all()
    np.testing.assert_array_equal(frames[0].score.to_numpy(), frames[1].score.to_numpy())
    np.testing.assert_allclose(frames[0].expected, frames[1].expected, atol=1e-3)
    negatives = [set(pd.read_parquet(p / "labels" / "negatives.parquet").get("id", [])) for p in (ours, theirs)]
    assert negatives[0] == negatives[1]
    keyframes = [pd.read_parquet(p / "labels" / "keyframes.parquet") for p in (ours, theirs)]
    assert sorted(zip(keyframes[0].episode_index, keyframes[0].frame)) == sorted(
        zip(keyframes[1].episode_index, keyframes[1].frame))


@pytest.mark.slow
def test_ray_output_equals_in_process_output(demo_root, tiny_models, in_process, tmp_path):
    out = tmp_path / "ray"
    assert main(label_args(demo_root, tiny_models["qwen2_5_vl"], out, "--executor", "ray", "--replicas", "2")) == 0
    assert_same_labels(out, in_process)
    summary = json.loads((out / "labeling_summary.json").read_text())
    local = json.loads((in_process / "labeling_summary.json").read_text())
    assert summary["model_calls"] == local["model_calls"] and summary["calls_by_stage"] == local["calls_by_stage"]
    assert sum(summary["episodes_by_replica"].values()) == 6 and len(summary["episodes_by_replica"]) == 2
    provenance = json.loads((out / "labels" / "provenance.json").read_text())
    assert provenance["executor"]["executor"] == "ray" and provenance["config"]["views"]["image_size"] == 64
    # The cache holds every answer, filed by episode: a re-run sends each replica its episode's answers.
    rows = CallCache(tmp_path / "ray.cache" / "calls.sqlite").rows()
    assert len(rows) == summary["model_calls"] - summary["failed_calls"]
    assert {episode for *_, episode in rows} == {None, 0, 1, 2, 3, 4, 5}


@pytest.mark.slow
def test_a_killed_replica_loses_nothing_and_a_rerun_calls_nothing(demo_root, tiny_models, in_process, tmp_path):
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "labeling.run", *label_args(demo_root, tiny_models["qwen2_5_vl"], out,
                                                                  "--executor", "ray", "--replicas", "2")]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cache = tmp_path / "ray.cache" / "calls.sqlite"
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            finished = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM calls WHERE episode IS NOT NULL").fetchone()
        except sqlite3.Error:
            continue
        if finished[0]:  # one episode is in: kill a replica while the others are being labeled
            replicas = subprocess.run(["pgrep", "-f", "ray::LabelingReplica"], capture_output=True, text=True).stdout
            if replicas.split():
                killed = int(replicas.split()[0])
                subprocess.run(["kill", f"-{signal.SIGKILL.value}", str(killed)])
    stdout, stderr = run.communicate(timeout=600)
    assert killed is not None, "the run ended before a replica could be killed"
    assert run.returncode == 0, stderr[-3000:]
    assert_same_labels(out, in_process)

    again = tmp_path / "again"
    assert main(label_args(demo_root, tiny_models["qwen2_5_vl"], again, "--executor", "ray", "--replicas", "2",
                           "--cache-dir", tmp_path / "ray.cache")) == 0
    summary = json.loads((again / "labeling_summary.json").read_text())
    assert summary["model_calls"] == 0 and summary["cached_calls"] > 0
    assert_same_labels(again, in_process)


def test_executor_ray_without_ray_is_one_line_and_exit_2(demo_root, tmp_path):
    hide_ray = "import sys; sys.modules['ray'] = None; from labeling.run import main; from common.cli import " \
               "run_cli; sys.exit(run_cli(main))"
    result = subprocess.run([sys.executable, "-c", hide_ray, "--dataset", str(demo_root), "--out", str(tmp_path / "o"),
                             "--backend", "openai", "--model", "m", "--executor", "ray"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "needs Ray" in result.stderr and "pip install" in result.stderr


def test_several_servers_without_ray_is_a_clear_error(demo_root, tmp_path):
    result = subprocess.run([sys.executable, "-m", "labeling.run", "--dataset", str(demo_root), "--out",
                             str(tmp_path / "o"), "--backend", "openai", "--base-url", "http://a/v1", "http://b/v1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--executor ray" in result.stderr.strip().splitlines()[-1]

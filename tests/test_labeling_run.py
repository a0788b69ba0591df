"""`python -m labeling.run` end to end: tiny Qwen-VL on CPU, OpenAI server, resume after SIGKILL."""

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.label_files import read_keypoints
from common.reward_sources import keypoint_targets
from labeling.progress import fill_frames
from labeling.run import main

LABELING_DIR = Path(__file__).resolve().parents[1] / "labeling"


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "labeling.run", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def labeled(demo_root, tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "labeled"
    before = tree_digest(demo_root)
    assert main(["--dataset", str(demo_root), "--out", str(out), "--model", str(tiny_models["qwen2_5_vl"]),
                 "--device", "cpu", "--image-size", "96", "--quiet"]) == 0
    assert tree_digest(demo_root) == before  # the source is never modified
    return out


def test_every_frame_is_labeled_and_lerobot_loads_the_result(labeled, demo_root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/labeled", root=labeled)
    source = LeRobotDataset("local/demo", root=demo_root)
    assert dataset.num_frames == source.num_frames and dataset.num_episodes == source.num_episodes
    for name in ("next.reward", "reward.score", "reward.expected", "reward.labeled"):
        assert name in dataset.features
    frames = pd.read_parquet(labeled / "labels" / "frames.parquet")
    assert len(frames) == source.num_frames and frames.labeled.all()
    assert frames.score.between(1, 5).all() and frames.reward.between(0, 1).all()
    np.testing.assert_allclose(frames.reward, (frames.score - 1) / 4, atol=1e-6)
    assert (frames.score - frames.expected).abs().max() <= 0.5  # the label is the rounded expectation
    keyframes = pd.read_parquet(labeled / "labels" / "keyframes.parquet").dropna(subset=["expected"])
    for episode_index, episode in frames.groupby("episode_index"):
        scored = keyframes[keyframes.episode_index == episode_index]
        filled = fill_frames(len(episode), dict(zip(scored.frame, scored.expected, strict=True)), "piecewise")
        np.testing.assert_allclose(episode.expected, filled, atol=1e-6)  # the default fill of its keyframes
    item = dataset[int(frames["index"].iloc[10])]
    assert float(item["next.reward"]) == pytest.approx(frames.reward.iloc[10], abs=1e-6)


def test_sidecar_provenance_summary_and_keypoints(labeled):
    keyframes = pd.read_parquet(labeled / "labels" / "keyframes.parquet")
    assert {"model", "backend", "prompt", "prompt_sha256", "probs", "context"} <= set(keyframes.columns)
    assert keyframes.probs.map(lambda p: abs(sum(p) - 1) < 1e-6).all()
    assert keyframes.context.map(len).max() <= 6
    provenance = json.loads((labeled / "labels" / "provenance.json").read_text())
    assert provenance["backend"]["backend"] == "transformers"
    assert provenance["prompts_used"]["progress"]["sha256"] == keyframes.prompt_sha256.iloc[0]
    assert provenance["started"] <= provenance["finished"]
    summary = json.loads((labeled / "labeling_summary.json").read_text())
    for key in ("episodes", "frames", "frames_labeled", "model_calls", "prompt_tokens", "image_tokens",
                "negatives_generated", "negatives_kept", "failed_calls", "elapsed_s"):
        assert key in summary
    assert summary["frames_labeled"] == summary["frames"] == 569
    assert summary["progress_calls_per_labeled_frame"] < 0.25  # vs 1.0 for per-frame prefix scoring
    assert summary["progress_frames_shown"] < summary["naive_prefix_frames_shown"] / 10
    # Where the run's wall time went, by phase (bench/labeling_scale.py reads it).
    assert set(summary["seconds"]) == {"decode", "model", "fill", "write"}
    assert min(summary["seconds"].values()) > 0 and sum(summary["seconds"].values()) <= summary["elapsed_s"]
    frames = pd.read_parquet(labeled / "labels" / "frames.parquet")
    keypoints = read_keypoints(labeled / "rewact_extensions" / "reward_keypoints.json")
    for episode, rows in frames.groupby("episode_index"):
        np.testing.assert_allclose(keypoint_targets(len(rows), keypoints[episode]), rows.reward, atol=1e-5)


def test_a_finished_run_calls_nothing_when_repeated(labeled, demo_root, tiny_models):
    assert main(["--dataset", str(demo_root), "--out", str(labeled), "--model", str(tiny_models["qwen2_5_vl"]),
                 "--device", "cpu", "--image-size", "96", "--quiet", "--overwrite"]) == 0
    summary = json.loads((labeled / "labeling_summary.json").read_text())
    assert summary["model_calls"] == 0 and summary["cached_calls"] > 0
    assert summary["seconds"]["model"] == 0 and summary["seconds"]["decode"] > 0  # frames are still read


def test_ra_bc_progress_parquet_trains_rewact_through_stock_lerobot(labeled, tmp_path):
    from conftest import lerobot_train_command

    progress = pd.read_parquet(labeled / "sarm_progress.parquet")
    frames = pd.read_parquet(labeled / "labels" / "frames.parquet")
    assert list(progress.columns) == ["index", "episode_index", "frame_index", "progress_sparse", "progress_dense"]
    succeeded = frames.success.to_numpy()
    np.testing.assert_allclose(progress.progress_sparse[succeeded], (frames.score[succeeded] - 1) / 4, atol=1e-9)
    np.testing.assert_allclose(progress.progress_dense[succeeded], (frames.expected[succeeded] - 1) / 4, atol=1e-9)
    for _, rows in progress[~succeeded].groupby("episode_index"):  # failures: falling, so RA-BC weighs them 0
        assert rows.progress_sparse.iloc[0] == 1 and rows.progress_sparse.iloc[-1] == 0
        assert (np.diff(rows.progress_dense) < 0).all()
    # Exactly the command a user runs: no code of ours between LeRobot and the parquet.
    command = lerobot_train_command(labeled, tmp_path / "run", "rewact", "--policy.dim_model=64",
                                    "--policy.dim_feedforward=128", "--policy.n_encoder_layers=1",
                                    "--sample_weighting.type=rabc",
                                    f"--sample_weighting.progress_path={labeled / 'sarm_progress.parquet'}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "Creating sample weighter: rabc" in log
    assert f"Loaded {progress.progress_sparse.notna().sum()} frame progress values" in log


def test_rewact_trains_on_the_labels(labeled):
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    from rewact.configuration_rewact import RewACTConfig
    from rewact.labels import build_reward_table

    table = build_reward_table(RewACTConfig(label_source="dataset"), LeRobotDatasetMetadata("x", root=labeled))
    frames = pd.read_parquet(labeled / "labels" / "frames.parquet")
    np.testing.assert_allclose(table.reward.numpy(), frames.sort_values("index").reward, atol=1e-6)


def test_openai_backend_runs_every_stage_with_negatives_and_verdicts(demo_root, fake_openai, tmp_path):
    base_url, log = fake_openai()
    out = tmp_path / "labeled"
    assert main(["--dataset", str(demo_root), "--out", str(out), "--backend", "openai", "--base-url", base_url,
                 "--model", "served", "--episodes", "0,7", "--image-size", "64", "--quiet"]) == 0
    tasks = pd.read_parquet(out / "labels" / "tasks.parquet")
    assert set(tasks.instruction) == {"Put the puck on the goal."}
    assert tasks.paraphrases.map(len).eq(2).all()
    negatives = pd.read_parquet(out / "labels" / "negatives.parquet")
    counterfactual = negatives[negatives.origin == "counterfactual"]
    assert sorted(counterfactual.score.unique()) == [1, 4]  # the score-5 proposal is rejected
    assert set(counterfactual.prompt) == {"counterfactual_tasks.v1.txt"}
    assert set(negatives.loc[negatives.origin == "temporal_clip", "prompt"]) <= {"progress_score.v1.txt"}
    # the fake validator relabels proposed 1 -> 2 and rejects proposed 4 (it says 5)
    assert set(counterfactual.loc[counterfactual.score == 1, "status"]) == {"relabelled"}
    assert set(counterfactual.loc[counterfactual.score == 1, "final_score"]) == {2}
    assert set(counterfactual.loc[counterfactual.score == 4, "status"]) == {"dropped"}
    verdicts = pd.read_parquet(out / "labels" / "verdicts.parquet")
    assert set(verdicts.target) == {"negative", "progress"}
    assert len(verdicts[verdicts.target == "negative"]) == len(negatives)
    summary = json.loads((out / "labeling_summary.json").read_text())
    assert summary["negatives_generated"] == len(negatives)
    assert summary["negatives_kept"] == int((negatives.status != "dropped").sum())
    assert summary["image_tokens_measured"] is False
    # the server scores 4 (read from logprobs); its validator relabels the sampled keyframes to 5
    keyframes = pd.read_parquet(out / "labels" / "keyframes.parquet")
    relabelled = keyframes[keyframes.source == "validator"]
    assert len(relabelled) == 2 and relabelled.expected.eq(5).all() and relabelled.probs.isna().all()
    assert set(verdicts.loc[verdicts.target == "progress", "action"]) == {"relabel"}
    frames = pd.read_parquet(out / "labels" / "frames.parquet")
    assert frames.score.isin([4, 5]).all() and frames.score.eq(4).sum() > len(frames) / 2
    assert len(log.read_text().splitlines()) == 1 + summary["model_calls"]  # and the preflight
    # the output dataset holds the two labeled episodes, renumbered; its videos are the source's files
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/labeled", root=out)
    assert dataset.num_episodes == 2 and dataset.num_frames == len(frames)
    assert list(dataset.meta.episodes["length"]) == [len(frames[frames.episode_index == e]) for e in (0, 7)]
    assert set(pd.read_parquet(out / "sarm_progress.parquet").episode_index) == {0, 1}
    for video in (out / "videos").rglob("*.mp4"):
        assert video.stat().st_ino == (demo_root / video.relative_to(out)).stat().st_ino  # hard-linked, not copied


@pytest.mark.slow
def test_killed_run_resumes_without_repeating_calls(demo_root, tiny_models, tmp_path):
    model = tiny_models["qwen2_5_vl"]
    common = ["--dataset", demo_root, "--model", model, "--device", "cpu", "--image-size", "96", "--quiet",
              "--batch-size", "1", "--episodes-per-group", "2", "--episodes", "0-3"]
    reference = tmp_path / "reference"
    assert run_cli(*common, "--out", reference).returncode == 0
    total = json.loads((reference / "labeling_summary.json").read_text())

    out = tmp_path / "resumed"
    cache = tmp_path / "resumed.cache" / "calls.sqlite"
    process = subprocess.Popen([sys.executable, "-m", "labeling.run", *map(str, common), "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if cache.exists() and _rows(cache) >= total["model_calls"] // 3:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists()  # nothing that looks finished
    done_before = _rows(cache)  # one row per answered request, retries included
    assert 0 < done_before < total["model_calls"]

    result = run_cli(*common, "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = json.loads((out / "labeling_summary.json").read_text())
    assert resumed["cached_calls"] >= done_before  # every finished call is reused
    assert resumed["model_calls"] + done_before == total["model_calls"]  # no finished call made twice
    a = pd.read_parquet(reference / "labels" / "frames.parquet")
    b = pd.read_parquet(out / "labels" / "frames.parquet")
    assert a.score.tolist() == b.score.tolist()
    np.testing.assert_allclose(a.expected, b.expected, atol=1e-5)


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        try:
            return connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        except sqlite3.OperationalError:  # the run has created the file, not yet the table
            return 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "/no/such/dir"], "dataset directory not found"),
        (["--episodes", "99"], "episode 99 out of range"),
        (["--cameras", "wrist"], "unknown camera 'wrist'"),
        (["--stages", "rewrite,negatives"], "cannot be left out"),
        (["--stages", "progress,dance"], "unknown stage"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(demo_root, tmp_path, args, message, cli):
    argv = ["--dataset", str(demo_root), "--out", str(tmp_path / "o"), "--model", "/nonexistent", *args]
    result = cli("labeling.run", *argv)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.strip().count("\n") == 0


def test_existing_output_and_missing_model_are_clear_errors(demo_root, tmp_path):
    (tmp_path / "taken").mkdir()
    result = run_cli("--dataset", demo_root, "--out", tmp_path / "taken", "--model", "/nonexistent", timeout=120)
    assert result.returncode == 2 and "already exists" in result.stderr
    result = run_cli("--dataset", demo_root, "--out", tmp_path / "new", "--model", tmp_path / "nope", timeout=120)
    assert result.returncode == 2 and "cannot load model" in result.stderr and "Traceback" not in result.stderr


def test_a_run_whose_answers_are_unreadable_fails_and_writes_nothing(demo_root, fake_openai, tmp_path):
    base_url, _ = fake_openai(reject_logprobs=True, unreadable=True)  # like `transformers serve` + a model off-format
    out = tmp_path / "labeled"
    result = run_cli("--dataset", demo_root, "--out", out, "--backend", "openai", "--base-url", base_url,
                     "--model", "served", "--episodes", "0-1", "--stages", "progress", "--max-retries", "0", "--quiet")
    assert result.returncode == 1, result.stderr[-1000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: 12 of 12 progress answers were unreadable") and "calls.sqlite" in line
    assert not out.exists() and not (tmp_path / "labeled.partial").exists()
    assert (tmp_path / "labeled.cache" / "calls.sqlite").is_file()  # the raw answers are kept


def test_unreadable_answers_end_the_run_as_they_arrive(demo_root, fake_openai, tmp_path, cli):
    base_url, log = fake_openai(unreadable=True)
    result = cli("labeling.run", "--dataset", demo_root, "--out", tmp_path / "o", "--backend", "openai",
                 "--base-url", base_url, "--model", "served", "--stages", "progress", "--max-retries", "0",
                 "--episodes-per-group", "2", "--image-size", "64", "--quiet")
    assert result.returncode == 1, result.stderr[-1000:]
    assert result.stderr.startswith("error: 60 of the first 60 progress answers were unreadable")
    assert len(log.read_text().splitlines()) == 1 + 60  # the preflight, then 10 of the 14 episodes, not all


@pytest.mark.parametrize("server, model, message", [
    (("--api-key", "right"), "served", "refused the API key (HTTP 401: Incorrect API key provided.)"),
    (("--model", "served-a"), "served-b", "serves no model 'served-b' (it serves: served-a)"),
], ids=["401", "404"])
def test_a_wrong_key_or_model_ends_the_run_before_any_episode_is_read(demo_root, fake_openai, tmp_path, cli,
                                                                       monkeypatch, server, model, message):
    base_url, log = fake_openai(*server)
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    monkeypatch.setattr("labeling.context.ClipImages", lambda *args: pytest.fail("an episode was decoded"))
    result = cli("labeling.run", "--dataset", demo_root, "--out", tmp_path / "o", "--backend", "openai",
                 "--base-url", base_url, "--model", model, "--quiet")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not log.exists()  # not one completion was asked


def test_dry_run_prints_prompts_and_loads_no_model(demo_root, tmp_path):
    result = run_cli("--dataset", demo_root, "--out", tmp_path / "o", "--model", "/nonexistent", "--dry-run",
                     "--episodes", "3", "--cameras", "topview", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ANSWER: <score from 1 to 5>" in result.stdout and "Camera view: topview." in result.stdout
    assert "Task: Pick and place a puck to a goal" in result.stdout
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.cache").exists()


def test_a_model_that_declares_its_stages_is_asked_only_those(demo_root, tmp_path, cli):
    model = Path(__file__).resolve().parents[1] / "models" / "metaworld-reward-vlm"  # the demo's model
    common = ["--dataset", demo_root, "--out", tmp_path / "o", "--model", model, "--dry-run", "--episodes", "3"]
    declared = cli("labeling.run", *common)
    assert declared.returncode == 0, declared.stderr
    assert "stages progress\n" in declared.stdout and "## validate" not in declared.stdout
    assert "labeling_stages.json that it answers only: progress; running those" in declared.stderr
    chosen = cli("labeling.run", *common, "--stages", "progress,validate")
    assert "stages progress, validate\n" in chosen.stdout and "answers only" not in chosen.stderr


def test_dry_run_shows_what_every_stage_builds_with_its_sampling(demo_root, tmp_path, cli):
    """The dry run prints the stages' own requests: the progress prompts are byte for byte those
    `progress_jobs` builds for the run, and every stage shows its sampling parameters."""
    from dataclasses import asdict

    from common.dataset import EpisodeSource
    from labeling.clips import ClipSpec
    from labeling.context import LabelingContext
    from labeling.progress import SAMPLING, ProgressConfig, initial_keyframes, progress_jobs
    from labeling.prompts import PromptLibrary
    from labeling.records import EpisodeLabels

    result = cli("labeling.run", "--dataset", demo_root, "--out", tmp_path / "o", "--model", "/nonexistent",
                 "--dry-run", "--episodes", "2", "--stages", "rewrite,progress,negatives,validate")
    assert result.returncode == 0, result.stderr
    for stage in ("rewrite", "progress", "describe", "counterfactual", "validate"):
        assert f"## {stage} (" in result.stdout, stage
    assert result.stdout.count("[sampling: ") == 4 + ProgressConfig().initial_keyframes
    assert f"[sampling: {asdict(SAMPLING)}]" in result.stdout
    source = EpisodeSource.open(demo_root)
    ctx = LabelingContext(source, None, PromptLibrary(), ClipSpec(cameras=source.camera_keys), [2])
    info = source.episode(2)
    jobs = progress_jobs(ctx, EpisodeLabels(2, info.length, info.task),
                         initial_keyframes(info.length, ProgressConfig().initial_keyframes), ProgressConfig(), None)
    assert all(job.request.prompt in result.stdout for job in jobs)
    assert not (tmp_path / "o").exists()


def test_labeling_code_never_reads_simulator_ground_truth():
    for path in LABELING_DIR.rglob("*.py"):
        text = path.read_text()
        assert "ground_truth" not in text and "environment_state" not in text, path
        assert not re.search(r"^\s*(from|import)\s+data(\.|\s)", text, re.MULTILINE), path


@pytest.mark.slow
def test_environment_state_is_for_policies_and_never_reaches_the_vlm(tmp_path):
    """The same episode recorded with and without object and goal positions: every request the
    progress stage builds for it is the same, images and text."""
    from common.dataset import EpisodeSource
    from data.benchmark import GenerateConfig, generate
    from data.rollout import RolloutConfig
    from labeling.clips import ClipImages, ClipSpec, context_indices
    from labeling.context import LabelingContext
    from labeling.progress import ProgressConfig, initial_keyframes, progress_jobs
    from labeling.prompts import PromptLibrary
    from labeling.records import EpisodeLabels

    def requests(environment_state: bool):
        config = GenerateConfig(out=tmp_path / str(environment_state), tasks=("reach-v3",), successes=1,
                                failures_per_kind=0, rollout=RolloutConfig(cameras=("topview",), image_size=32),
                                use_videos=False, environment_state=environment_state)
        source = EpisodeSource.open(generate(config, progress=False))
        assert ("observation.environment_state" in source.meta.features) == environment_state
        spec = ClipSpec(cameras=source.camera_keys)
        ctx = LabelingContext(source, None, PromptLibrary(), spec, [0])
        info, config = source.episode(0), ProgressConfig()
        keyframes = initial_keyframes(info.length, config.initial_keyframes)
        clip = ClipImages(source, spec, 0, {f for k in keyframes for f in context_indices(k, config.context_frames)})
        return [job.request for job in progress_jobs(ctx, EpisodeLabels(0, info.length, info.task), keyframes,
                                                     config, clip)]

    with_state, pixels_only = requests(True), requests(False)
    assert len(with_state) == len(pixels_only) > 0
    for sent, reference in zip(with_state, pixels_only, strict=True):
        assert sent.prompt == reference.prompt and len(sent.images) == len(reference.images) > 0
        assert all(np.array_equal(a, b) for a, b in zip(sent.images, reference.images, strict=True))


def _corrupt_images_of_episode(dataset: Path, out: Path, episode: int) -> Path:
    """A copy of an image dataset whose frames of `episode` are not images any more."""
    import shutil

    shutil.copytree(dataset, out)
    for path in (out / "data").rglob("*.parquet"):
        table = pd.read_parquet(path)
        for camera in [c for c in table.columns if c.startswith("observation.images.")]:
            table[camera] = [{"bytes": b"not a png", "path": None} if e == episode else image
                             for e, image in zip(table.episode_index, table[camera])]
        table.to_parquet(path, index=False)
    return out


def test_unreadable_episode_is_skipped_and_recorded_or_ends_the_run(image_dataset, fake_openai, tmp_path):
    damaged = _corrupt_images_of_episode(image_dataset, tmp_path / "damaged", episode=1)
    base_url, _ = fake_openai()
    common = ["--dataset", damaged, "--backend", "openai", "--base-url", base_url, "--model", "served", "--quiet"]
    failed = run_cli(*common, "--out", tmp_path / "failed", timeout=300)
    assert failed.returncode == 2 and "cannot read images" in failed.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "failed").exists()

    out = tmp_path / "skipped"
    result = run_cli(*common, "--out", out, "--on-bad-episode", "skip", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "labeling_summary.json").read_text())
    assert summary["episodes"] == 1 and summary["episodes_skipped"] == 1
    assert "cannot read images" in summary["skipped"]["1"]
    skipped = pd.read_parquet(out / "labels" / "skipped.parquet")
    assert list(skipped.episode_index) == [1] and "cannot read images" in skipped.reason[0]
    frames = pd.read_parquet(out / "labels" / "frames.parquet")
    assert set(frames.episode_index) == {0} and frames.labeled.all()
    for name in ("keyframes", "negatives", "verdicts"):
        assert 1 not in set(pd.read_parquet(out / "labels" / f"{name}.parquet").get("episode_index", [])), name
        assert 1 not in set(pd.read_parquet(out / "labels" / f"{name}.parquet").get("episode", [])), name
    assert 1 not in set(pd.read_parquet(out / "sarm_progress.parquet").episode_index)
    data = pd.read_parquet(out / "data")
    assert (data[data.episode_index == 1]["reward.labeled"] == 0).all()  # kept in the dataset, never labeled

    every = run_cli(*common, "--out", tmp_path / "none", "--on-bad-episode", "skip", "--episodes", "1", timeout=300)
    assert every.returncode == 1 and "every episode was unreadable" in every.stderr

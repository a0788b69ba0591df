"""Metrics on hand-computed cases, and `python -m training.compare` on the demo."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from training.evaluation.metrics import EpisodeTruth, bootstrap, episode_metrics, order_correlations, paired_bootstrap

# Two successes climbing to 1, one stall ending at 0.5 (score 3), one drop ending at 0 (score 1).
PROGRESS = {0: [0.0, 0.5, 1.0], 1: [0.0, 0.25, 0.5, 1.0], 2: [0.0, 0.25, 0.5], 3: [0.0, 0.5, 0.0]}
EPISODES = [
    EpisodeTruth(i, np.array(p), np.rint(1 + 4 * np.array(p)), success, kind)
    for (i, p), (success, kind) in zip(PROGRESS.items(), [(True, "success"), (True, "success"),
                                                           (False, "stall"), (False, "drop")])
]


def test_perfect_prediction():
    metrics = episode_metrics(EPISODES, {e.index: e.progress for e in EPISODES})
    assert metrics["mae"] == 0 and metrics["exact"] == 1 and metrics["within_one"] == 1
    assert metrics["spearman"] == pytest.approx(1) and metrics["kendall"] == pytest.approx(1)
    assert metrics["auroc"] == 1 and metrics["f1"] == 1 and metrics["false_success_rate"] == 0
    assert metrics["auroc[stall]"] == 1 and metrics["false_success_rate[drop]"] == 0


def test_reversed_prediction():
    metrics = episode_metrics(EPISODES, {e.index: 1 - e.progress for e in EPISODES})
    assert metrics["spearman"] == pytest.approx(-1) and metrics["kendall"] == pytest.approx(-1)
    # successes end at 0, stall at 0.5, drop at 1: every failure outranks every success
    assert metrics["auroc"] == 0 and metrics["f1"] == 0
    assert metrics["false_success_rate"] == 0.5 and metrics["false_success_rate[drop]"] == 1
    errors = [4 * abs(1 - 2 * p) for e in EPISODES for p in e.progress]
    assert metrics["mae"] == pytest.approx(np.mean(errors))


def test_constant_prediction():
    metrics = episode_metrics(EPISODES, {e.index: np.full(len(e.progress), 0.5) for e in EPISODES})
    assert metrics["spearman"] == 0 and metrics["kendall"] == 0  # no order information
    assert metrics["auroc"] == 0.5  # all ties
    assert metrics["f1"] == 0 and metrics["false_success_rate"] == 0
    scores = np.concatenate([e.score for e in EPISODES])
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(3 - scores)))
    assert metrics["exact"] == pytest.approx(np.mean(scores == 3))


def test_voc_is_order_with_time_on_successes_only():
    climbing = {e.index: np.linspace(0, 1, len(e.progress)) for e in EPISODES}
    assert episode_metrics(EPISODES, climbing)["voc"] == pytest.approx(1)
    falling = {e.index: (np.linspace(1, 0, len(e.progress)) if e.success else np.linspace(0, 1, len(e.progress)))
               for e in EPISODES}
    assert episode_metrics(EPISODES, falling)["voc"] == pytest.approx(-1)  # failures do not count


def test_false_success_at_95_percent_recall_of_successes():
    # finals: successes 0.9 and 0.6, stall 0.7, drop 0.1 -> recognising both successes needs
    # a threshold of 0.6, which the stall passes: 1 of 2 failures called a success
    finals = {0: 0.9, 1: 0.6, 2: 0.7, 3: 0.1}
    rewards = {e.index: np.append(np.zeros(len(e.progress) - 1), finals[e.index]) for e in EPISODES}
    metrics = episode_metrics(EPISODES, rewards)
    assert metrics["success_threshold_at_95"] == pytest.approx(0.6)
    assert metrics["false_success_at_95"] == 0.5
    assert metrics["false_success_rate"] == 0  # nothing rounds to 5: the fixed-threshold rate hides the stall


def test_order_correlation_of_constant_truth_is_zero():
    assert order_correlations(np.array([0.1, 0.2]), np.array([0.5, 0.5])) == (0.0, 0.0)


def test_bootstrap_interval_contains_the_estimate_and_is_degenerate_for_perfect():
    noisy = {e.index: np.clip(e.progress + 0.1 * np.sin(np.arange(len(e.progress))), 0, 1) for e in EPISODES}
    for name, (estimate, low, high) in bootstrap(EPISODES, noisy, samples=200).items():
        assert np.isnan(estimate) or low - 1e-9 <= estimate <= high + 1e-9, name
    perfect = bootstrap(EPISODES, {e.index: e.progress for e in EPISODES}, samples=200)
    assert perfect["mae"] == (0.0, 0.0, 0.0)


def test_paired_bootstrap_is_the_difference_on_the_same_resamples():
    perfect = {e.index: e.progress for e in EPISODES}
    flat = {e.index: np.full(len(e.progress), 0.5) for e in EPISODES}  # no order, every final at 0.5
    paired = paired_bootstrap(EPISODES, perfect, flat, samples=200)
    point = {k: episode_metrics(EPISODES, perfect)[k] - episode_metrics(EPISODES, flat)[k] for k in ("mae", "auroc")}
    assert paired["mae"][0] == pytest.approx(point["mae"]) and paired["auroc"][0] == pytest.approx(point["auroc"])
    # the perfect source beats the flat one on every resample
    assert paired["auroc"][1] > 0 and paired["mae"][2] < 0
    assert paired_bootstrap(EPISODES, flat, flat, samples=50)["mae"] == (0.0, 0.0, 0.0)


def run(*args):
    return subprocess.run([sys.executable, "-m", "training.compare", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_compare_writes_table_json_and_plots(demo_root, tmp_path):
    rewards = pd.read_parquet(demo_root / "ground_truth" / "frames.parquet")[["episode_index", "frame_index", "progress"]]
    rewards.rename(columns={"progress": "reward"}).to_parquet(tmp_path / "truth.parquet")
    result = run("--dataset", demo_root, "--out", tmp_path / "out", "--bootstrap", 50,
                 "--source", "interp=interpolation", f"oracle=labels:{tmp_path / 'truth.parquet'}",  # README's form
                 "--pair", "oracle", "interp")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["metrics"]["oracle"]["spearman"][0] == pytest.approx(1.0)
    assert report["metrics"]["oracle"]["auroc"][0] == 1.0
    assert report["metrics"]["interp"]["auroc"][0] == 0.5  # every episode ends at 1
    assert "| oracle |" in (tmp_path / "out" / "results.md").read_text()
    difference = report["paired"]["oracle - interp"]
    assert difference["auroc"][0] == pytest.approx(0.5) and difference["mae"][0] < 0
    assert "| oracle - interp |" in (tmp_path / "out" / "results.md").read_text()
    for plot in ("curves.png", "metrics.png"):
        assert (tmp_path / "out" / plot).stat().st_size > 10_000


def test_compare_bad_sources_are_one_line_errors(demo_root, tmp_path, cli):
    partial = pd.DataFrame({"episode_index": [0, 0], "frame_index": [0, 1], "reward": [0.0, 0.1]})
    partial.to_parquet(tmp_path / "partial.parquet")
    result = cli("training.compare", "--dataset", demo_root, "--out", tmp_path / "o",
                 "--source", f"p=labels:{tmp_path / 'partial.parquet'}")
    assert result.returncode == 2 and "has no labels for 13 episode(s)" in result.stderr
    result = cli("training.compare", "--dataset", demo_root, "--out", tmp_path / "o", "--episodes", "0",
                 "--source", f"p=labels:{tmp_path / 'partial.parquet'}")
    assert result.returncode == 2 and "episode 0 has 2 rewards" in result.stderr
    result = cli("training.compare", "--dataset", demo_root, "--out", tmp_path / "o", "--source", "x=magic")
    assert result.returncode == 2 and "unknown reward source 'magic'" in result.stderr
    result = cli("training.compare", "--dataset", demo_root, "--out", tmp_path / "o", "--source", "a=interpolation",
                 "--pair", "a", "b")
    assert result.returncode == 2 and "--pair names b, which is not a --source name" in result.stderr


def test_without_ground_truth_only_agreement_is_reported(demo_root, tmp_path):
    import shutil

    copy = tmp_path / "nogt"
    shutil.copytree(demo_root, copy, ignore=shutil.ignore_patterns("ground_truth"))
    result = run("--dataset", copy, "--out", tmp_path / "o", "--source", "a=interpolation", "--source", "b=interpolation")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no ground truth: only agreement" in result.stdout
    assert json.loads((tmp_path / "o" / "results.json").read_text())["agreement"]["a vs b"]["mae"] == 0

"""The keyframe frontier command (smoke preset), and the dip metrics it reports."""

import json

import numpy as np
import pytest

from common.cli import run_cli
from training.evaluation.metrics import EpisodeTruth, dip, dip_hits, dip_recovered, dip_visible, dipping_successes


def test_dip_is_the_deepest_recovered_fall():
    assert dip(np.array([1, 2, 4, 4, 2, 3, 5, 5])) == (4, 2.0)
    assert dip(np.array([1, 2, 3, 5]))[1] == 0  # never falls
    assert dip(np.array([1, 4, 5, 2, 1]))[1] == 0  # falls, never recovers: a failure, not a dip


def test_dip_recovered_needs_the_top_score_and_a_dip_near_the_true_depth():
    truth = np.array([1, 2, 4, 4, 2, 2, 3, 5, 5])
    assert dip_recovered(np.array([1, 2, 4, 4, 3, 3, 4, 5, 5]), truth)
    assert not dip_recovered(np.array([1, 2, 4, 4, 4, 4, 4, 5, 5]), truth)  # smoothed over
    ends_at_4 = np.array([1, 2, 4, 4, 2, 2, 3, 4, 4])
    assert dip_visible(ends_at_4, truth) and not dip_recovered(ends_at_4, truth)  # never reaches 5
    assert not dip_recovered(np.array([1, 2, 5, 5, 4, 4, 5, 5, 5]), np.array([1, 2, 5, 5, 1, 1, 3, 5, 5]))


def test_dip_hits_score_only_the_successes_whose_truth_dips():
    def episode(index, score, success):
        return EpisodeTruth(index, (np.array(score) - 1) / 4, np.array(score), success, "success" if success else "drop")

    episodes = [episode(0, [1, 4, 2, 4, 5], True), episode(1, [1, 2, 3, 5], True), episode(2, [1, 4, 2, 4, 1], False)]
    assert [e.index for e in dipping_successes(episodes)] == [0]
    labels = {0: np.array([1, 4, 3, 4, 5]), 1: np.array([1, 1, 1, 1]), 2: np.array([1, 1, 1, 1, 1])}
    visible, recovered = dip_hits(episodes, labels)
    assert visible.tolist() == [1.0] and recovered.tolist() == [1.0]


def test_a_dataset_without_ground_truth_or_an_unknown_scheme_is_a_one_line_error(tmp_path, demo_root, capsys):
    from training.experiments.keyframe_frontier import main

    assert run_cli(main, ["--dataset", str(tmp_path), "--preset", "smoke"]) == 2
    assert "has no ground truth" in capsys.readouterr().err
    assert run_cli(main, ["--dataset", str(demo_root), "--preset", "smoke", "--schemes", "1/s"]) == 2
    assert "unknown scheme(s) 1/s" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_preset_labels_two_schemes_and_writes_the_frontier(demo_root, tmp_path):
    from training.experiments.keyframe_frontier import main

    results = tmp_path / "results"
    arguments = ["--dataset", str(demo_root), "--preset", "smoke", "--work", str(tmp_path / "work"),
                 "--results", str(results), "--episodes", "0,3", "--samples", "50"]
    assert main(arguments) == 0
    record = json.loads((results / "results.json").read_text())
    rows = {row["scheme"]: row for row in record["rows"]}
    assert set(rows) == {"6/12", "dense"} and record["episodes"] == [0, 3]
    frames = 35 + 39
    assert 2 * 6 <= rows["6/12"]["calls"] <= 2 * 12  # 6 initial, refined up to 12, per episode
    assert rows["dense"]["calls"] == sum(int(np.ceil(n / 4)) for n in (35, 39))  # every 4th frame, no refinement
    assert rows["dense"]["calls_per_frame"] == pytest.approx(rows["dense"]["calls"] / frames)
    assert rows["dense"]["mae_minus_dense"][0] == 0.0
    assert (results / "frontier.png").stat().st_size > 0 and "| dense |" in (results / "frontier.md").read_text()
    labeled_at = (tmp_path / "work" / "dense" / "labels" / "frames.parquet").stat().st_mtime
    assert main(arguments) == 0  # labeled schemes are kept: a second run only scores
    assert (tmp_path / "work" / "dense" / "labels" / "frames.parquet").stat().st_mtime == labeled_at

"""`training.experiments.reward_vlm_kinds`: held-out numbers per episode kind, a row per model."""

import json

import numpy as np
import pytest

from common.cli import run_cli
from common.scale import score_to_reward
from training.evaluation.metrics import EpisodeTruth


def _episode(index: int, kind: str, score: list[int], success: bool) -> EpisodeTruth:
    score = np.array(score, dtype=float)
    return EpisodeTruth(index, (score - 1) / 4, score, success, kind)


def test_a_kind_row_says_whether_labels_end_right_and_show_the_dip():
    from training.experiments.reward_vlm_kinds import kind_row

    drops = [_episode(0, "recovered_drop", [1, 2, 4, 4, 2, 2, 4, 5, 5], True),
             _episode(1, "recovered_drop", [1, 2, 4, 4, 2, 2, 4, 5, 5], True)]
    rewards = {0: score_to_reward(np.array([1, 2, 4, 4, 3, 3, 4, 5, 5.0])),  # the dip, then success
               1: score_to_reward(np.array([1, 2, 4, 4, 4, 4, 4, 4, 4.0]))}  # smoothed over, never at 5
    row = kind_row("recovered_drop", drops, rewards, samples=50, seed=0)
    assert row["episodes"] == 2 and row["dip_episodes"] == 2 and row["success"]
    assert row["ends_right"][0] == row["dip_visible"][0] == row["dip_recall"][0] == 0.5
    assert row["mae"][0] == pytest.approx((2 + 6) / 18)  # 1 + 1 off in the dip; 2 + 2 + 1 + 1 smoothed over

    stalls = [_episode(2, "stall", [1, 2, 3, 3, 3], False)]
    row = kind_row("stall", stalls, {2: score_to_reward(np.array([1, 2, 3, 4, 5.0]))}, samples=50, seed=0)
    assert row["ends_right"][0] == 0.0 and row["dip_episodes"] == 0 and np.isnan(row["dip_recall"][0])


def test_models_are_name_path_pairs(demo_root, capsys):
    from training.experiments.reward_vlm_kinds import main

    assert run_cli(main, ["--dataset", str(demo_root), "--models", "models/metaworld-reward-vlm"]) == 2
    assert "NAME=PATH pairs" in capsys.readouterr().err
    assert run_cli(main, ["--dataset", str(demo_root), "--models", "a=x,a=y"]) == 2
    assert "distinct names" in capsys.readouterr().err


@pytest.mark.slow
def test_each_model_labels_the_episodes_once_and_every_kind_gets_a_row(demo_root, tiny_models, tmp_path):
    from training.experiments.reward_vlm_kinds import main

    results = tmp_path / "results"
    arguments = ["--dataset", str(demo_root), "--models", f"tiny={tiny_models['qwen2_5_vl']}",
                 "--work", str(tmp_path / "work"), "--results", str(results), "--episodes", "0,7", "--samples", "20"]
    assert main(arguments) == 0
    record = json.loads((results / "results.json").read_text())
    assert record["episodes"] == [0, 7]
    kinds = {row["kind"]: row for row in record["results"]["tiny"]["kinds"]}
    assert sum(row["episodes"] for row in kinds.values()) == 2 and "success" in kinds
    assert (results / "kinds.png").stat().st_size > 0 and "| tiny | success |" in (results / "kinds.md").read_text()
    labeled_at = (tmp_path / "work" / "tiny" / "labels" / "frames.parquet").stat().st_mtime
    assert main(arguments) == 0  # labels are kept: a second run only scores
    assert (tmp_path / "work" / "tiny" / "labels" / "frames.parquet").stat().st_mtime == labeled_at

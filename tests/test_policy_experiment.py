"""`python -m training.experiments.policy_experiment --preset smoke`: records and labels a split,
trains every row on state, rolls each out on the same unrecorded seeds, writes the success table
with Wilson and paired intervals, and skips finished steps when run again. Which episodes each
failure share trains on, and which runs the preset plans, are checked without training."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from data.env import recorded_seeds
from training.evaluation.success import paired_difference
from training.experiments.policy_experiment import PRESETS, ROWS, planned_runs, split_episodes

COMMAND = [sys.executable, "-m", "training.experiments.policy_experiment"]


def test_paired_difference_cancels_the_luck_of_shared_rollout_seeds():
    easy = np.array([1, 1, 1, 1, 0, 0, 0, 0] * 5, dtype=float)  # seeds both policies find easy or hard
    better = easy.copy()
    better[4::8] = 1  # one hard seed in eight solved as well
    diff = paired_difference(better[None], easy[None])
    assert diff["mean"] == pytest.approx(0.125)
    assert 0 < diff["ci95_low"] < diff["mean"] < diff["ci95_high"]  # paired: clear of zero
    same = paired_difference(easy[None], easy[None])
    assert same == {"mean": 0.0, "ci95_low": 0.0, "ci95_high": 0.0}
    with pytest.raises(ValueError, match="same rollout seeds"):
        paired_difference(easy[None], easy[None, :-1])


def test_paired_difference_widens_when_training_seeds_disagree():
    easy = np.array([1, 1, 1, 1, 0, 0, 0, 0] * 5, dtype=float)
    consistent = np.stack([np.maximum(easy, np.arange(40) % 8 == 4)] * 2)  # both runs solve one hard seed in 8
    lucky_run = np.stack([np.ones(40), easy])  # one run solves everything, the other nothing more
    steady, spread = paired_difference(consistent, easy[None]), paired_difference(lucky_run, easy[None])
    assert steady["mean"] == pytest.approx(0.125) and spread["mean"] == pytest.approx(0.25)
    assert spread["ci95_low"] <= 1e-9 and steady["ci95_low"] > 0  # a run that got lucky is not an effect


def test_a_share_keeps_every_success_and_deals_the_failure_kinds_round_robin():
    kinds = ["success", "drop", "drop", "success", "miss", "wander", "miss", "wander"]
    episodes = pd.DataFrame({"episode_index": range(len(kinds)), "kind": kinds}).sample(frac=1, random_state=0)
    assert split_episodes(episodes, 0) == [0, 3]
    assert split_episodes(episodes, 3) == [0, 1, 3, 4, 5]  # one of each kind before any kind twice
    assert split_episodes(episodes, 5) == [0, 1, 2, 3, 4, 5, 6]
    smoke = PRESETS["smoke"]  # 2 successes: 1 failure at 25 %, 2 at 50 %
    assert (smoke.failures(0.25), smoke.failures(0.5)) == (1, 2)


def test_runs_start_at_the_largest_share_and_train_the_oracle_once():
    smoke = PRESETS["smoke"]
    runs = planned_runs(tuple(ROWS), smoke.shares, (0, 1), smoke)
    assert [share for _, share, _ in runs] == sorted((share for _, share, _ in runs), reverse=True)
    assert [run for run in runs if run[0] == "e"] == [("e", 0.5, 0), ("e", 0.5, 1)]  # the same successes at every share
    assert len(runs) == 2 * (4 * 2 + 1)
    assert planned_runs(("a", "e"), (0.25,), (0,), smoke) == [("a", 0.25, 0)]


@pytest.mark.slow
def test_smoke_preset_trains_every_row_rolls_out_and_tabulates_success(tmp_path):
    # one failure share (the planned runs are checked above): each trained row costs ~15 s here
    result = subprocess.run([*COMMAND, "--shares", "0.5", "--work", str(tmp_path), "--results", str(tmp_path / "docs")],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    work = tmp_path / "smoke"
    report = json.loads((work / "results.json").read_text())
    assert not set(report["eval_seeds"]) & recorded_seeds([work / "train"])
    rows = {(entry["row"], entry["share"]): entry for entry in report["table"]}
    assert set(rows) == {(row, 0.5) for row in "abcde"} | {("e", 0.25)}  # one oracle run, reported at both shares
    for (row, share), entry in rows.items():
        assert entry["episodes"] == 2 and entry["ci95_low"] <= entry["success_rate"] <= entry["ci95_high"]
        assert ("minus_a" in entry) == (row != "a" and share == 0.5)  # no (a) trained at 25 %
        assert f"| {share:.0%} | ({row}) {entry['name']} |" in (work / "results.md").read_text()

    # 50 % failures: both successes and the first 2 failures (the oracle masks those by the simulator's verdict)
    def trained_on(name):
        return json.loads((work / "checkpoints" / name / "cost.json").read_text())["episodes"]

    assert trained_on("a_fail50_seed0") == 4 and trained_on("e_fail50_seed0") == 4

    def config(name):
        return json.loads((work / "checkpoints" / name / "checkpoints" / "last" / "pretrained_model"
                           / "config.json").read_text())

    assert config("a_fail50_seed0")["label_source"] == "interpolation"
    assert config("b_fail50_seed0")["label_source"] == "labels"
    assert config("e_fail50_seed0")["label_source"] == "ground_truth"
    assert config("d_fail50_seed0")["type"] == "actvantage"
    for name in ("a_fail50_seed0", "d_fail50_seed0"):  # policies on state: no camera reaches them
        features = config(name)["input_features"]
        assert "observation.environment_state" in features and not any("images" in key for key in features)
    rabc = (work / "train_c_fail50_seed0.log").read_text()
    assert "sample_weighting" in rabc and "rabc" in rabc.lower()

    rollouts = json.loads((work / "rollouts" / "a_fail50_seed0.json").read_text())["rollouts"]
    assert [len(r["reward"]) for r in rollouts] == [r["length"] for r in rollouts]  # RewACT's head traced
    actvantage = json.loads((work / "rollouts" / "d_fail50_seed0.json").read_text())["rollouts"]
    assert all(r["reward"] == [] and r["length"] > 0 for r in actvantage)  # no reward head
    assert {p["step"] for p in report["curve"]["a"]} == {1, 2}  # a curve point every checkpoint_every step
    assert len(list((work / "videos").glob("*/*.mp4"))) == 5  # smoke's rollouts all fail: one video per row
    assert (tmp_path / "docs" / "success.png").is_file() and (tmp_path / "docs" / "curve.png").is_file()
    advantages = pd.read_parquet(work / "advantages.parquet")
    assert advantages["episode_index"].nunique() == 4

    # A stopped training is trained again; every finished step is skipped.
    run = work / "checkpoints" / "a_fail50_seed0"
    run.rename(run.with_name(run.name + ".partial"))
    (work / "rollouts" / "a_fail50_seed0.json").unlink()
    again = subprocess.run([*COMMAND, "--shares", "0.5", "--work", str(tmp_path)], capture_output=True, text=True,
                           timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    ran = [line for line in again.stdout.splitlines() if line.endswith(" ...")]
    assert ran == ["[policy_experiment] train a_fail50_seed0 ...", "[policy_experiment] roll out a_fail50_seed0 ..."]
    assert (run / "cost.json").is_file() and not run.with_name(run.name + ".partial").exists()

"""`python -m training.experiments.policy_experiment --preset smoke`: trains both rows on state, rolls them
out in the metaworld_bench env and writes the success table."""

import json
import subprocess
import sys

import pytest

from data.env import recorded_seeds


@pytest.mark.slow
def test_smoke_preset_trains_rolls_out_and_tabulates_success_with_wilson_intervals(tmp_path):
    result = subprocess.run([sys.executable, "-m", "training.experiments.policy_experiment", "--work", str(tmp_path)],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    work = tmp_path / "smoke"
    report = json.loads((work / "results.json").read_text())
    assert not set(report["eval_seeds"]) & recorded_seeds([work / "train"])
    for row, name in (("a", "imitate-all"), ("e", "oracle")):
        summary = report["rows"][row]
        assert summary["episodes"] == 2 and summary["ci95_low"] <= summary["success_rate"] <= summary["ci95_high"]
        assert f"| ({row}) {name} |" in (work / "results.md").read_text()
        config = json.loads((work / "checkpoints" / f"{row}_seed0" / "checkpoints" / "last" / "pretrained_model"
                             / "config.json").read_text())
        assert config["label_source"] == {"a": "interpolation", "e": "ground_truth"}[row]
        assert "observation.environment_state" in config["input_features"]  # the policy reads state
        rollouts = json.loads((work / "rollouts" / f"{row}_seed0.json").read_text())
        assert [len(r["reward"]) for r in rollouts] == [r["length"] for r in rollouts]
    assert "| (e) oracle |" in result.stdout

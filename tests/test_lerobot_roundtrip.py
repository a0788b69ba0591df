"""Stock LeRobot trains on what we generate: `lerobot-train --policy.type=act`, offline, CPU."""

import subprocess

import pytest
from conftest import lerobot_train_command


@pytest.mark.slow
def test_stock_act_trains_two_steps_on_the_demo(demo_root, tmp_path):
    result = subprocess.run(lerobot_train_command(demo_root, tmp_path / "run", "act"), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run/checkpoints/000002/pretrained_model/model.safetensors").is_file()

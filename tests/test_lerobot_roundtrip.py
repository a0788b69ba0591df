"""Stock LeRobot trains on what we generate: `lerobot-train --policy.type=act`, offline, CPU."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_stock_act_trains_two_steps_on_the_demo(demo_root, tmp_path):
    lerobot_train = Path(sys.executable).with_name("lerobot-train")
    cmd = [
        str(lerobot_train) if lerobot_train.exists() else shutil.which("lerobot-train"),
        "--dataset.repo_id=local/demo_metaworld", f"--dataset.root={demo_root}",
        "--policy.type=act", "--policy.pretrained_backbone_weights=null", "--policy.device=cpu",
        "--policy.push_to_hub=false", "--steps=2", "--batch_size=2", "--num_workers=0",
        "--save_freq=2", "--env_eval_freq=0", "--wandb.enable=false", f"--output_dir={tmp_path / 'run'}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run/checkpoints/000002/pretrained_model/model.safetensors").is_file()

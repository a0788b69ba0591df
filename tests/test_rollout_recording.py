"""`training.rollout --record`: a policy that acts from state only still leaves a LeRobot dataset
with the views a pixel reward head needs, the simulator's success and progress in the
ground-truth sidecar only."""

import json
from pathlib import Path

import numpy as np
import pytest

from common.ground_truth import read_ground_truth
from conftest import TINY_ACT, act_features


@pytest.fixture(scope="module")
def state_policy(tmp_path_factory) -> Path:
    """A stock ACT checkpoint (random weights) that reads robot and environment state, no camera."""
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    config = ACTConfig(**act_features(cameras=0, state_dim=4, action_dim=4, env_state_dim=6), **TINY_ACT)
    out = tmp_path_factory.mktemp("state_act") / "pretrained_model"
    ACTPolicy(config).save_pretrained(out)
    for pipeline in make_pre_post_processors(config, dataset_stats=None):
        pipeline.save_pretrained(out)
    return out


def test_rollouts_of_a_state_policy_are_recorded_with_cameras_and_truth_in_the_sidecar(state_policy, tmp_path, cli):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    record = tmp_path / "recorded"
    result = cli("training.rollout", "--checkpoint", state_policy, "--task", "reach-v3", "--episodes", 2,
                 "--episode-length", 6, "--videos", 0, "--out", tmp_path / "out", "--record", record,
                 "--cameras", "corner2,topview", "--image-size", 64)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "rollouts.json").read_text())
    dataset = LeRobotDataset("local/recorded", root=record)
    assert set(dataset.meta.camera_keys) == {"observation.images.corner2", "observation.images.topview"}
    assert dataset[0]["observation.images.topview"].shape == (3, 64, 64)
    assert dataset.meta.features["observation.state"]["shape"] == (4,)
    assert not {"observation.environment_state", "next.reward", "success", "progress"} & set(dataset.features)

    frames, episodes = read_ground_truth(record)
    assert episodes["seed"].tolist() == [rollout["seed"] for rollout in report["rollouts"]] == [1000, 1001]
    assert episodes["length"].tolist() == [rollout["length"] for rollout in report["rollouts"]]
    assert (episodes["outcome"] == "success").tolist() == [rollout["success"] for rollout in report["rollouts"]]
    assert dataset.num_frames == len(frames) and set(episodes["kind"]) == {"policy"}
    assert frames["progress"].between(0, 1).all() and frames["score"].between(1, 5).all()
    # The policy's actions are what the dataset holds, one per frame, inside the action space.
    actions = np.stack([dataset[i]["action"].numpy() for i in range(dataset.num_frames)])
    assert np.abs(actions).max() <= 1.0 + 1e-6 and np.ptp(actions, axis=0).max() > 0


def test_a_state_policy_renders_views_only_for_its_videos(state_policy, tmp_path, cli):
    for videos, cameras in ((0, ""), (1, "topview")):
        out = tmp_path / f"videos{videos}"
        result = cli("training.rollout", "--checkpoint", state_policy, "--task", "reach-v3", "--episodes", 1,
                     "--episode-length", 4, "--videos", videos, "--cameras", "topview", "--out", out)
        assert result.returncode == 0, result.stderr
        report = json.loads((out / "rollouts.json").read_text())
        assert report["env"]["cameras"] == cameras and report["env"]["environment_state"]
        assert len(report["rollouts"]) == 1 and 1 <= report["rollouts"][0]["length"] <= 4
        assert len(list((out / "videos").glob("*.mp4"))) == videos


@pytest.mark.slow  # trains the demo checkpoint when no other test has
def test_recorded_views_must_match_the_image_size_the_policy_reads(demo_checkpoint, tmp_path, cli):
    result = cli("training.rollout", "--checkpoint", demo_checkpoint, "--task", "reach-v3", "--episodes", 1,
                 "--out", tmp_path / "out", "--record", tmp_path / "recorded", "--image-size", 64)
    assert result.returncode == 2 and "not square views of one size" in result.stderr

"""The `metaworld_bench` env type: what a policy sees in evaluation is what `data.generate` recorded
for the same seed, training seeds are refused, and stock `lerobot-eval` runs a RewACT checkpoint on it."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from common.ground_truth import read_ground_truth
from data.env import ENV_TYPE, MetaWorldBenchEnvConfig
from data.benchmark import GenerateConfig, generate
from data.rollout import MetaWorldSim, RolloutConfig

CAMERAS = ("corner2", "topview")


@pytest.fixture(scope="module")
def state_dataset(tmp_path_factory) -> Path:
    """One push-v3 success recorded as images (lossless) with the environment state."""
    config = GenerateConfig(
        out=tmp_path_factory.mktemp("env") / "push", tasks=("push-v3",), successes=1, failures_per_kind=0,
        rollout=RolloutConfig(cameras=CAMERAS, image_size=64), use_videos=False, environment_state=True,
    )
    return generate(config, progress=False)


def test_generate_records_environment_state_as_a_policy_feature(state_dataset):
    info = json.loads((state_dataset / "meta" / "info.json").read_text())
    feature = info["features"]["observation.environment_state"]
    assert feature["shape"] == [6] and feature["names"][:3] == ["object_x", "object_y", "object_z"]
    frames = pd.read_parquet(state_dataset / "data")
    env_state = np.stack(frames["observation.environment_state"])
    # The puck moves towards a goal that stays put.
    assert np.ptp(env_state[:, :3], axis=0).max() > 0.01 and np.ptp(env_state[:, 3:], axis=0).max() == 0


def test_env_observation_is_what_generate_recorded_for_the_same_seed(state_dataset):
    frames = pd.read_parquet(state_dataset / "data").sort_values("frame_index")
    seed = int(read_ground_truth(state_dataset)[1]["seed"][0])
    env = MetaWorldBenchEnvConfig(task="push-v3", cameras=",".join(CAMERAS), image_size=64,
                                  environment_state=True).make()
    try:
        observation, _ = env.reset(seed=seed)
        for t in range(4):
            row = frames.iloc[t]
            assert set(observation) == {"pixels", "agent_pos", "environment_state"}
            for camera in CAMERAS:
                recorded = np.asarray(Image.open(io.BytesIO(row[f"observation.images.{camera}"]["bytes"])))
                assert observation["pixels"][camera].shape == recorded.shape == (64, 64, 3)
                np.testing.assert_array_equal(observation["pixels"][camera], recorded)  # same pose and flip
            np.testing.assert_array_equal(observation["agent_pos"], row["observation.state"])
            np.testing.assert_array_equal(observation["environment_state"], row["observation.environment_state"])
            observation, *_ = env.step(row["action"])
        assert env.render().shape == (64, 64 * len(CAMERAS), 3)
    finally:
        env.close()


def test_env_refuses_seeds_of_its_training_datasets(state_dataset):
    config = MetaWorldBenchEnvConfig(task="push-v3", cameras="topview", image_size=32,
                                     training_datasets=str(state_dataset))
    seed = int(read_ground_truth(state_dataset)[1]["seed"][0])
    env = config.make()
    try:
        with pytest.raises(ValueError, match=f"seed {seed} is an episode of a training dataset"):
            env.reset(seed=seed)
        observation, _ = env.reset(seed=1000)
        assert set(observation) == {"pixels", "agent_pos"}  # pixel-only unless asked
    finally:
        env.close()


def test_config_matches_the_simulator_and_rejects_bad_settings():
    sim = MetaWorldSim("reach-v3", RolloutConfig(cameras=("topview",), image_size=32, action_repeat=3))
    try:
        assert MetaWorldBenchEnvConfig(task="reach-v3", action_repeat=3).fps == sim.fps == round(1 / (3 * sim.env.dt))
    finally:
        sim.close()
    with pytest.raises(ValueError, match="unsupported task 'fly-v3'"):
        MetaWorldBenchEnvConfig(task="fly-v3")
    with pytest.raises(ValueError, match="unknown camera"):
        MetaWorldBenchEnvConfig(cameras="corner2,ceiling")
    with pytest.raises(ValueError, match="500 simulator steps"):
        MetaWorldBenchEnvConfig(episode_length=300, action_repeat=2)


@pytest.mark.slow
def test_stock_lerobot_eval_reports_a_success_rate_on_the_bench_env(demo_checkpoint, demo_root, tmp_path):
    executable = Path(sys.executable).with_name("lerobot-eval")
    out = tmp_path / "eval"
    cmd = [str(executable) if executable.exists() else shutil.which("lerobot-eval"),
           f"--policy.path={demo_checkpoint}", "--policy.device=cpu", f"--env.type={ENV_TYPE}",
           "--env.task=reach-v3", "--env.episode_length=6", f"--env.training_datasets={demo_root}",
           "--eval.n_episodes=2", "--eval.batch_size=2", "--seed=1000", f"--output_dir={out}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    overall = json.loads((out / "eval_info.json").read_text())["overall"]
    assert overall["n_episodes"] == 2 and 0.0 <= overall["pc_success"] <= 100.0
    assert len(list((out / "videos").rglob("*.mp4"))) == 2


@pytest.mark.slow
def test_rollout_logs_the_reward_trace_and_draws_it_under_the_video(demo_checkpoint, demo_root, tmp_path):
    import av

    out = tmp_path / "rollouts"
    result = subprocess.run(
        [sys.executable, "-m", "training.rollout", "--checkpoint", str(demo_checkpoint), "--task", "reach-v3",
         "--training-datasets", str(demo_root), "--episodes", "2", "--episode-length", "5", "--videos", "1",
         "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "rollouts.json").read_text())
    assert report["env"]["cameras"] == "corner2,topview" and report["env"]["image_size"] == 96  # from the checkpoint
    assert [rollout["seed"] for rollout in report["rollouts"]] == [1000, 1001]
    for rollout in report["rollouts"]:
        assert len(rollout["reward"]) == rollout["length"] and 1 <= rollout["length"] <= 5
        assert all(0.0 <= reward <= 1.0 for reward in rollout["reward"])
    assert report["successes"] == sum(rollout["success"] for rollout in report["rollouts"])
    assert report["ci95_low"] <= report["success_rate"] <= report["ci95_high"]
    with av.open(str(out / "videos" / "seed_1000.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == report["rollouts"][0]["length"]
    assert not (out / "videos" / "seed_1001.mp4").exists()


@pytest.mark.slow
def test_a_checkpoint_can_act_with_temporal_ensembling_as_lerobot_evals_overrides_do(demo_checkpoint, demo_root):
    from common.cli import ConfigError
    from training.evaluation.predict import load_policy
    from training.evaluation.rollouts import env_config_for, run_rollouts

    ensembled = load_policy(demo_checkpoint, overrides=("n_action_steps=1", "temporal_ensemble_coeff=0.01"))
    assert load_policy(demo_checkpoint).policy.config.n_action_steps == 5  # as trained
    assert ensembled.policy.config.n_action_steps == 1 and ensembled.policy.config.temporal_ensemble_coeff == 0.01
    ensembler, chunks = ensembled.policy.temporal_ensembler, []
    update = ensembler.update
    ensembler.update = lambda chunk: chunks.append(chunk) or update(chunk)
    env_config = env_config_for(ensembled.policy.config, "reach-v3", 2, 5, (demo_root,), None)
    [rollout] = run_rollouts(ensembled, env_config, [1000])
    assert rollout.length == len(chunks) == 5  # every frame's action averages the chunks predicted for it
    with pytest.raises(ConfigError, match="do not fit"):  # ACT's own check: ensembling acts one step at a time
        load_policy(demo_checkpoint, overrides=("temporal_ensemble_coeff=0.01",))
    with pytest.raises(ConfigError, match="not fields of"):
        load_policy(demo_checkpoint, overrides=("n_action_step=1",))
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        load_policy(demo_checkpoint, overrides=("n_action_steps",))


@pytest.mark.slow
def test_a_rollout_stops_on_its_success_unless_run_on_and_counts_a_success_it_drifts_from(demo_checkpoint, demo_root):
    from training.evaluation.predict import load_policy
    from training.evaluation.rollouts import env_config_for, run_rollout

    loaded = load_policy(demo_checkpoint)
    env = env_config_for(loaded.policy.config, "reach-v3", 2, 6, (demo_root,), None).make()
    step = env.step

    def flagged_on_the_third_frame_only(action):  # the simulator says success once, then the arm drifts
        observation, reward, terminated, truncated, info = step(action)
        flagged_on_the_third_frame_only.frame += 1
        return observation, reward, terminated, truncated, {**info, "is_success": flagged_on_the_third_frame_only.frame == 2}

    try:
        for stop_on_success, length in ((True, 3), (False, 6)):
            flagged_on_the_third_frame_only.frame = 0
            env.step = flagged_on_the_third_frame_only
            rollout, episode = run_rollout(loaded, env, 1000, stop_on_success=stop_on_success)
            assert (rollout.length, rollout.success, len(rollout.reward), len(episode)) == (length, True, length, length)
    finally:
        env.close()


def test_rollout_refuses_a_seed_the_training_data_used(demo_root, tmp_path, cli):
    seed = int(read_ground_truth(demo_root)[1]["seed"][7])
    result = cli("training.rollout", "--checkpoint", tmp_path / "unused", "--task", "reach-v3", "--out", tmp_path / "o",
                 "--training-datasets", demo_root, "--seed", seed - 1, "--episodes", 3)
    assert result.returncode == 2 and f"seed(s) [{seed}] are episodes of the training datasets" in result.stderr


def test_env_settings_come_from_the_checkpoints_features():
    from lerobot.configs.types import FeatureType, PolicyFeature

    from common.cli import ConfigError
    from rewact.configuration_rewact import RewACTConfig
    from training.evaluation.rollouts import env_config_for

    def config(*image_shapes, env_state=False):
        inputs = {f"observation.images.{camera}": PolicyFeature(FeatureType.VISUAL, shape)
                  for camera, shape in zip(("corner2", "gripperPOV"), image_shapes)}
        inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (4,))
        if env_state:
            inputs["observation.environment_state"] = PolicyFeature(FeatureType.ENV, (6,))
        return RewACTConfig(input_features=inputs, output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))},
                            pretrained_backbone_weights=None, device="cpu")

    env = env_config_for(config((3, 64, 64), (3, 64, 64), env_state=True), "push-v3", 2, 30)
    assert (env.camera_names, env.image_size, env.environment_state) == (("corner2", "gripperPOV"), 64, True)
    assert env.features_map["environment_state"] == "observation.environment_state"
    assert not env_config_for(config((3, 32, 32)), "push-v3", 2, 30).environment_state
    with pytest.raises(ConfigError, match="not square views of one size"):
        env_config_for(config((3, 64, 64), (3, 32, 32)), "push-v3", 2, 30)


def test_wilson_interval_stays_inside_and_keeps_a_width():
    from training.evaluation.success import success_summary, wilson_interval

    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert success_summary([True, False, False, False])["success_rate"] == 0.25

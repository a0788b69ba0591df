"""ACTvantage: advantages from reward sources, the advantage condition in and out of training,
classifier-free guidance, the processor's table, stock lerobot-train and a reload."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
from lerobot.processor import TransitionKey

from common.advantages import AdvantageError
from common.label_files import episodes_file, frames_file
from common.reward_sources import read_rewards
from conftest import TINY_ACT, act_features, lerobot_train_command
from rewact.configuration_actvantage import ACTvantageConfig
from rewact.labels import EpisodeSpan, episode_spans
from rewact.modeling_actvantage import ACTvantagePolicy
from rewact.processor_actvantage import ADVANTAGE, make_actvantage_pre_post_processors
from training.policies.advantages import compute_advantages, episode_outcomes

def make_policy(cameras=1, state_dim=4, env_state_dim=0, action_dim=3, **overrides) -> ACTvantagePolicy:
    config = ACTvantageConfig(**act_features(cameras, state_dim, action_dim, env_state_dim=env_state_dim),
                              **{**TINY_ACT, **overrides})
    return ACTvantagePolicy(config)


def observations(policy, batch_size=3) -> dict[str, torch.Tensor]:
    return {key: torch.rand(batch_size, *f.shape) for key, f in policy.config.input_features.items()}


def training_batch(policy, advantage: torch.Tensor) -> dict[str, torch.Tensor]:
    config = policy.config
    batch = observations(policy, len(advantage))
    batch["action"] = torch.randn(len(advantage), config.chunk_size, config.action_feature.shape[0])
    batch["action_is_pad"] = torch.zeros(len(advantage), config.chunk_size, dtype=torch.bool)
    batch[ADVANTAGE] = advantage
    return batch


def test_advantages_equal_a_hand_computation():
    """N = 3 over episode 0 (a success), episode 1 (a success shorter than N) and episode 2
    (a failure whose values rise again after their peak)."""
    values = {0: [0.0, 0.1, 0.3, 0.6, 0.9, 1.0], 1: [0.2, 0.5], 2: [0.0, 0.5, 0.9, 0.3, 0.6, 0.6]}
    rows = pd.DataFrame([(e, t, v) for e, vs in values.items() for t, v in enumerate(vs)],
                        columns=["episode_index", "frame_index", "reward"])
    spans = [EpisodeSpan(0, 0, 6), EpisodeSpan(1, 6, 2), EpisodeSpan(2, 8, 6)]
    result = compute_advantages(rows.sample(frac=1, random_state=0), spans, {0: True, 1: True, 2: False},
                                n_step=3, positive_fraction=0.5)
    table = result.table
    # A_t = V(min(t + 3, T - 1)) - V(t)
    expected = [0.6, 0.8, 0.7, 0.4, 0.1, 0.0] + [0.3, 0.0] + [0.3, 0.1, -0.3, 0.3, 0.0, 0.0]
    np.testing.assert_allclose(table.advantage, expected, atol=1e-12)
    # the median of those 14 advantages is (0.1 + 0.3) / 2
    assert result.threshold == pytest.approx(0.2)
    assert table.positive.tolist() == ([True, True, True, True, False, False] + [True, False]
                                       + [True, False, False, False, False, False])  # frame 11: 0.3, after the peak
    assert table["index"].tolist() == list(range(14)) and table.episode_index.tolist()[:6] == [0] * 6
    assert table.value.tolist() == [v for vs in values.values() for v in vs]
    unjudged = compute_advantages(rows, spans, None, n_step=3, positive_fraction=0.5).table
    assert bool(unjudged.positive[11])  # without outcomes only the threshold decides


def test_values_must_cover_every_frame():
    rows = pd.DataFrame({"episode_index": [0, 0], "frame_index": [0, 1], "reward": [0.0, 1.0]})
    with pytest.raises(ValueError, match="no frame of 1 episode"):
        compute_advantages(rows, [EpisodeSpan(0, 0, 2), EpisodeSpan(1, 2, 3)], None, 2, 0.7)
    with pytest.raises(ValueError, match="episode 0: values cover 2 frames, the dataset has 3"):
        compute_advantages(rows, [EpisodeSpan(0, 0, 3)], None, 2, 0.7)


@pytest.fixture(scope="module")
def demo_meta(demo_root):
    return LeRobotDatasetMetadata("local/demo_metaworld", root=demo_root)


@pytest.fixture(scope="module")
def labels_dir(demo_root, tmp_path_factory) -> Path:
    """A labeling.run-shaped output for the demo: the simulator's progress as labels and its
    outcomes as the run's verdicts."""
    out = tmp_path_factory.mktemp("labels")
    frames = pd.read_parquet(demo_root / "ground_truth" / "frames.parquet")
    episodes = pd.read_parquet(demo_root / "ground_truth" / "episodes.parquet")
    frames_file(out).parent.mkdir(parents=True)
    labels = frames.rename(columns={"progress": "reward"})[["episode_index", "frame_index", "reward"]]
    labels.to_parquet(frames_file(out))
    pd.DataFrame({"episode_index": episodes.episode_index, "labeled": True, "success": episodes.outcome == "success",
                  "final_expected": 1 + 4 * episodes.final_score, "reason": ""}).to_parquet(episodes_file(out))
    return out


def test_command_from_labels_writes_table_histogram_and_record(cli, demo_root, labels_dir, tmp_path):
    out = tmp_path / "adv.parquet"
    result = cli("training.advantage", "--dataset", demo_root, "--values", f"labels:{labels_dir}",
                 "--n-step", 10, "--positive-fraction", 0.6, "--out", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    meta = LeRobotDatasetMetadata("local/demo_metaworld", root=demo_root)
    assert len(table) == meta.total_frames and table.episode_index.nunique() == meta.total_episodes
    outcomes = episode_outcomes(f"labels:{labels_dir}", demo_root)
    assert not all(outcomes.values())
    for episode, success in outcomes.items():
        rows = table[table.episode_index == episode]
        if not success:
            assert not rows.positive[rows.frame_index >= rows.value.to_numpy().argmax()].any()
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["options"]["n_step"] == 10 and record["failed_episodes"] == sorted(
        e for e, ok in outcomes.items() if not ok)
    assert record["positive_fraction"] == pytest.approx(table.positive.mean())
    assert out.with_suffix(".png").stat().st_size > 0

    bad = cli("training.advantage", "--dataset", demo_root, "--values", "labels:" + str(tmp_path / "none"),
              "--out", tmp_path / "x.parquet")
    assert bad.returncode == 2 and bad.stderr.startswith("error: labels not found")
    unknown = cli("training.advantage", "--dataset", demo_root, "--values", "rewact:" + str(tmp_path / "nothing"))
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no policy checkpoint at")
    assert cli("training.advantage", "--dataset", demo_root, "--values", "interpolation",
               "--positive-fraction", 1.5).stderr == "error: --positive-fraction must be in (0, 1), got 1.5\n"


def test_eval_gives_the_same_action_and_condition_dropout_fires_only_in_training():
    torch.manual_seed(0)
    policy = make_policy(advantage_dropout_prob=0.9, dropout=0.1)
    obs = observations(policy, batch_size=1)
    first = policy.select_action(obs)
    policy.reset()
    assert torch.equal(policy.select_action(obs), first)

    batch = training_batch(policy, torch.ones(64))
    _, trained = policy.train().forward(batch)
    assert 0.7 < trained["unconditioned_fraction"] < 1.0
    policy.eval()
    losses = [policy.forward(batch) for _ in range(2)]
    assert losses[0][1]["unconditioned_fraction"] == 0.0
    assert torch.equal(losses[0][0], losses[1][0])


def test_classifier_free_guidance_is_the_formula_on_the_two_passes():
    torch.manual_seed(0)
    policy = make_policy(cfg_gamma=3.0)
    obs = observations(policy)
    guided = policy.predict_action_chunk(obs)
    policy.config.cfg_gamma = 1.0
    conditioned = policy.predict_action_chunk({**obs, ADVANTAGE: torch.ones(3)})
    unconditioned = policy.predict_action_chunk({**obs, ADVANTAGE: torch.zeros(3)})
    assert torch.allclose(guided, unconditioned + 3.0 * (conditioned - unconditioned), atol=1e-6)
    assert torch.equal(policy.predict_action_chunk(obs), conditioned)  # inference_advantage = +1
    assert not torch.allclose(guided, conditioned)
    with pytest.raises(ValueError, match="needs advantage_dropout_prob > 0"):
        make_policy(cfg_gamma=2.0, advantage_dropout_prob=0.0)


def test_the_condition_steers_a_briefly_trained_policy():
    """Same observation, opposite actions for positive and negative frames: after a few steps
    the policy asked for +1 acts like the positive frames and asked for -1 like the negative."""
    torch.manual_seed(0)
    policy = make_policy(cameras=0, state_dim=4, env_state_dim=6, action_dim=2, use_vae=False, dropout=0.0)
    advantage = torch.tensor([1.0, -1.0] * 4)
    batch = training_batch(policy, advantage)
    batch.update({key: value[:1].expand_as(value) for key, value in observations(policy, 8).items()})
    batch["action"] = advantage[:, None, None].expand_as(batch["action"]).clone()
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    for _ in range(20):
        loss, _ = policy.train().forward(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    obs = {key: value[:1] for key, value in batch.items() if key.startswith("observation")}
    positive = policy.predict_action_chunk({**obs, ADVANTAGE: torch.ones(1)})
    negative = policy.predict_action_chunk({**obs, ADVANTAGE: -torch.ones(1)})
    assert positive.mean() > 0.5 and negative.mean() < -0.5


def test_layouts_and_save_load_round_trip(tmp_path):
    for cameras, state_dim, env_state_dim in [(2, 7, 0), (0, 0, 3), (1, 0, 0)]:
        policy = make_policy(cameras=cameras, state_dim=state_dim, env_state_dim=env_state_dim)
        loss, _ = policy.forward(training_batch(policy, torch.tensor([1.0, -1.0])))
        assert torch.isfinite(loss)
    torch.manual_seed(0)
    policy = make_policy(cfg_gamma=2.0, advantage_dropout_prob=0.2).eval()
    policy.save_pretrained(tmp_path / "saved")
    reloaded = ACTvantagePolicy.from_pretrained(tmp_path / "saved").eval()
    assert (reloaded.config.cfg_gamma, reloaded.config.advantage_dropout_prob) == (2.0, 0.2)
    obs = observations(policy)
    assert torch.equal(reloaded.predict_action_chunk(obs), policy.predict_action_chunk(obs))


def test_processor_attaches_the_condition_of_each_frame(demo_root, demo_meta, tmp_path):
    config = ACTvantageConfig(**TINY_ACT, advantage_path=str(tmp_path / "adv.parquet"))
    with pytest.raises(AdvantageError, match=r"no advantages at .*adv.parquet; compute them with `python -m training"):
        make_actvantage_pre_post_processors(config, dataset_meta=demo_meta)
    with pytest.raises(AdvantageError, match=r"no advantages at .*demo_metaworld/advantages.parquet"):
        make_actvantage_pre_post_processors(ACTvantageConfig(**TINY_ACT), dataset_meta=demo_meta)

    values = read_rewards("interpolation", demo_meta)
    table = compute_advantages(values, episode_spans(demo_meta), None, n_step=5, positive_fraction=0.7).table
    table.to_parquet(tmp_path / "adv.parquet")
    preprocessor, _ = make_actvantage_pre_post_processors(config, dataset_meta=demo_meta)
    step = preprocessor.steps[0]
    index = torch.tensor([0, 17, len(table) - 1])
    transition = step({TransitionKey.COMPLEMENTARY_DATA: {"index": index}})
    expected = np.where(table.set_index("index").loc[index.numpy(), "positive"], 1.0, -1.0)
    np.testing.assert_array_equal(transition[TransitionKey.COMPLEMENTARY_DATA][ADVANTAGE].numpy(), expected)
    assert step({TransitionKey.COMPLEMENTARY_DATA: {}}) == {TransitionKey.COMPLEMENTARY_DATA: {}}  # inference

    table[table.episode_index != 3].to_parquet(tmp_path / "adv.parquet")
    with pytest.raises(AdvantageError, match="does not fit this dataset"):
        make_actvantage_pre_post_processors(config, dataset_meta=demo_meta)


@pytest.mark.slow
def test_stock_lerobot_train_on_interpolation_advantages_then_reload_and_act(demo_root, tmp_path):
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    advantages = tmp_path / "advantages.parquet"
    made = subprocess.run([sys.executable, "-m", "training.advantage", "--dataset", str(demo_root),
                           "--values", "interpolation", "--n-step", "10", "--out", str(advantages)],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    cmd = lerobot_train_command(demo_root, tmp_path / "run", "actvantage", f"--policy.advantage_path={advantages}",
                                "--policy.dim_model=64", "--policy.dim_feedforward=128", "--policy.n_encoder_layers=1",
                                "--policy.cfg_gamma=2.0")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    # (ACTvantage's forward refuses a batch without the advantage condition, so training ran on it.)
    assert result.returncode == 0, result.stderr[-3000:]
    path = tmp_path / "run/checkpoints/last/pretrained_model"
    steps = json.loads((path / "policy_preprocessor.json").read_text())["steps"]
    assert steps[0]["registry_name"] == "actvantage_advantage_condition"
    assert steps[0]["config"] == {"advantage_path": str(advantages)}

    # What lerobot-eval does with a checkpoint: config, policy class by type, saved processors.
    config = PreTrainedConfig.from_pretrained(path)
    policy = get_policy_class(config.type).from_pretrained(path, config=config).eval()
    preprocessor, postprocessor = make_pre_post_processors(config, pretrained_path=str(path))
    frame = LeRobotDataset("local/demo_metaworld", root=demo_root, episodes=[0])[3]
    batch = preprocessor({k: v for k, v in frame.items() if k.startswith("observation") or k == "task"})
    action = postprocessor(policy.select_action(batch))
    assert isinstance(policy, ACTvantagePolicy) and policy.config.cfg_gamma == 2.0
    assert action.shape == (1, config.action_feature.shape[0]) and torch.isfinite(action).all()

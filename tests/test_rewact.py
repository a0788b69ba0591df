"""RewACT: layouts, target encodings, label sources, loss masking, inference API, round trip."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

from common.label_files import read_keypoints, write_keypoints
from common.reward_sources import LabelError, interpolation_targets, keypoint_targets
from conftest import TINY_ACT, act_features, lerobot_train_command
from rewact.configuration_rewact import RewACTConfig
from rewact.labels import balance_weights, build_reward_table
from rewact.modeling_rewact import RewACTPolicy, bin_edges, hl_gauss_targets, two_hot_targets
from rewact.processor_rewact import REWARD_IMITATE, REWARD_LABELED, REWARD_WEIGHT

def make_policy(cameras=1, state_dim=4, action_dim=3, image=32, env_state_dim=0, **overrides):
    config = RewACTConfig(**act_features(cameras, state_dim, action_dim, image, env_state_dim), **{**TINY_ACT, **overrides})
    return RewACTPolicy(config)


def make_batch(policy, batch_size=3, reward=None):
    config = policy.config
    batch = {key: torch.rand(batch_size, *f.shape) for key, f in config.input_features.items()}
    batch["action"] = torch.randn(batch_size, config.chunk_size, config.action_feature.shape[0])
    batch["action_is_pad"] = torch.zeros(batch_size, config.chunk_size, dtype=torch.bool)
    batch["next.reward"] = torch.rand(batch_size) if reward is None else reward
    return batch


@pytest.mark.parametrize(
    "cameras, state_dim, env_state_dim", [(1, 2, 0), (2, 7, 0), (3, 14, 0), (1, 0, 0), (0, 6, 9), (0, 0, 3)],
)
def test_shapes_for_layouts(cameras, state_dim, env_state_dim):
    policy = make_policy(cameras=cameras, state_dim=state_dim, env_state_dim=env_state_dim, action_dim=max(state_dim, 2))
    batch = make_batch(policy)
    loss, info = policy.forward(batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and {"l1_loss", "reward_loss"} <= set(info)
    reward, probs = policy.predict_reward({k: v for k, v in batch.items() if k.startswith("observation")})
    assert reward.shape == (3,) and probs.shape == (3, policy.config.reward_bins)
    assert torch.all((reward >= 0) & (reward <= 1))
    assert torch.allclose(probs.sum(-1), torch.ones(3))


def test_scalar_head_option():
    policy = make_policy(reward_head="scalar")
    reward, probs = policy.predict_reward({k: v for k, v in make_batch(policy).items() if k.startswith("observation")})
    assert probs is None and torch.all((reward > 0) & (reward < 1))


@pytest.mark.parametrize("state_dim", [0, 4])
def test_reward_head_on_encoder_image_tokens(state_dim):
    """The head reads the mean of the image tokens: the reward moves with the image, and its
    loss reaches the encoder."""
    torch.manual_seed(0)
    policy = make_policy(cameras=2, state_dim=state_dim, reward_features="encoder_images").eval()
    obs = {k: v for k, v in make_batch(policy).items() if k.startswith("observation")}
    reward, probs = policy.predict_reward(obs)
    assert reward.shape == (3,) and probs.shape == (3, policy.config.reward_bins)
    assert policy._features.shape == (3, policy.config.dim_model)
    other = {**obs, "observation.images.cam0": torch.rand_like(obs["observation.images.cam0"])}
    assert not torch.allclose(policy.predict_reward(other)[0], reward)
    loss, info = policy.train().forward(make_batch(policy))
    loss.backward()
    assert policy.model.encoder.layers[0].self_attn.in_proj_weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="reward_features"):
        make_policy(reward_features="pooled")
    with pytest.raises(ValueError, match="needs image features"):
        make_policy(cameras=0, env_state_dim=3, reward_features="encoder_images")


def test_dropout_only_in_training():
    policy = make_policy(dropout=0.5)
    obs = {k: v for k, v in make_batch(policy).items() if k.startswith("observation")}
    first, _ = policy.predict_reward(obs)
    second, _ = policy.predict_reward(obs)
    assert torch.equal(first, second)


def test_target_encodings_put_mass_where_the_value_is():
    config = RewACTConfig(reward_bins=10)
    edges = bin_edges(config)
    centres = (edges[1:] + edges[:-1]) / 2
    values = torch.tensor([0.0, 0.33, 1.0])
    for soft in (hl_gauss_targets(values, edges, 0.075), two_hot_targets(values, edges)):
        assert torch.allclose(soft.sum(-1), torch.ones(3))
        assert soft[0].argmax() == 0 and soft[2].argmax() == 9
    two_hot = two_hot_targets(torch.tensor([0.33]), edges)
    assert torch.isclose(two_hot @ centres, torch.tensor([0.33]))
    assert (two_hot > 0).sum() == 2


def test_interpolation_targets_are_rewacts_ramp():
    ramp = interpolation_targets(11, 0.05, 0.95)
    expected = np.clip((np.arange(11) / 10 - 0.05) / 0.9, 0, 1)
    np.testing.assert_allclose(ramp, expected, rtol=1e-6)
    assert ramp[0] == 0 and ramp[-1] == 1


def test_keypoint_targets_and_both_json_formats(tmp_path):
    np.testing.assert_allclose(keypoint_targets(9, {4: 0.5, 8: 1.0}), [0, .125, .25, .375, .5, .625, .75, .875, 1])
    np.testing.assert_allclose(keypoint_targets(6, {2: 0.5}), [0, .25, .5, .5, .5, .5])
    write_keypoints(tmp_path / "new.json", {3: {5: 0.5, 9: 1.0}})
    (tmp_path / "old.json").write_text(json.dumps({"3": {"5": 0.5, "9": 1.0}}))
    assert read_keypoints(tmp_path / "new.json") == read_keypoints(tmp_path / "old.json") == {3: {5: 0.5, 9: 1.0}}


@pytest.fixture(scope="module")
def demo_meta(demo_root):
    return LeRobotDatasetMetadata("local/demo_metaworld", root=demo_root)


def test_reward_table_from_interpolation_and_ground_truth(demo_meta):
    table = build_reward_table(RewACTConfig(), demo_meta)
    episode = demo_meta.episodes[1]
    start, length = episode["dataset_from_index"], episode["length"]
    np.testing.assert_allclose(table.reward[start : start + length].numpy(), interpolation_targets(length))
    assert table.labeled.all() and table.imitate.all()

    truth = build_reward_table(RewACTConfig(label_source="ground_truth"), demo_meta)
    frames = pd.read_parquet(Path(demo_meta.root) / "ground_truth" / "frames.parquet")
    np.testing.assert_allclose(truth.reward.numpy(), frames.sort_values(["episode_index", "frame_index"]).progress)
    episodes = pd.read_parquet(Path(demo_meta.root) / "ground_truth" / "episodes.parquet")
    for row in episodes.itertuples():
        span = demo_meta.episodes[row.episode_index]
        imitated = truth.imitate[span["dataset_from_index"] : span["dataset_to_index"]]
        assert bool(imitated.all()) == (row.outcome == "success")


def test_label_errors_are_clear(demo_meta, tmp_path):
    write_keypoints(tmp_path / "k.json", {0: {10: 1.0}})
    with pytest.raises(LabelError, match=r"no labels for 13 episode\(s\): 1, 2"):
        build_reward_table(RewACTConfig(label_source="keypoints", labels_path=str(tmp_path / "k.json")), demo_meta)
    partial = build_reward_table(
        RewACTConfig(label_source="keypoints", labels_path=str(tmp_path / "k.json"), skip_unlabeled_episodes=True),
        demo_meta,
    )
    assert partial.labeled.sum() == demo_meta.episodes[0]["length"]

    bad = pd.DataFrame({"episode_index": [0, 0], "frame_index": [0, 1], "reward": [0.5, 3.0]})
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(LabelError, match=r"outside \[0, 1\].*episode 0 frame 1 = 3.0"):
        build_reward_table(
            RewACTConfig(label_source="labels", labels_path=str(tmp_path / "bad.parquet"), skip_unlabeled_episodes=True),
            demo_meta,
        )
    with pytest.raises(LabelError, match="needs a `next.reward` feature"):
        build_reward_table(RewACTConfig(label_source="dataset"), demo_meta)
    with pytest.raises(ValueError, match="needs --policy.labels_path"):
        RewACTConfig(label_source="labels")


@pytest.fixture
def deterministic_policy_and_batch():
    """A policy without VAE sampling or dropout, so two forward passes differ only by their inputs,
    and a batch of four labelled frames."""
    torch.manual_seed(0)
    policy = make_policy(use_vae=False, dropout=0.0)
    batch = make_batch(policy, batch_size=4)
    batch[REWARD_LABELED] = torch.ones(4, dtype=torch.bool)
    return policy, batch


def test_failure_frames_train_reward_but_not_actions(deterministic_policy_and_batch):
    policy, batch = deterministic_policy_and_batch
    batch[REWARD_IMITATE] = torch.tensor([False, True, True, True])
    _, base = policy.forward(batch)

    changed_action = {**batch, "action": batch["action"].clone()}
    changed_action["action"][0] += 10.0
    _, after_action = policy.forward(changed_action)
    assert after_action["l1_loss"] == pytest.approx(base["l1_loss"])

    changed_reward = {**batch, "next.reward": batch["next.reward"].clone()}
    changed_reward["next.reward"][0] = 1.0 - changed_reward["next.reward"][0]
    _, after_reward = policy.forward(changed_reward)
    assert after_reward["reward_loss"] != pytest.approx(base["reward_loss"])

    unlabeled = {**changed_reward, REWARD_LABELED: torch.tensor([False, True, True, True])}
    _, masked = policy.forward(unlabeled)
    _, masked_base = policy.forward({**batch, REWARD_LABELED: unlabeled[REWARD_LABELED]})
    assert masked["reward_loss"] == pytest.approx(masked_base["reward_loss"])


def test_label_frequency_balance_gives_each_slice_of_the_reward_range_equal_weight(demo_meta):
    reward = torch.tensor([0.0, 0.1, 0.15, 0.5, 1.0, 1.0, 0.3])
    labeled = torch.tensor([True, True, True, True, True, True, False])
    weight = balance_weights(reward, labeled, bins=2)
    assert weight[~labeled].item() == 0 and weight[labeled].mean().item() == pytest.approx(1.0)
    assert weight[:3].sum().item() == pytest.approx(weight[3:6].sum().item())  # [0, .5) and [.5, 1]
    assert torch.equal(balance_weights(reward, labeled, bins=0), labeled.float())

    truth = build_reward_table(RewACTConfig(label_source="ground_truth", reward_balance="label_frequency"), demo_meta)
    slices = (truth.reward * 5).long().clamp(max=4)
    totals = torch.bincount(slices, weights=truth.weight, minlength=5)
    np.testing.assert_allclose(totals[totals > 0].numpy(), totals[totals > 0][0].item(), rtol=1e-4)
    assert torch.equal(build_reward_table(RewACTConfig(label_source="ground_truth"), demo_meta).weight,
                       torch.ones(len(truth.reward)))
    with pytest.raises(ValueError, match="reward_balance must be one of"):
        RewACTConfig(reward_balance="focal")


def test_reward_weights_reweight_the_reward_loss_only(deterministic_policy_and_batch):
    policy, batch = deterministic_policy_and_batch
    _, plain = policy.forward(batch)
    _, ones = policy.forward({**batch, REWARD_WEIGHT: torch.ones(4)})
    assert ones["reward_loss"] == pytest.approx(plain["reward_loss"])
    _, first_only = policy.forward({**batch, REWARD_WEIGHT: torch.tensor([1.0, 0.0, 0.0, 0.0])})
    _, first_masked = policy.forward({**batch, REWARD_LABELED: torch.tensor([True, False, False, False])})
    assert first_only["reward_loss"] == pytest.approx(first_masked["reward_loss"])
    assert first_only["reward_loss"] != pytest.approx(plain["reward_loss"])
    assert first_only["l1_loss"] == pytest.approx(plain["l1_loss"])


def test_per_sample_loss_for_lerobot_sample_weighting():
    torch.manual_seed(0)
    policy = make_policy(dropout=0.0)
    policy.eval()  # the same forward twice: no dropout, and the VAE's latent is deterministic in eval
    batch = make_batch(policy, batch_size=4)
    batch["action_is_pad"][2, 5:] = True  # samples with fewer valid steps still average their own
    torch.manual_seed(1)
    mean, info = policy.forward(batch)
    torch.manual_seed(1)
    per_sample, _ = policy.forward(batch, reduction="none")
    assert per_sample.shape == (4,)
    # LeRobot's RA-BC: (loss * w).sum() / w.sum(). Equal weights give the batch's own loss
    # (exactly, when every sample has as many valid steps), and weights move imitation only.
    even = {**batch, "action_is_pad": torch.zeros_like(batch["action_is_pad"])}
    torch.manual_seed(1)
    even_mean, _ = policy.forward(even)
    torch.manual_seed(1)
    even_none, _ = policy.forward(even, reduction="none")
    assert even_none.mean().item() == pytest.approx(even_mean.item(), rel=1e-5)
    weights = torch.tensor([0.0, 1.0, 0.0, 1.0])
    weighted = (per_sample * weights).sum() / weights.sum()
    assert weighted.item() == pytest.approx(per_sample[[1, 3]].mean().item(), rel=1e-5)
    spread = per_sample - per_sample.mean()
    assert spread.abs().max() > 0 and info["reward_loss"] > 0
    with pytest.raises(ValueError, match="reduction"):
        policy.forward(batch, reduction="sum")


def test_reward_loss_falls_when_overfitting():
    torch.manual_seed(0)
    policy = make_policy(cameras=0, state_dim=4, env_state_dim=6, action_dim=4, dropout=0.0)
    batch = make_batch(policy, batch_size=8, reward=torch.linspace(0, 1, 8))
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    losses = []
    for _ in range(300):
        loss, info = policy.forward(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(info["reward_mae"])
    assert losses[-1] < 0.35 * losses[0] and losses[-1] < 0.1


def test_select_action_is_a_tensor_and_the_combined_call_matches():
    torch.manual_seed(0)
    policy = make_policy(cameras=2, state_dim=5, action_dim=5)
    obs = {k: v[:1] for k, v in make_batch(policy).items() if k.startswith("observation")}
    policy.reset()
    action = policy.select_action(obs)
    assert isinstance(action, torch.Tensor) and action.shape == (1, 5)
    policy.reset()
    calls = []
    policy.model.register_forward_hook(lambda *a: calls.append(1))
    combined_action, reward = policy.select_action_with_reward(obs)
    assert len(calls) == 1
    assert torch.allclose(combined_action, action) and reward.shape == (1,)
    assert torch.allclose(reward, policy.predict_reward(obs)[0])


def dataset_features(state=(4,), image=(32, 32, 3), action=(3,)) -> dict:
    """Features as a LeRobot dataset stores them (images height, width, channels)."""
    return {
        "observation.state": {"dtype": "float32", "shape": state, "names": None},
        "observation.images.cam0": {"dtype": "video", "shape": image, "names": ["height", "width", "channels"]},
        "action": {"dtype": "float32", "shape": action, "names": None},
    }


def test_checkpoint_from_another_layout_is_rejected():
    policy = make_policy(cameras=1, state_dim=4, image=32)
    policy.check_features(dataset_features())  # the layout it was built for
    with pytest.raises(ValueError, match="'observation.state' has shape \\(7,\\), the checkpoint expects \\(4,\\)"):
        policy.check_features(dataset_features(state=(7,)))
    tall = make_policy(cameras=1, state_dim=4, image=32)
    tall.config.input_features["observation.images.cam0"] = PolicyFeature(FeatureType.VISUAL, (3, 48, 32))
    with pytest.raises(ValueError, match="'observation.images.cam0' has shape \\(3, 32, 48\\)"):
        tall.check_features(dataset_features(image=(32, 48, 3)))  # same sizes, height and width swapped
    with pytest.raises(ValueError, match="'action' missing"):
        policy.check_features({k: v for k, v in dataset_features().items() if k != "action"})


@pytest.mark.slow
def test_stock_lerobot_train_then_reload_predicts_every_frame(demo_root, tmp_path):
    from training.evaluation.predict import load_policy, predict_rewards

    cmd = lerobot_train_command(demo_root, tmp_path / "run", "rewact", "--policy.dim_model=64",
                                "--policy.dim_feedforward=128", "--policy.n_encoder_layers=1")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reward_loss" in result.stdout + result.stderr

    loaded = load_policy(tmp_path / "run/checkpoints/last")
    predicted = predict_rewards(loaded, demo_root, [4, 9])
    assert len(predicted[9][0]) == LeRobotDatasetMetadata("local/demo", root=demo_root).episodes[9]["length"]
    reward, probs = predicted[4]
    length = LeRobotDatasetMetadata("local/demo", root=demo_root).episodes[4]["length"]
    assert reward.shape == (length,) and probs.shape == (length, loaded.policy.config.reward_bins)
    assert np.all((reward >= 0) & (reward <= 1))

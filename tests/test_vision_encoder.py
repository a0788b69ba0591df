"""DINOv3 image encoders for RewACT: token grids, freezing, weight formats, errors, stock lerobot-train."""

import json
import re
import subprocess
from dataclasses import replace

import pytest
import torch
from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
from lerobot.utils.constants import OBS_IMAGES
from transformers import (
    DINOv3ConvNextConfig,
    DINOv3ConvNextModel,
    DINOv3ViTConfig,
    DINOv3ViTImageProcessor,
    DINOv3ViTModel,
)

from common.cli import ConfigError
from conftest import lerobot_train_command
from conftest import TINY_ACT, act_features
from rewact.configuration_actvantage import ACTvantageConfig
from rewact.configuration_rewact import RewACTConfig
from rewact.modeling_actvantage import ACTvantagePolicy
from rewact.modeling_rewact import RewACTPolicy
from rewact.vision_encoder import DINOV3_VARIANTS, DINOv3Config, DINOv3Encoder, load_dinov3, random_dinov3

TINY_VIT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                num_register_tokens=4)
TINY_CONVNEXT = dict(hidden_sizes=[8, 16, 24, 40], depths=[1, 1, 1, 1])
# Mean and std of a weights directory's preprocessor, unlike ImageNet's so a test can tell them apart.
OWN_MEAN, OWN_STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Tiny random DINOv3 ViT and ConvNeXt saved with `save_pretrained` (the ViT with its preprocessor)."""
    root = tmp_path_factory.mktemp("dinov3")
    torch.manual_seed(0)
    DINOv3ViTModel(DINOv3ViTConfig(**TINY_VIT)).save_pretrained(root / "vit")
    DINOv3ViTImageProcessor(image_mean=OWN_MEAN, image_std=OWN_STD).save_pretrained(root / "vit")
    DINOv3ConvNextModel(DINOv3ConvNextConfig(**TINY_CONVNEXT)).save_pretrained(root / "convnext")
    return {"vit": str(root / "vit"), "convnext": str(root / "convnext")}


def make_policy(weights, variant="vits16", cameras=2, height=64, width=96, policy=(RewACTConfig, RewACTPolicy),
                **overrides):
    features = act_features(cameras)
    for key in features["input_features"]:
        if key.startswith(OBS_IMAGES):
            features["input_features"][key] = PolicyFeature(FeatureType.VISUAL, (3, height, width))
    config_class, policy_class = policy
    config = config_class(
        **features, vision_encoder_type="dinov3", dinov3=DINOv3Config(variant=variant, weights=weights), **{**TINY_ACT, **overrides},
    )
    return policy_class(config)


def make_batch(policy, batch_size=2):
    config = policy.config
    batch = {key: torch.rand(batch_size, *f.shape) for key, f in config.input_features.items()}
    batch["action"] = torch.randn(batch_size, config.chunk_size, 3)
    batch["action_is_pad"] = torch.zeros(batch_size, config.chunk_size, dtype=torch.bool)
    batch["next.reward"] = torch.rand(batch_size)
    return batch


@pytest.mark.parametrize("family, variant, grid", [("vit", "vits16", (4, 6)), ("convnext", "convnext_tiny", (2, 3))])
def test_patch_tokens_per_camera_reach_acts_encoder(tiny_weights, family, variant, grid):
    """64 x 96 images: ViT/16 gives a 4 x 6 patch grid, ConvNeXt (stride 32) 2 x 3; each camera's
    tokens are the final-norm patch tokens, without CLS, register or pooled tokens."""
    policy = make_policy(tiny_weights[family], variant)
    encoder = policy.model.backbone
    assert isinstance(encoder, DINOv3Encoder) and encoder.grid(64, 96) == grid
    images = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        feature_map = encoder(images)["feature_map"]
        pixels = (images - encoder.pixel_mean) / encoder.pixel_std
        patch_tokens = encoder.backbone(pixel_values=pixels).last_hidden_state[:, -grid[0] * grid[1]:]
    assert feature_map.shape == (2, encoder.out_channels, *grid)
    torch.testing.assert_close(feature_map.flatten(2).transpose(1, 2), patch_tokens)

    seen = {}
    policy.model.encoder.register_forward_hook(lambda module, args, output: seen.update(tokens=args[0].shape))
    loss, _ = policy.forward(make_batch(policy))
    assert torch.isfinite(loss)
    assert seen["tokens"] == (1 + 1 + 2 * grid[0] * grid[1], 2, 32)  # latent, state, two cameras


def test_actvantage_gets_the_same_encoder(tiny_weights):
    """ACTvantage chooses its image encoder like RewACT: the patch tokens plus its advantage token."""
    policy = make_policy(tiny_weights["vit"], policy=(ACTvantageConfig, ACTvantagePolicy))
    assert isinstance(policy.model.backbone, DINOv3Encoder)
    seen = {}
    policy.model.encoder.register_forward_hook(lambda module, args, output: seen.update(tokens=args[0].shape))
    batch = make_batch(policy)
    batch["advantage"] = torch.ones(2)
    loss, _ = policy.forward(batch)
    assert torch.isfinite(loss) and seen["tokens"] == (1 + 1 + 1 + 2 * 4 * 6, 2, 32)  # latent, advantage, state


def test_images_are_normalised_once_with_the_weights_own_statistics(tiny_weights):
    policy = make_policy(tiny_weights["vit"])
    assert policy.config.normalization_mapping["VISUAL"] == NormalizationMode.IDENTITY  # not by LeRobot too
    assert policy.config.pretrained_backbone_weights is None  # ACT's ResNet weights are not fetched
    encoder = policy.model.backbone
    assert encoder.pixel_mean.flatten().tolist() == pytest.approx(OWN_MEAN)
    assert encoder.pixel_std.flatten().tolist() == pytest.approx(OWN_STD)
    convnext = make_policy(tiny_weights["convnext"], "convnext_tiny").model.backbone  # no preprocessor saved
    assert convnext.pixel_mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


@pytest.mark.parametrize("frozen", [True, False])
def test_frozen_encoder_stays_fixed_while_the_projection_trains(tiny_weights, frozen):
    policy = make_policy(tiny_weights["vit"], freeze_vision_encoder=frozen)
    policy.train()
    assert policy.model.backbone.backbone.training is not frozen  # frozen: eval mode (no RoPE jitter)
    optimizer = policy.config.get_optimizer_preset().build(policy.get_optim_params())  # as lerobot-train builds it
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    dinov3 = dict(policy.model.backbone.backbone.named_parameters())
    assert any(id(p) in optimized for p in dinov3.values()) is not frozen
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}

    loss, _ = policy.forward(make_batch(policy))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    after = dict(policy.named_parameters())
    dinov3_changed = [name for name, p in dinov3.items() if not torch.equal(before["model.backbone.backbone." + name], p)]
    assert bool(dinov3_changed) is not frozen
    assert not torch.equal(before["model.encoder_img_feat_input_proj.weight"],
                           after["model.encoder_img_feat_input_proj.weight"])


def original_layout(model, family):
    """The state dict of `model` as facebookresearch/dinov3 names and shapes it (the inverse of
    transformers' conversion): fused qkv with a masked zero key bias, (1, D) mask token, RoPE periods."""
    state = {k.removeprefix("model."): v for k, v in model.state_dict().items()}
    if family == "convnext":
        original = {}
        for key, value in state.items():
            key = re.sub(r"stages\.(\d+)\.downsample_layers\.(\d+)", r"downsample_layers.\1.\2", key)
            key = re.sub(r"stages\.(\d+)\.layers\.(\d+)", r"stages.\1.\2", key)
            key = key.replace("depthwise_conv", "dwconv").replace("pointwise_conv", "pwconv").replace("layer_norm", "norm")
            original[key] = value
        original["norms.3.weight"], original["norms.3.bias"] = original["norm.weight"], original["norm.bias"]
        return original
    original = {
        "cls_token": state["embeddings.cls_token"], "storage_tokens": state["embeddings.register_tokens"],
        "mask_token": state["embeddings.mask_token"].reshape(1, -1),
        "patch_embed.proj.weight": state["embeddings.patch_embeddings.weight"],
        "patch_embed.proj.bias": state["embeddings.patch_embeddings.bias"],
        "norm.weight": state["norm.weight"], "norm.bias": state["norm.bias"],
        "rope_embed.periods": torch.ones(model.config.hidden_size // model.config.num_attention_heads // 4),
    }
    for i in range(model.config.num_hidden_layers):
        layer = f"layer.{i}."
        attention = layer + "attention."
        q_bias = state[attention + "q_proj.bias"]
        original |= {
            f"blocks.{i}.attn.qkv.weight": torch.cat([state[attention + f"{n}_proj.weight"] for n in "qkv"]),
            f"blocks.{i}.attn.qkv.bias": torch.cat([q_bias, torch.zeros_like(q_bias), state[attention + "v_proj.bias"]]),
            f"blocks.{i}.attn.qkv.bias_mask": torch.cat([torch.ones_like(q_bias), torch.zeros_like(q_bias),
                                                         torch.ones_like(q_bias)]),
            f"blocks.{i}.attn.proj.weight": state[attention + "o_proj.weight"],
            f"blocks.{i}.attn.proj.bias": state[attention + "o_proj.bias"],
            f"blocks.{i}.ls1.gamma": state[layer + "layer_scale1.lambda1"],
            f"blocks.{i}.ls2.gamma": state[layer + "layer_scale2.lambda1"],
            f"blocks.{i}.mlp.fc1.weight": state[layer + "mlp.up_proj.weight"],
            f"blocks.{i}.mlp.fc1.bias": state[layer + "mlp.up_proj.bias"],
            f"blocks.{i}.mlp.fc2.weight": state[layer + "mlp.down_proj.weight"],
            f"blocks.{i}.mlp.fc2.bias": state[layer + "mlp.down_proj.bias"],
        }
        for norm in ("norm1", "norm2"):
            original[f"blocks.{i}.{norm}.weight"] = state[layer + norm + ".weight"]
            original[f"blocks.{i}.{norm}.bias"] = state[layer + norm + ".bias"]
    return original


@pytest.fixture
def tiny_variants(monkeypatch):
    """vits16 and convnext_tiny shrunk, so original checkpoints convert into a tiny architecture."""
    for name, architecture in (("vits16", TINY_VIT), ("convnext_tiny", TINY_CONVNEXT)):
        monkeypatch.setitem(DINOV3_VARIANTS, name, replace(DINOV3_VARIANTS[name], architecture=architecture))


@pytest.mark.parametrize("family, variant", [("vit", "vits16"), ("convnext", "convnext_tiny")])
def test_save_pretrained_and_original_checkpoint_give_identical_features(tmp_path, tiny_variants, family, variant):
    """Random weights saved both ways (the original layout converts into the variant's
    architecture); each loads into the same features."""
    torch.manual_seed(0)
    reference = random_dinov3(variant).eval()
    reference.save_pretrained(tmp_path / "hf")
    torch.save(original_layout(reference, family), tmp_path / "original.pth")
    images = torch.rand(1, 3, 48, 64)
    features = []
    for weights in (tmp_path / "hf", tmp_path / "original.pth"):
        model, mean, std = load_dinov3(DINOv3Config(variant=variant, weights=str(weights)))
        encoder = DINOv3Encoder(model, mean, std, frozen=True)
        with torch.no_grad():
            features.append(encoder(images)["feature_map"])
    with torch.no_grad():
        expected = reference(pixel_values=(images - encoder.pixel_mean) / encoder.pixel_std).last_hidden_state
    assert torch.equal(features[0], features[1])
    torch.testing.assert_close(features[0].flatten(2).transpose(1, 2), expected[:, -features[0][0, 0].numel():])


def test_wrong_variant_or_weights_are_one_clear_line(tiny_weights, tiny_variants, tmp_path):
    cases = [
        (lambda: DINOv3Config(variant="vitx16"), "unknown DINOv3 variant 'vitx16'; choose one of vits16, vitb16"),
        (lambda: load_dinov3(DINOv3Config(weights=str(tmp_path / "missing.pth"))), "DINOv3 weights not found: "),
        (lambda: load_dinov3(DINOv3Config(weights=str(tmp_path / "no" / "such" / "dir"))), "DINOv3 weights not found"),
        (lambda: load_dinov3(DINOv3Config(weights="outputs/dinov3")), "cannot load DINOv3 weights 'outputs/dinov3'"),
        (lambda: load_dinov3(DINOv3Config(variant="vitb16", weights=tiny_weights["convnext"])),
         "hold a DINOv3ConvNextModel, but variant 'vitb16' needs a DINOv3ViTModel"),
    ]
    for make, message in cases:
        with pytest.raises(ConfigError) as error:
            make()
        assert message in str(error.value) and "\n" not in str(error.value)
    wider = tmp_path / "wider.pth"
    torch.save(original_layout(DINOv3ViTModel(DINOv3ViTConfig(**{**TINY_VIT, "hidden_size": 48})), "vit"), wider)
    convnext = tmp_path / "convnext.pth"
    torch.save(original_layout(random_dinov3("convnext_tiny"), "convnext"), convnext)
    for weights, message in ((wider, "does not fit DINOv3 vits16: mismatched_keys embeddings.cls_token (1, 1, 48) vs (1, 1, 32)"),
                             (convnext, "missing_keys embeddings.cls_token")):
        with pytest.raises(ConfigError) as error:
            load_dinov3(DINOv3Config(variant="vits16", weights=str(weights)))
        assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


@pytest.mark.slow
def test_stock_lerobot_train_with_a_dinov3_encoder(demo_root, tiny_weights, tmp_path):
    from training.evaluation.predict import load_policy

    dinov3 = ["--policy.vision_encoder_type=dinov3", "--policy.dinov3.variant=vits16"]
    cmd = lerobot_train_command(demo_root, tmp_path / "run", "rewact", "--policy.dim_model=64",
                                "--policy.dim_feedforward=128", "--policy.n_encoder_layers=1", *dinov3,
                                f"--policy.dinov3.weights={tiny_weights['vit']}")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "run/checkpoints/last/pretrained_model/config.json").read_text())
    assert saved["vision_encoder_type"] == "dinov3" and saved["normalization_mapping"]["VISUAL"] == "IDENTITY"

    encoder = load_policy(tmp_path / "run/checkpoints/last").policy.model.backbone
    assert isinstance(encoder, DINOv3Encoder) and encoder.grid(96, 96) == (6, 6)  # the demo's 96 px cameras
    source = DINOv3ViTModel.from_pretrained(tiny_weights["vit"]).state_dict()
    assert all(torch.equal(source[name], tensor) for name, tensor in encoder.backbone.state_dict().items())

    wrong = subprocess.run(cmd[:-2] + ["--policy.dinov3.variant=vitb"], capture_output=True, text=True, timeout=600)
    assert wrong.returncode == 2
    assert "argument --policy.dinov3.variant: invalid choice: 'vitb' (choose from 'vits16', 'vitb16'" in \
        wrong.stderr.strip().splitlines()[-1]


def test_resnet_stays_the_default():
    config = RewACTConfig(**act_features(state_dim=0, action_dim=2), **TINY_ACT)
    assert config.vision_encoder_type == "resnet" and config.normalization_mapping["VISUAL"] == NormalizationMode.MEAN_STD
    assert not isinstance(RewACTPolicy(config).model.backbone, DINOv3Encoder)


def test_token_budget_command(cli, tiny_weights, tiny_variants, tmp_path):
    result = cli("rewact.vision_tokens", "--h", 48, "--w", 80, "--num-cameras", 3, "--variant", "vits16",  # shrunk
                 "--repeats", 1)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "vits16, random weights: none given (the counts and the time do not depend on them)"
    assert lines[1] == "image 48 x 80: 3 x 5 = 15 tokens per camera"
    assert lines[2].startswith("ACT encoder input: 1 latent + 1 state + 3 x 15 image = 47 tokens")
    assert re.fullmatch(r"encoder forward, batch 1 x 3 cameras on cpu: [\d.]+ ms \(mean of 1\)", lines[3])

    own = cli("rewact.vision_tokens", "--h", 64, "--w", 96, "--variant", "convnext_tiny", "--weights",
              tiny_weights["convnext"], "--repeats", 1)
    assert own.stdout.splitlines()[:2] == [f"convnext_tiny, weights {tiny_weights['convnext']}",
                                           "image 64 x 96: 2 x 3 = 6 tokens per camera"]
    resnet = cli("rewact.vision_tokens", "--h", 96, "--w", 128, "--variant", "resnet18", "--repeats", 1)
    assert "image 96 x 128: 3 x 4 = 12 tokens per camera" in resnet.stdout

    missing = cli("rewact.vision_tokens", "--h", 64, "--w", 64, "--weights", tmp_path / "missing.pth")
    assert missing.returncode == 2 and missing.stderr == f"error: DINOv3 weights not found: {tmp_path / 'missing.pth'}\n"

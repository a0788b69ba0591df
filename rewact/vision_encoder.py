"""Pretrained DINOv3 image encoders in place of ACT's ResNet, for any ACT-style policy.

A policy whose config inherits `VisionEncoderOptions` calls `attach_vision_encoder(model, config)`
on its `ACT` model. With `vision_encoder_type="dinov3"` that swaps ACT's `backbone` for a
`DINOv3Encoder` (transformers' `DINOv3ViTModel` or `DINOv3ConvNextModel`) that returns what ACT's
ResNet returns, a (B, C, h, w) feature map: the final-norm patch tokens (no CLS or register
tokens; for ConvNeXt the last stage), laid out on the patch grid. ACT then does the rest as it
does for the ResNet: its 1x1 projection (a Linear from C to `dim_model`, rebuilt here for C), its
2-D sinusoidal position embedding over the grid of each camera, and the tokens appended to its
transformer encoder's input. Only DINOv3 is frozen (by default); the projection always trains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import torch
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from lerobot.configs.types import NormalizationMode
from torch import Tensor, nn
from transformers import (
    AutoImageProcessor,
    AutoModel,
    DINOv3ConvNextConfig,
    DINOv3ConvNextModel,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    PreTrainedModel,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from common.cli import ConfigError

VisionEncoderType = Literal["resnet", "dinov3"]
ORIGINAL_CHECKPOINT_SUFFIXES = (".pth", ".pt")


@dataclass(frozen=True)
class DINOv3Variant:
    """A published DINOv3 size: its architecture and its weights on the hub."""

    family: str  # "vit" or "convnext"
    hub_id: str
    architecture: dict


_VIT = dict(patch_size=16, num_register_tokens=4, use_gated_mlp=False, hidden_act="gelu")
_CONVNEXT_DEEP = [3, 3, 27, 3]
# Sizes as transformers' convert_dinov3_{vit,convnext}_to_hf.py build them.
DINOV3_VARIANTS = {
    "vits16": DINOv3Variant("vit", "facebook/dinov3-vits16-pretrain-lvd1689m", dict(
        _VIT, hidden_size=384, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=6)),
    "vitb16": DINOv3Variant("vit", "facebook/dinov3-vitb16-pretrain-lvd1689m", dict(
        _VIT, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)),
    "vitl16": DINOv3Variant("vit", "facebook/dinov3-vitl16-pretrain-lvd1689m", dict(
        _VIT, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)),
    "convnext_tiny": DINOv3Variant("convnext", "facebook/dinov3-convnext-tiny-pretrain-lvd1689m", dict(
        depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768])),
    "convnext_small": DINOv3Variant("convnext", "facebook/dinov3-convnext-small-pretrain-lvd1689m", dict(
        depths=_CONVNEXT_DEEP, hidden_sizes=[96, 192, 384, 768])),
    "convnext_base": DINOv3Variant("convnext", "facebook/dinov3-convnext-base-pretrain-lvd1689m", dict(
        depths=_CONVNEXT_DEEP, hidden_sizes=[128, 256, 512, 1024])),
    "convnext_large": DINOv3Variant("convnext", "facebook/dinov3-convnext-large-pretrain-lvd1689m", dict(
        depths=_CONVNEXT_DEEP, hidden_sizes=[192, 384, 768, 1536])),
}
# The variant as a choice, so a command line (draccus) rejects an unknown one with the list of names.
DINOv3VariantName = Literal[tuple(DINOV3_VARIANTS)]
FAMILIES = {
    "vit": (DINOv3ViTConfig, DINOv3ViTModel),
    "convnext": (DINOv3ConvNextConfig, DINOv3ConvNextModel),
}

# Original (facebookresearch/dinov3) parameter names -> transformers' hub layout, applied in order,
# as transformers' convert_dinov3_vit_to_hf.py and convert_dinov3_convnext_to_hf.py do.
# fmt: off
ORIGINAL_TO_HUB_KEYS = {
    "vit": {
        r"cls_token":                   r"embeddings.cls_token",
        r"mask_token":                  r"embeddings.mask_token",
        r"storage_tokens":              r"embeddings.register_tokens",
        r"patch_embed.proj":            r"embeddings.patch_embeddings",
        r"periods":                     r"inv_freq",
        r"rope_embed":                  r"rope_embeddings",
        r"blocks.(\d+).attn.proj":      r"layer.\1.attention.o_proj",
        r"blocks.(\d+).attn.":          r"layer.\1.attention.",
        r"blocks.(\d+).ls(\d+).gamma":  r"layer.\1.layer_scale\2.lambda1",
        r"blocks.(\d+).mlp.fc1":        r"layer.\1.mlp.up_proj",
        r"blocks.(\d+).mlp.fc2":        r"layer.\1.mlp.down_proj",
        r"blocks.(\d+).mlp":            r"layer.\1.mlp",
        r"blocks.(\d+).norm":           r"layer.\1.norm",
        r"w1":                          r"gate_proj",
        r"w2":                          r"up_proj",
        r"w3":                          r"down_proj",
    },
    "convnext": {
        r"dwconv":                          r"depthwise_conv",
        r"pwconv":                          r"pointwise_conv",
        r"norm":                            r"layer_norm",
        r"stages.(\d+).(\d+)":              r"stages.\1.layers.\2",
        r"downsample_layers.(\d+).(\d+)":   r"stages.\1.downsample_layers.\2",
    },
}
# fmt: on
# Original entries transformers has no parameter for: the key bias DINOv3 masks to zero, the
# masks themselves, RoPE periods (recomputed), the local-crop CLS norm and ConvNeXt's side norms.
SKIPPED_ORIGINAL_KEYS = re.compile(r"bias_mask|local_cls_norm|rope_embed\.periods|^norms\.")


def dinov3_variant(name: str) -> DINOv3Variant:
    if name not in DINOV3_VARIANTS:
        raise ConfigError(f"unknown DINOv3 variant '{name}'; choose one of {', '.join(DINOV3_VARIANTS)}")
    return DINOV3_VARIANTS[name]


@dataclass
class DINOv3Config:
    """Which DINOv3 encodes the images, and whose weights it starts from.

    variant: a published size, one of `DINOV3_VARIANTS` (vits16, vitb16, vitl16, convnext_tiny,
        convnext_small, convnext_base, convnext_large).
    weights: a hub id or a local directory that `from_pretrained` reads (its config.json decides
        the sizes, and must be of the variant's family), or an original DINOv3 checkpoint (.pth),
        converted on load into the variant's architecture. None: the variant's own hub weights.
    """

    variant: DINOv3VariantName = "vitb16"
    weights: str | None = None

    def __post_init__(self):
        dinov3_variant(self.variant)

    @property
    def source(self) -> str:
        return self.weights or DINOV3_VARIANTS[self.variant].hub_id


@dataclass
class VisionEncoderOptions:
    """Config fields (mixed into a policy config before `ACTConfig`) that choose ACT's image encoder.

    vision_encoder_type: "resnet" (ACT's own, `vision_backbone` / `pretrained_backbone_weights`)
        or "dinov3" (`dinov3.variant`, `dinov3.weights`). With DINOv3 the images reach the policy
        unnormalised (VISUAL normalisation IDENTITY) and the encoder normalises them once, with the
        mean and std its weights were trained with; ACT's ResNet weights are not loaded.
    freeze_vision_encoder: keep DINOv3's weights fixed (in eval mode, out of the optimizer); the
        projection to `dim_model` trains either way. ACT's ResNet always trains.
    """

    vision_encoder_type: VisionEncoderType = "resnet"
    dinov3: DINOv3Config = field(default_factory=DINOv3Config)
    freeze_vision_encoder: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.vision_encoder_type not in get_args(VisionEncoderType):
            raise ConfigError(f"vision_encoder_type must be one of {get_args(VisionEncoderType)}, "
                              f"got '{self.vision_encoder_type}'")
        if self.vision_encoder_type == "dinov3":
            self.pretrained_backbone_weights = None
            self.normalization_mapping = {**self.normalization_mapping, "VISUAL": NormalizationMode.IDENTITY}


class DINOv3Encoder(nn.Module):
    """Images in [0, 1] -> {"feature_map": (B, C, h, w)}, DINOv3's final-norm patch tokens on their grid."""

    def __init__(self, backbone: PreTrainedModel, mean: list[float], std: list[float], frozen: bool):
        super().__init__()
        self.backbone = backbone
        self.family = "vit" if isinstance(backbone, DINOv3ViTModel) else "convnext"
        self.frozen = frozen
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        if frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    @property
    def out_channels(self) -> int:
        config = self.backbone.config
        return config.hidden_size if self.family == "vit" else config.hidden_sizes[-1]

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Rows and columns of the feature map (tokens per camera = their product)."""
        config = self.backbone.config
        if self.family == "vit":
            return height // config.patch_size, width // config.patch_size
        height, width = height // 4, width // 4  # stem, then a stride-2 downsampling per later stage
        for _ in config.depths[1:]:
            height, width = height // 2, width // 2
        return height, width

    def train(self, mode: bool = True) -> DINOv3Encoder:
        """A frozen DINOv3 stays in eval mode (no dropout, no RoPE jitter) while the policy trains."""
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        pixels = (images - self.pixel_mean) / self.pixel_std
        tokens = self.backbone(pixel_values=pixels).last_hidden_state
        rows, columns = self.grid(*images.shape[-2:])
        patches = tokens[:, tokens.shape[1] - rows * columns:]  # drop CLS (+ register / pooled) tokens
        return {"feature_map": patches.transpose(1, 2).reshape(len(images), -1, rows, columns)}


def random_dinov3(variant: str) -> PreTrainedModel:
    """The variant's architecture with random weights (for sizing and timing, not for training)."""
    chosen = dinov3_variant(variant)
    config_class, model_class = FAMILIES[chosen.family]
    return model_class(config_class(**chosen.architecture))


def original_to_hub_layout(state_dict: dict[str, Tensor], family: str) -> dict[str, Tensor]:
    """An original DINOv3 state dict in the layout of the hub checkpoints transformers loads."""
    kept = {key: tensor for key, tensor in state_dict.items() if not SKIPPED_ORIGINAL_KEYS.search(key)}
    for fused in [key for key in kept if ".attn.qkv." in key]:  # split as transformers splits it
        for name, tensor in zip(("q_proj", "k_proj", "v_proj"), kept.pop(fused).chunk(3, dim=0), strict=True):
            if not fused.endswith("bias") or name != "k_proj":  # DINOv3 masks the key bias to zero
                kept[fused.replace("qkv", name)] = tensor
    converted = {}
    for key, tensor in kept.items():
        for pattern, replacement in ORIGINAL_TO_HUB_KEYS[family].items():
            key = re.sub(pattern, replacement, key)
        converted[key] = tensor.reshape(1, 1, -1) if key == "embeddings.mask_token" else tensor
    return converted


def load_dinov3(config: DINOv3Config) -> tuple[PreTrainedModel, list[float], list[float]]:
    """The configured DINOv3 with its weights, and the pixel mean and std those weights expect."""
    variant = DINOV3_VARIANTS[config.variant]
    source = config.source
    if source.endswith(ORIGINAL_CHECKPOINT_SUFFIXES):
        return _load_original_checkpoint(Path(source), config.variant), IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    if not Path(source).is_dir():
        try:
            validate_repo_id(source)
        except HFValidationError:
            raise ConfigError(f"DINOv3 weights not found: {source} is no directory, hub id or .pth file") from None
    try:
        model = AutoModel.from_pretrained(source)
    except (OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise ConfigError(f"cannot load DINOv3 weights '{source}' (a local directory or hub id): {first_line}") from None
    expected = FAMILIES[variant.family][1]
    if not isinstance(model, expected):
        raise ConfigError(f"DINOv3 weights '{source}' hold a {type(model).__name__}, but variant "
                          f"'{config.variant}' needs a {expected.__name__}")
    try:
        processor = AutoImageProcessor.from_pretrained(source)
        return model, list(processor.image_mean), list(processor.image_std)
    except OSError:  # no preprocessor_config.json: DINOv3's LVD-1689M statistics
        return model, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


def _load_original_checkpoint(path: Path, variant_name: str) -> PreTrainedModel:
    if not path.is_file():
        raise ConfigError(f"DINOv3 weights not found: {path}")
    variant = DINOV3_VARIANTS[variant_name]
    config_class, model_class = FAMILIES[variant.family]
    state_dict = original_to_hub_layout(torch.load(path, map_location="cpu", weights_only=True), variant.family)
    model, info = model_class.from_pretrained(None, config=config_class(**variant.architecture), state_dict=state_dict,
                                              ignore_mismatched_sizes=True, output_loading_info=True)
    described = {
        "mismatched_keys": [f"{key} {tuple(found)} vs {tuple(wanted)}" for key, found, wanted in info["mismatched_keys"]],
        "missing_keys": info["missing_keys"],
        "unexpected_keys": info["unexpected_keys"],
    }
    problems = {name: sorted(entries)[:2] for name, entries in described.items() if entries}
    if problems:
        raise ConfigError(f"{path} does not fit DINOv3 {variant_name}: "
                          + "; ".join(f"{name} {', '.join(keys)}" for name, keys in problems.items()))
    return model


def attach_vision_encoder(model: nn.Module, config: VisionEncoderOptions) -> None:
    """Give an `ACT` model the configured image encoder (ACT's ResNet stays for "resnet")."""
    if config.vision_encoder_type != "dinov3" or not config.image_features:
        return
    backbone, mean, std = load_dinov3(config.dinov3)
    model.backbone = DINOv3Encoder(backbone, mean, std, frozen=config.freeze_vision_encoder)
    model.encoder_img_feat_input_proj = nn.Conv2d(model.backbone.out_channels, config.dim_model, kernel_size=1)

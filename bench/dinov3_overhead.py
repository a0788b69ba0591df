"""What a DINOv3 image encoder costs RewACT: training-step time against ACT's ResNet18.

    python bench/dinov3_overhead.py [--variant vits16] [--sizes 96 224] [--batch-size 2] [--steps 3] [--device cpu]

Demo layout (2 cameras, state 4, action 4), ACT's default transformer, same batch and seed for
every row; DINOv3 frozen (the default) and trained. The DINOv3 has random weights saved with
`save_pretrained` (none are available here), which changes neither tokens nor time. Prints the
image tokens per camera, ACT's encoder input length, the mean step time and its ratio to the
ResNet18 step at the same image size, all measured in this run.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from rewact_overhead import timed

from rewact.configuration_rewact import RewACTConfig
from rewact.modeling_rewact import RewACTPolicy
from rewact.vision_encoder import DINOV3_VARIANTS, DINOv3Config, random_dinov3

CAMERAS = ("corner2", "topview")


def make_policy(size: int, device: str, **encoder) -> RewACTPolicy:
    inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (4,))}
    for camera in CAMERAS:
        inputs[f"observation.images.{camera}"] = PolicyFeature(FeatureType.VISUAL, (3, size, size))
    config = RewACTConfig(input_features=inputs, output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))},
                          pretrained_backbone_weights=None, device=device, **encoder)
    torch.manual_seed(0)
    return RewACTPolicy(config).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="vits16", choices=list(DINOV3_VARIANTS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 224])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as weights:
        torch.manual_seed(0)
        random_dinov3(args.variant).save_pretrained(weights)
        dinov3 = DINOv3Config(variant=args.variant, weights=weights)
        rows = {
            "resnet18": {},
            f"{args.variant} frozen": dict(vision_encoder_type="dinov3", dinov3=dinov3),
            f"{args.variant} trained": dict(vision_encoder_type="dinov3", dinov3=dinov3, freeze_vision_encoder=False),
        }
        print(f"RewACT training step, batch {args.batch_size}, {len(CAMERAS)} cameras, {args.device}, "
              f"mean of {args.steps} steps after one warm-up")
        for size in args.sizes:
            resnet_time = None
            for name, encoder in rows.items():
                policy = make_policy(size, args.device, **encoder)
                policy.train()
                optimizer = policy.config.get_optimizer_preset().build(policy.get_optim_params())
                torch.manual_seed(0)
                batch = {key: torch.rand(args.batch_size, *feature.shape, device=args.device)
                         for key, feature in policy.config.input_features.items()}
                batch["action"] = torch.randn(args.batch_size, policy.config.chunk_size, 4, device=args.device)
                batch["action_is_pad"] = torch.zeros(args.batch_size, policy.config.chunk_size, dtype=torch.bool,
                                                     device=args.device)
                batch["next.reward"] = torch.rand(args.batch_size, device=args.device)
                lengths = []
                policy.model.encoder.register_forward_hook(lambda module, inputs, output: lengths.append(len(inputs[0])))

                def step(policy=policy, optimizer=optimizer, batch=batch):
                    loss, _ = policy.forward(batch)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()

                seconds = timed(step, args.steps, args.device)
                resnet_time = resnet_time or seconds
                per_camera = (lengths[0] - 2) // len(CAMERAS)  # less the latent and state tokens
                print(f"{size:4d} px  {name:16s} {per_camera:4d} tokens/camera, {lengths[0]:4d} encoder tokens, "
                      f"{seconds * 1e3:8.0f} ms/step, {seconds / resnet_time:5.2f}x ResNet18")


if __name__ == "__main__":
    main()

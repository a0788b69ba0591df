"""Image tokens an encoder hands ACT's transformer per camera, and what encoding them costs.

    python -m rewact.vision_tokens --h 480 --w 640 --num-cameras 2 --variant vitb16 [--weights PATH]
        [--batch-size 1] [--repeats 3] [--device cpu]

ACT's encoder attends over all of its input tokens (the latent, the state and every camera's
patch grid), so its attention cost grows with the square of that count: check it before
training on full-size images. `--variant resnet18` shows ACT's own ResNet for comparison.
Without `--weights` the encoder has random weights, which changes neither count nor time.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision
from torchvision.models._utils import IntermediateLayerGetter
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from common.cli import run_cli
from rewact.vision_encoder import DINOV3_VARIANTS, DINOv3Config, DINOv3Encoder, load_dinov3, random_dinov3

RESNET = "resnet18"


def build_encoder(variant: str, weights: str | None) -> torch.nn.Module:
    """The encoder as ACT calls it: images in, {"feature_map": (B, C, h, w)} out."""
    if variant == RESNET:
        return IntermediateLayerGetter(torchvision.models.resnet18(), return_layers={"layer4": "feature_map"})
    if weights is None:
        model, mean, std = random_dinov3(variant), IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    else:
        model, mean, std = load_dinov3(DINOv3Config(variant=variant, weights=weights))
    return DINOv3Encoder(model, mean, std, frozen=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewact.vision_tokens", description=__doc__.split("\n\n")[0])
    parser.add_argument("--h", type=int, required=True, help="image height in pixels")
    parser.add_argument("--w", type=int, required=True, help="image width in pixels")
    parser.add_argument("--num-cameras", type=int, default=1)
    parser.add_argument("--variant", default="vitb16", choices=[*DINOV3_VARIANTS, RESNET])
    parser.add_argument("--weights", help="DINOv3 weights: hub id, from_pretrained directory or original .pth")
    parser.add_argument("--state-tokens", type=int, default=1,
                        help="tokens ACT adds besides the latent: 1 per robot / environment state feature")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed forward passes, after one warm-up")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.weights and args.variant == RESNET:
        parser.error("--weights are DINOv3 weights; ACT's ResNet takes none here")

    encoder = build_encoder(args.variant, args.weights).to(args.device).eval()
    images = torch.rand(args.batch_size, 3, args.h, args.w, device=args.device)

    def encode_cameras() -> torch.Tensor:  # one camera after another, as ACT encodes them
        for _ in range(args.num_cameras):
            feature_map = encoder(images)["feature_map"]
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return feature_map

    with torch.no_grad():
        rows, columns = encode_cameras().shape[-2:]  # also the warm-up
        start = time.perf_counter()
        for _ in range(args.repeats):
            encode_cameras()
        seconds = (time.perf_counter() - start) / args.repeats

    per_camera = rows * columns
    total = 1 + args.state_tokens + args.num_cameras * per_camera
    if args.weights:
        print(f"{args.variant}, weights {args.weights}")
    else:
        print(f"{args.variant}, random weights: none given (the counts and the time do not depend on them)")
    print(f"image {args.h} x {args.w}: {rows} x {columns} = {per_camera} tokens per camera")
    print(f"ACT encoder input: 1 latent + {args.state_tokens} state + {args.num_cameras} x {per_camera} image "
          f"= {total} tokens ({total * total:,} attention pairs per layer and head)")
    print(f"encoder forward, batch {args.batch_size} x {args.num_cameras} cameras on {args.device}: "
          f"{seconds * 1e3:.1f} ms (mean of {args.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

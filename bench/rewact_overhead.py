"""What the reward head costs: RewACT vs ACT training step, and reading the reward at inference.

    python bench/rewact_overhead.py [--batch-size 8] [--steps 20] [--device cpu]

Same feature layout as the demo dataset (2 cameras 96 px, state 4, action 4), same batch,
same seed; prints mean times and the ratios measured in this run.
"""

from __future__ import annotations

import argparse
import time

import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy

from rewact.configuration_rewact import RewACTConfig
from rewact.modeling_rewact import RewACTPolicy


def features():
    inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (4,))}
    for camera in ("corner2", "topview"):
        inputs[f"observation.images.{camera}"] = PolicyFeature(FeatureType.VISUAL, (3, 96, 96))
    return inputs, {"action": PolicyFeature(FeatureType.ACTION, (4,))}


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    inputs, outputs = features()
    common = dict(input_features=inputs, output_features=outputs, pretrained_backbone_weights=None, device=args.device)
    policies = {}
    for name, cls, config in (("act", ACTPolicy, ACTConfig(**common)), ("rewact", RewACTPolicy, RewACTConfig(**common))):
        torch.manual_seed(0)
        policies[name] = cls(config).to(args.device)
    torch.manual_seed(0)
    batch = {k: torch.rand(args.batch_size, *f.shape, device=args.device) for k, f in inputs.items()}
    batch["action"] = torch.randn(args.batch_size, 100, 4, device=args.device)
    batch["action_is_pad"] = torch.zeros(args.batch_size, 100, dtype=torch.bool, device=args.device)
    batch["next.reward"] = torch.rand(args.batch_size, device=args.device)

    step_time = {}
    for name, policy in policies.items():
        policy.train()
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5)

        def step(policy=policy, optimizer=optimizer):
            loss, _ = policy.forward(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        step_time[name] = timed(step, args.steps, args.device)
    print(f"training step, batch {args.batch_size}: ACT {step_time['act'] * 1e3:.1f} ms, "
          f"RewACT {step_time['rewact'] * 1e3:.1f} ms, ratio {step_time['rewact'] / step_time['act']:.3f}x")

    observation = {k: v[:1] for k, v in batch.items() if k.startswith("observation")}
    act, rewact = policies["act"], policies["rewact"]
    chunk = timed(lambda: act.predict_action_chunk(observation), args.steps, args.device)
    combined = timed(lambda: (rewact.reset(), rewact.select_action_with_reward(observation)), args.steps, args.device)
    reward_only = timed(lambda: rewact.predict_reward(observation), args.steps, args.device)
    print(f"inference, one observation: ACT chunk {chunk * 1e3:.2f} ms, RewACT action+reward {combined * 1e3:.2f} ms "
          f"(ratio {combined / chunk:.3f}x), reward alone {reward_only * 1e3:.2f} ms")


if __name__ == "__main__":
    main()

"""Run a trained RewACT checkpoint over whole episodes and collect its per-frame rewards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common.cli import ConfigError
from common.reward_sources import episode_lengths, frames_from, register


@dataclass
class LoadedPolicy:
    policy: object  # a LeRobot PreTrainedPolicy (RewACT: with a reward head)
    preprocessor: object  # PolicyProcessorPipeline
    postprocessor: object  # PolicyProcessorPipeline: the action back in the robot's units
    path: Path


def load_policy(checkpoint: str | Path, device: str = "cpu", overrides: Sequence[str] = ()) -> LoadedPolicy:
    """A checkpoint directory as written by lerobot-train (`.../pretrained_model`), of any policy
    type LeRobot knows (RewACT, ACTvantage, ACT, ...). `overrides` ("KEY=VALUE") change how it
    acts, as lerobot-eval's `--policy.KEY=VALUE` do: e.g. `n_action_steps=1` and
    `temporal_ensemble_coeff=0.01` for ACT's temporal ensembling. A bad one raises ConfigError."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    import rewact  # noqa: F401  (registers the config types)

    path = Path(checkpoint)
    if (path / "pretrained_model").is_dir():
        path = path / "pretrained_model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no policy checkpoint at {checkpoint} (expected config.json)")
    if malformed := [item for item in overrides if "=" not in item]:
        raise ConfigError(f"policy override(s) {malformed} are not KEY=VALUE")
    try:
        config = PreTrainedConfig.from_pretrained(path, cli_overrides=[f"--{item}" for item in overrides])
    except SystemExit:  # draccus, on a field the config does not have (its message is printed above)
        raise ConfigError(f"policy override(s) {', '.join(overrides)}: not fields of {path}'s config") from None
    except (ValueError, NotImplementedError) as error:  # the config's own checks
        raise ConfigError(f"policy override(s) {', '.join(overrides)} do not fit {path}: {error}") from None
    policy = get_policy_class(config.type).from_pretrained(path, config=config)
    policy.config.device = device
    policy.to(device).eval()
    preprocessor, postprocessor = make_pre_post_processors(
        policy.config, pretrained_path=str(path), preprocessor_overrides={"device_processor": {"device": device}}
    )
    return LoadedPolicy(policy, preprocessor, postprocessor, path)


@torch.no_grad()
def predict_rewards(
    loaded: LoadedPolicy, dataset_root: str | Path, episodes: list[int], batch_size: int = 32
) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
    """Per episode: predicted reward (T,) and, for a distributional head, bin probabilities (T, K).

    The dataset is opened once and read in order, however many episodes are asked for.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset(f"local/{Path(dataset_root).name}", root=dataset_root, episodes=sorted(episodes))
    loaded.policy.check_features(dataset.meta.features)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    owners, rewards, distributions = [], [], []
    for batch in loader:
        owners.append(batch["episode_index"].reshape(-1))
        batch.pop("next.reward", None)  # the policy predicts; it must not see a label
        reward, probs = loaded.policy.predict_reward(loaded.preprocessor(batch))
        rewards.append(reward.cpu())
        if probs is not None:
            distributions.append(probs.cpu())
    owner = torch.cat(owners).numpy()
    reward = torch.cat(rewards).numpy()
    probs = torch.cat(distributions).numpy() if distributions else None
    return {
        episode: (reward[owner == episode], None if probs is None else probs[owner == episode])
        for episode in episodes
    }


@register("rewact")
def read_predictions(checkpoint: str, dataset_meta, episodes: list[int] | None = None, **_) -> pd.DataFrame:
    """The `rewact:CHECKPOINT` reward source: the checkpoint's rewards on the dataset's frames."""
    episodes = sorted(episodes) if episodes is not None else sorted(episode_lengths(dataset_meta))
    predicted = predict_rewards(load_policy(checkpoint), dataset_meta.root, episodes)
    return frames_from({e: reward for e, (reward, _) in predicted.items()})

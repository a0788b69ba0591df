"""Roll a RewACT checkpoint out in the benchmark's MetaWorld env and log its reward at every frame.

    python -m training.rollout --checkpoint outputs/train/x/checkpoints/last --task push-v3 \
        --training-datasets outputs/bench --episodes 20 --out outputs/rollouts/x

Writes `<out>/rollouts.json` (success rate with its Wilson 95 % interval, and per rollout: seed,
success, length, the reward head's trace) and the first `--videos` rollouts as MP4 with the
reward drawn under the frames. The env is `lerobot-eval --env.type=metaworld_bench`'s; the
cameras, image size and state layout come from the checkpoint. `--record DIR --cameras
corner2,topview` also saves every rollout as a LeRobot dataset with those views (rendered even
for a policy that acts from state), the simulator's success and progress in its ground-truth
sidecar, as `data.generate` writes it: data for a pixel reward head, and for `labeling.run`.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from common.cli import ConfigError, parse_names, run_cli
from common.options import as_record, option, parse_options
from data.env import recorded_seeds
from data.rollout import CAMERAS, RolloutConfig
from training.evaluation.rollouts import Recording, env_config_for, run_rollouts
from training.evaluation.success import success_summary
from training.evaluation.predict import load_policy


@dataclass(frozen=True)
class RolloutOptions:
    """Roll a policy checkpoint out in the benchmark's MetaWorld env and log its reward per frame."""

    checkpoint: Path = option(help="a lerobot-train checkpoint (.../checkpoints/last) of RewACT or any policy")
    task: str = option(help="MetaWorld task, e.g. push-v3")
    out: Path = option(help="directory for rollouts.json and videos/")
    training_datasets: tuple[Path, ...] = option(
        (), help="the datasets the checkpoint learnt from: a seed one of their episodes used is refused")
    episodes: int = option(10, help="rollouts, one per seed")
    seed: int = option(1000, help="seed of the first rollout; the next ones count up (as lerobot-eval --seed)")
    action_repeat: int = option(2, help="simulator steps per action, as the dataset was recorded")
    episode_length: int = option(90, help="frames before a rollout is cut off")
    videos: int = option(2, help="rollouts written as MP4 with the reward under the frames")
    record: Path | None = option(None, help="also save the rollouts as a LeRobot dataset here (truth in its sidecar)")
    cameras: tuple[str, ...] = option(RolloutConfig.cameras, parse=parse_names,
                                      help=f"views the --record dataset holds (and the videos of a policy on "
                                           f"state show), from {','.join(CAMERAS)}")
    image_size: int = option(RolloutConfig.image_size, help="pixels on a side of each --record view (the policy's "
                                                             "own, if it reads images)")
    environment_state: bool = option(False, help="the --record dataset also holds observation.environment_state")
    policy_overrides: tuple[str, ...] = option((), parse=parse_names, help=(
        "comma-separated changes to how the policy acts, as lerobot-eval's --policy.KEY=VALUE, e.g. "
        "n_action_steps=1,temporal_ensemble_coeff=0.01 (ACT's temporal ensembling)"))
    device: str = option("cpu", help="torch device of the policy")
    overwrite: bool = option(False, help="replace an existing --out")

    def __post_init__(self):
        if self.episodes < 1:
            raise ConfigError("--episodes must be at least 1")
        if unknown := sorted(set(self.cameras) - set(CAMERAS)):
            raise ConfigError(f"unknown camera(s) {unknown}; choose from {', '.join(CAMERAS)}")

    @property
    def recording(self) -> Recording | None:
        if self.record is None:
            return None
        return Recording(self.record, self.cameras, self.image_size, self.environment_state,
                         repo_id=f"local/{self.record.name}")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.episodes))


def env_settings(env_config) -> dict:
    """The env's settings as JSON (its features follow from them)."""
    return {"type": env_config.type, **{field.name: getattr(env_config, field.name) for field in fields(env_config)
                                        if field.name not in ("features", "features_map")}}


def main(argv: list[str] | None = None) -> int:
    options = parse_options(RolloutOptions, argv, prog="python -m training.rollout")
    for out in (options.out, options.record):
        if out is not None and out.exists() and not options.overwrite:
            raise FileExistsError(f"{out} already exists (pass --overwrite to replace it)")
    reused = sorted(set(options.seeds) & recorded_seeds(list(options.training_datasets)))
    if reused:
        raise ConfigError(f"seed(s) {reused} are episodes of the training datasets; choose another --seed")
    loaded = load_policy(options.checkpoint, options.device, options.policy_overrides)
    env_config = env_config_for(loaded.policy.config, options.task, options.action_repeat, options.episode_length,
                                options.training_datasets, options.recording,
                                video_views=options.cameras if options.videos else ())
    shutil.rmtree(options.out, ignore_errors=True)
    options.out.mkdir(parents=True)
    rollouts = run_rollouts(loaded, env_config, options.seeds, options.out / "videos", options.videos,
                            options.recording)
    summary = success_summary([rollout.success for rollout in rollouts])
    report = {"options": as_record(options), "env": env_settings(env_config),
              **summary, "rollouts": [rollout.record for rollout in rollouts]}
    (options.out / "rollouts.json").write_text(json.dumps(report, indent=2))
    print(f"{options.task}: {summary['successes']}/{summary['episodes']} successes "
          f"(95 % CI {summary['ci95_low']:.2f}-{summary['ci95_high']:.2f}); wrote {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

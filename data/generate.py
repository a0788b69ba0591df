"""Build a ground-truth benchmark: MetaWorld v3 rollouts -> a LeRobot v3 dataset + GT sidecar.

    python -m data.generate --out outputs/metaworld_bench --tasks pick-place-v3,reach-v3 \
        --successes 10 --failures-per-kind 2 --cameras corner2,topview --image-size 96

The dataset holds only what a robot would record (camera frames, state, action, task). The
simulator's truth goes to `<out>/ground_truth/` (format: `common.ground_truth`), which labelers
never read.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import ConfigError, parse_names, run_cli
from common.options import option, parse_options
from data.benchmark import PRESETS, GenerateConfig, generate
from data.rollout import CAMERAS, FAILURE_KINDS, RolloutConfig


@dataclass(frozen=True)
class GenerateOptions:
    """Build a ground-truth benchmark: MetaWorld v3 rollouts -> a LeRobot v3 dataset + GT sidecar."""

    out: Path = option(help="output dataset directory")
    preset: str | None = option(None, choices=tuple(sorted(PRESETS)), help="start from a named episode plan")
    tasks: tuple[str, ...] | None = option(None, parse=parse_names,
                                           help=f"comma-separated MetaWorld tasks (default: {','.join(GenerateConfig.tasks)})")
    successes: int | None = option(None, help=f"expert successes per task (default: {GenerateConfig.successes})")
    failures_per_kind: int | None = option(None, help="episodes per failure kind and task "
                                                      f"(default: {GenerateConfig.failures_per_kind})")
    failure_kinds: tuple[str, ...] = option(FAILURE_KINDS, parse=parse_names, help="comma-separated failure kinds")
    cameras: tuple[str, ...] = option(RolloutConfig.cameras, parse=parse_names,
                                      help=f"comma-separated views, from {','.join(CAMERAS)}")
    image_size: int = option(RolloutConfig.image_size, help="pixels on each side of a view")
    action_repeat: int = option(RolloutConfig.action_repeat, help="simulator steps per recorded frame")
    seed: int = option(GenerateConfig.seed, help="base seed of every rollout")
    images: bool = option(False, help="store frames as images instead of MP4 video")
    environment_state: bool = option(False, help="also record observation.environment_state (object and goal "
                                                  "positions) for policies")
    repo_id: str = option(GenerateConfig.repo_id, help="the dataset's repo id")
    overwrite: bool = option(False, help="replace --out")

    def __post_init__(self):
        if unknown := sorted(set(self.failure_kinds) - set(FAILURE_KINDS)):
            raise ConfigError(f"unknown failure kind(s) {unknown}; choose from {', '.join(FAILURE_KINDS)}")
        if unknown := sorted(set(self.cameras) - set(CAMERAS)):
            raise ConfigError(f"unknown camera(s) {unknown}; choose from {', '.join(CAMERAS)}")

    def config(self) -> GenerateConfig:
        """The generator's configuration: the preset's episode plan, then what the command line sets."""
        plan = dict(PRESETS.get(self.preset, {}))
        plan |= {key: value for key, value in (("tasks", self.tasks), ("successes", self.successes),
                                               ("failures_per_kind", self.failures_per_kind)) if value is not None}
        rollout = RolloutConfig(cameras=self.cameras, image_size=self.image_size, action_repeat=self.action_repeat)
        return GenerateConfig(out=self.out, failure_kinds=self.failure_kinds, rollout=rollout, seed=self.seed,
                              use_videos=not self.images, environment_state=self.environment_state,
                              repo_id=self.repo_id, **plan)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(GenerateOptions, argv, prog="python -m data.generate")
    print(f"wrote {generate(options.config(), overwrite=options.overwrite)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Build a ground-truth benchmark: MetaWorld v3 rollouts -> a LeRobot v3 dataset + GT sidecar.

    python -m data.generate --out outputs/metaworld_bench --tasks pick-place-v3,reach-v3 \
        --successes 10 --failures-per-kind 2 --cameras corner2,topview --image-size 96

Recordings like a teleoperated robot's (a slow operator, 20 fps, three 480x640 views, successes
with pauses, a drop and a regrasp, a misplacement put right):

    python -m data.generate --out outputs/teleop_like --tasks pick-place-v3 --successes 2 \
        --success-kinds hesitation,recovered_drop,corrected_misplacement --failures-per-kind 0 \
        --operator-speed 0.05 --max-seconds 40 --fps 20 --resolution 480x640 --cameras corner2,topview,gripperPOV

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
from data.rollout import CAMERAS, DETOUR_KINDS, FAILURE_KINDS, PHYSICS_HZ, RolloutConfig


def parse_resolution(spec: str) -> tuple[int, int]:
    """'480x640' -> (480, 640): height x width."""
    try:
        height, width = (int(part) for part in spec.lower().split("x"))
    except ValueError:
        raise ConfigError(f"bad resolution '{spec}' (expected HEIGHTxWIDTH, e.g. 480x640)") from None
    return height, width


def parse_range(spec: str) -> tuple[float, float]:
    """'5,8' -> (5.0, 8.0)."""
    try:
        low, high = (float(part) for part in spec.split(","))
    except ValueError:
        raise ConfigError(f"bad range '{spec}' (expected LOW,HIGH, e.g. 5,8)") from None
    return low, high


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
    success_kinds: tuple[str, ...] = option((), parse=parse_names, help="comma-separated successes with a detour, "
                                                                         f"from {','.join(DETOUR_KINDS)}")
    successes_per_kind: int = option(GenerateConfig.successes_per_kind,
                                     help="episodes per --success-kinds kind and task that can show it "
                                          "(a drop needs a grasp, a misplacement an object)")
    cameras: tuple[str, ...] = option(RolloutConfig.cameras, parse=parse_names,
                                      help=f"comma-separated views, from {','.join(CAMERAS)}")
    image_size: int | None = option(None, help="pixels on each side of a square view "
                                               f"(default: {RolloutConfig.image_size})")
    resolution: tuple[int, int] | None = option(None, parse=parse_resolution,
                                                help="HEIGHTxWIDTH of every view, e.g. 480x640, for --image-size")
    fps: int = option(RolloutConfig().fps, help=f"frames per second; divides the simulator's {PHYSICS_HZ} Hz")
    operator_speed: float = option(RolloutConfig.operator_speed,
                                   help="the scripted operator's arm speed as a share of MetaWorld's expert")
    max_seconds: float | None = option(None, help="longest episode in seconds (default: 90 frames of the full-speed "
                                                  "expert at 40 fps, scaled, plus the kind's pauses and detours)")
    near_miss_cm: tuple[float, float] = option(
        tuple(100 * metres for metres in RolloutConfig.near_miss_offset), parse=parse_range,
        help="LOW,HIGH: how far sideways, in cm, a near_miss episode's goal is moved")
    seed: int = option(GenerateConfig.seed, help="base seed of every rollout")
    images: bool = option(False, help="store frames as images instead of MP4 video")
    environment_state: bool = option(False, help="also record observation.environment_state (object and goal "
                                                  "positions) for policies")
    repo_id: str = option(GenerateConfig.repo_id, help="the dataset's repo id")
    overwrite: bool = option(False, help="replace --out")

    def __post_init__(self):
        if unknown := sorted(set(self.failure_kinds) - set(FAILURE_KINDS)):
            raise ConfigError(f"unknown failure kind(s) {unknown}; choose from {', '.join(FAILURE_KINDS)}")
        if unknown := sorted(set(self.success_kinds) - set(DETOUR_KINDS)):
            raise ConfigError(f"unknown success kind(s) {unknown}; choose from {', '.join(DETOUR_KINDS)}")
        if unknown := sorted(set(self.cameras) - set(CAMERAS)):
            raise ConfigError(f"unknown camera(s) {unknown}; choose from {', '.join(CAMERAS)}")
        if self.fps < 1 or PHYSICS_HZ % self.fps:
            rates = [str(PHYSICS_HZ // repeat) for repeat in range(1, 9) if PHYSICS_HZ % repeat == 0]
            raise ConfigError(f"--fps {self.fps} does not divide the simulator's {PHYSICS_HZ} Hz; "
                              f"choose one of {', '.join(rates)}")
        if self.image_size is not None and self.resolution is not None:
            raise ConfigError("give --image-size or --resolution, not both")

    def config(self) -> GenerateConfig:
        """The generator's configuration: the preset's episode plan, then what the command line sets."""
        plan = dict(PRESETS.get(self.preset, {}))
        plan |= {key: value for key, value in (("tasks", self.tasks), ("successes", self.successes),
                                               ("failures_per_kind", self.failures_per_kind)) if value is not None}
        rollout = RolloutConfig(cameras=self.cameras, action_repeat=PHYSICS_HZ // self.fps,
                                image_size=self.resolution or self.image_size or RolloutConfig.image_size,
                                operator_speed=self.operator_speed, max_seconds=self.max_seconds,
                                near_miss_offset=tuple(cm / 100 for cm in self.near_miss_cm))
        return GenerateConfig(out=self.out, failure_kinds=self.failure_kinds, success_kinds=self.success_kinds,
                              successes_per_kind=self.successes_per_kind, rollout=rollout, seed=self.seed,
                              use_videos=not self.images, environment_state=self.environment_state,
                              repo_id=self.repo_id, **plan)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(GenerateOptions, argv, prog="python -m data.generate")
    config = options.config()
    for task in config.tasks:
        if skipped := [kind for kind in config.success_kinds if kind not in config.detour_kinds(task)]:
            print(f"{task}: no {', '.join(skipped)} episodes (the task cannot show them)")
    print(f"wrote {generate(config, overwrite=options.overwrite)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

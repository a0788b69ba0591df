"""Which training signal makes a policy succeed in closed loop? Policies on state, rolled out.

    python -m training.experiments.policy_experiment --preset smoke --work outputs/policy_experiment

Records a MetaWorld training set with the environment state (`data.generate --environment-state`;
expert successes and unflagged failures), trains RewACT on it per row and seed through
`training.train`, rolls every checkpoint out in the `metaworld_bench` env on seeds no training
episode used, and writes a success table with Wilson 95 % intervals (`results.json`,
`results.md`; each rollout's reward trace in `rollouts/<row>_seed<k>.json`).

Rows: (a) imitate-all: interpolation labels, so every episode's actions are imitated, failures
included; (e) oracle: the simulator's ground truth, so only true successes are imitated (the
reward head still learns from the failures). Finished steps are skipped when run again.
The `smoke` preset is sized to check the plumbing in minutes on a CPU, not to measure anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from common.cli import ConfigError, RunFailed, run_cli
from common.options import as_record, option, parse_options
from data.benchmark import GenerateConfig, generate
from data.rollout import RolloutConfig
from training.evaluation.rollouts import env_config_for, run_rollouts
from training.evaluation.success import success_summary
from training.experiments.workbench import SMALL_REWACT
from training.evaluation.predict import load_policy

ROWS = {"a": ("imitate-all", "interpolation"), "e": ("oracle", "ground_truth")}  # row -> (name, label source)
FIRST_EVAL_SEED = 1000  # data.generate's episode seeds are 32-bit hashes; the env refuses any it recorded


@dataclass(frozen=True)
class Preset:
    task: str
    successes: int  # training episodes
    failures: int  # training episodes, failure kinds dealt round robin
    cameras: tuple[str, ...]
    image_size: int
    steps: int
    batch_size: int
    seeds: tuple[int, ...]  # training seeds per row
    rollouts: int  # per checkpoint
    episode_length: int  # frames per rollout


PRESETS = {
    "smoke": Preset(task="reach-v3", successes=2, failures=2, cameras=("topview",), image_size=64, steps=2,
                    batch_size=2, seeds=(0,), rollouts=2, episode_length=10),
}


@dataclass(frozen=True)
class PolicyExperimentOptions:
    """Which training signal makes a policy succeed in closed loop? Policies on state, rolled out."""

    preset: str = option("smoke", choices=tuple(PRESETS), help="sizes of the run")
    work: Path = option(Path("outputs/policy_experiment"), help="datasets, checkpoints, rollouts and results")
    rows: tuple[str, ...] = option(tuple(ROWS), choices=tuple(ROWS), help="rows to train and roll out")

    def __post_init__(self):
        if not self.rows:
            raise ConfigError("--rows needs at least one row")


def training_dataset(work: Path, preset: Preset) -> Path:
    out = work / "train"
    if not out.exists():
        generate(GenerateConfig(
            out=out, tasks=(preset.task,), successes=preset.successes, failures_per_kind=0,
            failures_per_task=preset.failures, rollout=RolloutConfig(cameras=preset.cameras,
                                                                     image_size=preset.image_size),
            use_videos=False, environment_state=True, repo_id="local/policy_experiment_train",
        ))
    return out


def train(dataset: Path, row: str, seed: int, preset: Preset, out: Path) -> Path:
    """A RewACT checkpoint of `row` (trained through `python -m training.train`), reused if there."""
    checkpoint = out / "checkpoints" / "last"
    if checkpoint.exists():
        return checkpoint
    command = [sys.executable, "-m", "training.train", "--dataset", str(dataset), "--label-source", ROWS[row][1],
               "--out", str(out), "--steps", str(preset.steps), "--batch-size", str(preset.batch_size),
               "--seed", str(seed), "--", *SMALL_REWACT]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RunFailed(f"training row {row} seed {seed} failed: {result.stderr.strip().splitlines()[-1:]}")
    return checkpoint


def results_table(results: dict[str, dict]) -> str:
    lines = ["| row | success rate | 95 % interval (Wilson) | successes / rollouts |", "|---|---|---|---|"]
    for row, summary in results.items():
        lines.append(f"| ({row}) {ROWS[row][0]} | {summary['success_rate']:.2f} | "
                     f"[{summary['ci95_low']:.2f}, {summary['ci95_high']:.2f}] | "
                     f"{summary['successes']} / {summary['episodes']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    options = parse_options(PolicyExperimentOptions, argv, prog="python -m training.experiments.policy_experiment")
    preset = PRESETS[options.preset]
    work = options.work / options.preset
    dataset = training_dataset(work, preset)
    seeds = list(range(FIRST_EVAL_SEED, FIRST_EVAL_SEED + preset.rollouts))
    results = {}
    for row in options.rows:
        successes = []
        for seed in preset.seeds:
            name = f"{row}_seed{seed}"
            loaded = load_policy(train(dataset, row, seed, preset, work / "checkpoints" / name))
            env_config = env_config_for(loaded.policy.config, preset.task, RolloutConfig().action_repeat,
                                        preset.episode_length, (dataset,))
            rollouts = run_rollouts(loaded, env_config, seeds, work / "videos" / name, videos=1)
            (work / "rollouts").mkdir(exist_ok=True)
            (work / "rollouts" / f"{name}.json").write_text(
                json.dumps([rollout.record for rollout in rollouts], indent=2))
            successes += [rollout.success for rollout in rollouts]
        results[row] = success_summary(successes)
    (work / "results.json").write_text(json.dumps({"options": as_record(options), "preset": asdict(preset),
                                                   "eval_seeds": seeds, "rows": results}, indent=2))
    table = results_table(results)
    (work / "results.md").write_text(f"# Policies on state, {preset.task}, preset {options.preset}\n\n{table}")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

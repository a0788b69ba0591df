"""Which training signal makes a policy succeed in closed loop? Policies on state, rolled out.

    python -m training.experiments.policy_experiment --preset cpu --work outputs/policy_experiment

Steps, each skipped when its output exists, so a stopped run continues where it was:
  record      a MetaWorld training split with the environment state (`data.generate
              --environment-state`): expert successes and unflagged failures of every kind
  label       `labeling.run` with the reward VLM on it; the VLM sees the pixels and the task only
  state view  the split without its images (LeRobot's `remove_feature`), what the policies read:
              robot and environment state, no image encoder to train
  advantages  `training.advantage --values labels:<labeled>` for ACTvantage
  train       per row, failure share and training seed (wall time and steps in `cost.json`)
  roll out    every checkpoint on the same rollout seeds, none of which a training episode used
  curve       success vs training steps of rows (a) and (e), first seed, largest share
  videos      one success and one failure per row, re-rendered with the cameras
  report      `results.json`, `results.md`, `success.png`, `curve.png`

Rows (the failure shares take all successes and the first failures, kinds dealt round robin):
  (a) imitate-all   RewACT on interpolation labels: every episode imitated, failures included
  (b) labels-mask   RewACT on the labels: the episodes `labeling.run` judged failed are not imitated
  (c) RA-BC         RewACT on interpolation, imitation weighted by LeRobot's RA-BC from the labels'
                    progress (`sarm_progress.parquet`)
  (d) ACTvantage    ACT conditioned on advantages from the labels' progress, asked for +1
  (e) oracle        RewACT on the simulator's ground truth: only true successes imitated; it sees
                    the same successes at every share, so it is trained once, on the largest share

Success rates pool a row's training seeds (Wilson 95 % over its rollouts); the difference to (a)
is paired: every policy rolls out from the same seeds, so the interval is a bootstrap over
rollout seeds of the seed-by-seed difference.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.cli import ConfigError, parse_ints, parse_names, run_cli
from common.dataset import EpisodeSource
from common.ground_truth import read_ground_truth, sidecar_dir
from common.options import as_record, option, parse_options
from common.staging import publish, staging_dir
from data.benchmark import GenerateConfig, generate
from data.env import MetaWorldBenchEnvConfig
from data.rollout import Frame, RolloutConfig
from training.evaluation.plots import pyplot
from training.evaluation.predict import LoadedPolicy, load_policy
from training.evaluation.rollouts import env_config_for, run_rollout, run_rollouts, write_rollout_video
from training.evaluation.success import paired_difference, success_summary
from training.experiments.workbench import REWARD_VLM, run


@dataclass(frozen=True)
class Row:
    name: str
    policy_type: str  # rewact | actvantage
    label_source: str | None = None  # RewACT's; None for ACTvantage
    labels: bool = False  # RewACT reads the labeling.run output's labels and verdicts
    rabc: bool = False  # imitation weighted by the labels' RA-BC progress
    every_share: bool = True  # trained per failure share (False: once, on the largest share)

    @property
    def reads_labels(self) -> bool:
        """Trained from the labeling.run output (ACTvantage through its advantages)."""
        return self.labels or self.rabc or self.policy_type == "actvantage"


ROWS = {
    "a": Row("imitate-all", "rewact", "interpolation"),
    "b": Row("labels-mask", "rewact", "labels", labels=True),
    "c": Row("RA-BC", "rewact", "interpolation", rabc=True),
    "d": Row("ACTvantage", "actvantage"),
    "e": Row("oracle", "rewact", "ground_truth", every_share=False),
}
FIRST_EVAL_SEED = 1000  # data.generate's episode seeds are 32-bit hashes; the env refuses any it recorded
CURVE_ROWS = ("a", "e")


@dataclass(frozen=True)
class Preset:
    task: str
    successes: int  # expert successes in the training split
    shares: tuple[float, ...]  # failure shares of the training splits
    cameras: tuple[str, ...]  # what the labeler sees (the policies read state)
    image_size: int
    steps: int
    batch_size: int
    seeds: tuple[int, ...]  # training seeds per row
    rollouts: int  # per policy, on the same seeds for every policy
    episode_length: int  # frames per rollout
    policy: tuple[str, ...]  # lerobot-train flags of every row's transformer
    checkpoint_every: int = 0  # steps between the learning curve's checkpoints (0: no curve)
    curve_rollouts: int = 0  # per learning-curve checkpoint

    def failures(self, share: float) -> int:
        return round(self.successes * share / (1 - share))


# A small ACT on state: no image encoder; each chunk's first actions are executed, then it replans.
STATE_ACT = ("--policy.dim_model=128", "--policy.dim_feedforward=512", "--policy.n_encoder_layers=2",
             "--policy.n_heads=4", "--policy.latent_dim=16", "--policy.chunk_size=20",
             "--policy.n_action_steps=5", "--policy.optimizer_lr=3e-4")

PRESETS = {
    # Plumbing only: its numbers mean nothing.
    "smoke": Preset(task="reach-v3", successes=2, shares=(0.25, 0.5), cameras=("topview",), image_size=64,
                    steps=2, batch_size=2, seeds=(0,), rollouts=2, episode_length=10, policy=STATE_ACT,
                    checkpoint_every=1, curve_rollouts=1),
    # Sized for a 2-core CPU shared with other work (see docs/results/policy_experiment).
    "cpu": Preset(task="reach-v3", successes=40, shares=(0.25, 0.5), cameras=("corner2", "topview"),
                  image_size=96, steps=1000, batch_size=32, seeds=(0, 1), rollouts=50, episode_length=90,
                  policy=STATE_ACT, checkpoint_every=250, curve_rollouts=20),
    # A setting in which the oracle succeeds: more demonstrations and steps than `cpu`, one share,
    # a learning-curve point every 1000 steps (run so far: every row, seeds 0, 1 and 2).
    "longer": Preset(task="reach-v3", successes=60, shares=(0.5,), cameras=("corner2", "topview"),
                     image_size=96, steps=4000, batch_size=32, seeds=(0, 1, 2), rollouts=50, episode_length=90,
                     policy=STATE_ACT, checkpoint_every=1000, curve_rollouts=20),
    # For people with time: more demonstrations, steps, seeds and rollouts.
    "large": Preset(task="reach-v3", successes=100, shares=(0.25, 0.5), cameras=("corner2", "topview"),
                    image_size=96, steps=20000, batch_size=64, seeds=(0, 1, 2), rollouts=100, episode_length=100,
                    policy=STATE_ACT, checkpoint_every=2500, curve_rollouts=50),
}


def parse_floats(spec: str) -> tuple[float, ...]:
    return tuple(float(value) for value in parse_names(spec))


@dataclass(frozen=True)
class PolicyExperimentOptions:
    """Which training signal makes a policy succeed in closed loop? Policies on state, rolled out."""

    preset: str = option("smoke", choices=tuple(PRESETS), help="sizes of the run")
    work: Path = option(Path("outputs/policy_experiment"), help="datasets, checkpoints, rollouts and results")
    rows: tuple[str, ...] = option(tuple(ROWS), parse=parse_names, help="comma-separated rows to train and roll out")
    seeds: tuple[int, ...] | None = option(None, parse=parse_ints, help="comma-separated training seeds to run "
                                                                     "(default: the preset's; runs of other seeds, "
                                                                     "rows or shares can share the work directory)")
    shares: tuple[float, ...] | None = option(None, parse=parse_floats, help="comma-separated failure shares to run "
                                                                           "(default: the preset's)")
    model: str = option(str(REWARD_VLM), help="VLM for labeling.run (default: the reward VLM trained here)")
    data_seed: int = option(700, help="base seed of the training split (the reward VLM trained on 100)")
    results: Path | None = option(None, help="also copy the report, plots and videos here")

    def __post_init__(self):
        if not self.rows or set(self.rows) - set(ROWS):
            raise ConfigError(f"--rows takes a comma-separated subset of {','.join(ROWS)}, got {','.join(self.rows)}")
        if self.seeds is not None and set(self.seeds) - set(PRESETS[self.preset].seeds):
            raise ConfigError(f"--seeds takes a subset of the preset's training seeds {PRESETS[self.preset].seeds}")
        if self.shares is not None and set(self.shares) - set(PRESETS[self.preset].shares):
            raise ConfigError(f"--shares takes a subset of the preset's failure shares {PRESETS[self.preset].shares}")
        if self.data_seed == 100:
            raise ConfigError("--data-seed 100 is the reward VLM's training split; choose another")


@dataclass(frozen=True)
class Paths:
    work: Path

    @property
    def recorded(self) -> Path:
        return self.work / "train"

    @property
    def labeled(self) -> Path:
        return self.work / "labeled"

    @property
    def state(self) -> Path:
        return self.work / "train_state"

    @property
    def advantages(self) -> Path:
        return self.work / "advantages.parquet"

    def policy(self, row: str, share: float, seed: int) -> Path:
        return self.work / "checkpoints" / run_name(row, share, seed)

    def rollouts(self, name: str) -> Path:
        return self.work / "rollouts" / f"{name}.json"


def run_name(row: str, share: float, seed: int) -> str:
    return f"{row}_fail{round(share * 100)}_seed{seed}"


def timed(name: str, done: Path, timings: dict, action) -> None:
    """Run `action` unless `done` exists; the seconds it took are kept across runs in `timings`."""
    if done.exists():
        print(f"[policy_experiment] {name}: done ({done})", flush=True)
        return
    print(f"[policy_experiment] {name} ...", flush=True)
    start = time.perf_counter()
    action()
    timings[name] = round(time.perf_counter() - start, 1)


def record(paths: Paths, preset: Preset, data_seed: int) -> None:
    staging = staging_dir(paths.recorded)
    generate(GenerateConfig(
        out=staging, tasks=(preset.task,), successes=preset.successes, failures_per_kind=0,
        failures_per_task=preset.failures(max(preset.shares)),
        rollout=RolloutConfig(cameras=preset.cameras, image_size=preset.image_size), seed=data_seed,
        environment_state=True, repo_id="local/policy_experiment_train"))
    publish(staging, paths.recorded)


def label(paths: Paths, model: str) -> None:
    """labeling.run on the recorded split; it never reads the environment state or the ground truth."""
    run([sys.executable, "-m", "labeling.run", "--dataset", str(paths.recorded), "--out", str(paths.labeled),
         "--model", model, "--quiet"], paths.work / "label.log")


def state_view(paths: Paths) -> None:
    """The recorded split without its images, for policies on state, with its ground-truth sidecar."""
    from lerobot.datasets.dataset_tools import remove_feature
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    staging = staging_dir(paths.state)
    dataset = LeRobotDataset("local/policy_experiment_train", root=paths.recorded)
    images = [key for key in dataset.meta.features if key.startswith("observation.images.")]
    remove_feature(dataset, images, output_dir=staging, repo_id="local/policy_experiment_train_state")
    shutil.copytree(sidecar_dir(paths.recorded), sidecar_dir(staging))
    publish(staging, paths.state)


def advantages(paths: Paths, preset: Preset) -> None:
    chunk = next(int(flag.split("=")[1]) for flag in preset.policy if flag.startswith("--policy.chunk_size="))
    run([sys.executable, "-m", "training.advantage", "--dataset", str(paths.labeled),
         "--values", f"labels:{paths.labeled}", "--n-step", str(chunk), "--out", str(paths.advantages)],
        paths.work / "advantages.log")


def split_episodes(episodes: pd.DataFrame, failures: int) -> list[int]:
    """Every expert success and the first `failures` failures, kinds dealt round robin (the
    recorder's plan, `episodes` of the ground-truth sidecar, decides which episode is which, not
    a verdict)."""
    planned_success = episodes["kind"] == "success"
    rest = episodes[~planned_success].sort_values("episode_index")
    dealt = rest.assign(turn=rest.groupby("kind").cumcount()).sort_values(["turn", "episode_index"])
    return sorted(int(e) for e in [*episodes.loc[planned_success, "episode_index"], *dealt["episode_index"][:failures]])


def planned_runs(rows: tuple[str, ...], shares: tuple[float, ...], seeds: tuple[int, ...], preset: Preset
                 ) -> list[tuple[str, float, int]]:
    """(row, share, training seed) in training order: the largest share, where rows differ most,
    first; a row that imitates the same episodes at every share (the oracle) at the preset's
    largest share only."""
    return [(row, share, seed) for share in sorted(shares, reverse=True) for row in rows
            if ROWS[row].every_share or share == max(preset.shares) for seed in seeds]


def training_command(row: str, paths: Paths, preset: Preset, episodes: list[int], seed: int, out: Path,
                     save_freq: int) -> list[str]:
    spec = ROWS[row]
    if spec.policy_type == "actvantage":
        source = EpisodeSource.open(paths.state)
        return [sys.executable, "-m", "lerobot.scripts.lerobot_train", f"--dataset.repo_id={source.repo_id}",
                f"--dataset.root={paths.state}", f"--dataset.episodes=[{','.join(map(str, episodes))}]",
                "--policy.type=actvantage", f"--policy.advantage_path={paths.advantages.resolve()}",
                "--policy.device=cpu", "--policy.push_to_hub=false", f"--output_dir={out}", f"--steps={preset.steps}",
                f"--batch_size={preset.batch_size}", f"--save_freq={save_freq}", f"--seed={seed}", "--num_workers=0",
                "--wandb.enable=false", *preset.policy]
    command = [sys.executable, "-m", "training.train", "--dataset", str(paths.state), "--label-source",
               spec.label_source, "--out", str(out), "--steps", str(preset.steps), "--batch-size",
               str(preset.batch_size), "--seed", str(seed), "--save-freq", str(save_freq),
               "--episodes", ",".join(map(str, episodes))]
    if spec.labels:
        command += ["--labels-path", str(paths.labeled)]
    command += ["--", *preset.policy]
    if spec.rabc:
        command += ["--sample_weighting.type=rabc",
                    f"--sample_weighting.progress_path={(paths.labeled / 'sarm_progress.parquet').resolve()}"]
    return command


def train(row: str, share: float, seed: int, paths: Paths, preset: Preset, curve: bool) -> None:
    """A checkpoint of `row`, with what it cost in `cost.json`; a stopped training starts again
    (LeRobot's `--resume` rebuilds RewACT's processors from the checkpoint, without the dataset
    metadata its reward targets come from)."""
    out = paths.policy(row, share, seed)
    staging = staging_dir(out)
    staging.parent.mkdir(parents=True, exist_ok=True)
    save_freq = preset.checkpoint_every if curve and preset.checkpoint_every else preset.steps
    episodes = split_episodes(read_ground_truth(paths.recorded)[1], preset.failures(share))
    start = time.perf_counter()
    run(training_command(row, paths, preset, episodes, seed, staging, save_freq), paths.work / f"train_{out.name}.log")
    cost = {"seconds": round(time.perf_counter() - start, 1), "steps": preset.steps,
            "batch_size": preset.batch_size, "episodes": len(episodes)}
    (staging / "cost.json").write_text(json.dumps(cost, indent=2))
    publish(staging, out)


def eval_env(loaded: LoadedPolicy, preset: Preset, paths: Paths, video_views: tuple[str, ...] = ()
             ) -> MetaWorldBenchEnvConfig:
    """The recorded setting the checkpoint was trained for; the policies read state, so cameras
    are rendered only for videos."""
    return env_config_for(loaded.policy.config, preset.task, RolloutConfig().action_repeat, preset.episode_length,
                          (paths.recorded,), video_views=video_views)


def eval_seeds(count: int) -> list[int]:
    return list(range(FIRST_EVAL_SEED, FIRST_EVAL_SEED + count))


def roll_out(checkpoint: Path, preset: Preset, paths: Paths, seeds: list[int], out: Path) -> None:
    start = time.perf_counter()
    loaded = load_policy(checkpoint)
    rollouts = run_rollouts(loaded, eval_env(loaded, preset, paths), seeds)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1),
                               "rollouts": [rollout.record for rollout in rollouts]}, indent=2))


def read_rollouts(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rollouts"]


def videos(row: str, name: str, preset: Preset, paths: Paths, out: Path) -> None:
    """The first successful and the first failed rollout of `name` again, with the cameras rendered."""
    chosen = {}
    for record in read_rollouts(paths.rollouts(name)):
        chosen.setdefault("success" if record["success"] else "failure", record["seed"])
    loaded = load_policy(paths.policy(*parse_run(name)) / "checkpoints" / "last")
    env_config = eval_env(loaded, preset, paths, preset.cameras)
    env = env_config.make()
    staging = staging_dir(out)
    staging.mkdir(parents=True)
    try:
        for outcome, seed in chosen.items():
            frames: list[Frame] = []
            rollout, _ = run_rollout(loaded, env, seed, on_frame=frames.append)
            write_rollout_video(staging / f"{row}_{outcome}_seed{seed}.mp4", rollout, frames, env_config.fps)
    finally:
        env.close()
    publish(staging, out)


def parse_run(name: str) -> tuple[str, float, int]:
    row, share, seed = name.split("_")
    return row, int(share.removeprefix("fail")) / 100, int(seed.removeprefix("seed"))


def outcomes(paths: Paths, names: list[str]) -> np.ndarray:
    """(training seeds, rollout seeds) successes, rollout seeds in one order for every run."""
    runs = [sorted(read_rollouts(paths.rollouts(name)), key=lambda record: record["seed"]) for name in names]
    return np.array([[record["success"] for record in records] for records in runs])


def report(options: PolicyExperimentOptions, preset: Preset, paths: Paths, timings: dict) -> dict:
    table, curve = [], {}
    for share in preset.shares:
        for row in options.rows:
            names = [name for seed in preset.seeds if paths.rollouts(name := run_name(
                row, share if ROWS[row].every_share else max(preset.shares), seed)).exists()]
            if not names:  # not rolled out yet; a partial run reports the seeds it has
                continue
            successes = outcomes(paths, names)
            entry = {"row": row, "name": ROWS[row].name, "share": share, **success_summary(successes.ravel().tolist()),
                     "seeds": [parse_run(name)[2] for name in names], "per_seed": successes.mean(axis=1).tolist(),
                     "train_seconds": [json.loads((paths.policy(*parse_run(n)) / "cost.json").read_text())["seconds"]
                                       for n in names],
                     "rollout_seconds": [json.loads(paths.rollouts(n).read_text())["seconds"] for n in names]}
            baseline = [name for seed in preset.seeds if paths.rollouts(name := run_name("a", share, seed)).exists()]
            if row != "a" and baseline:
                entry["minus_a"] = paired_difference(successes, outcomes(paths, baseline))
            table.append(entry)
    for row in CURVE_ROWS:
        files = sorted((paths.work / "curve").glob(f"{row}_step*.json"), key=lambda p: int(p.stem.split("step")[1]))
        if files:
            curve[row] = [{"step": int(f.stem.split("step")[1]), **success_summary([r["success"] for r in
                                                                                   read_rollouts(f)])} for f in files]
    result = {"options": as_record(options), "preset": asdict(preset), "eval_seeds": eval_seeds(preset.rollouts),
              "timings": timings, "table": table, "curve": curve}
    (paths.work / "results.json").write_text(json.dumps(result, indent=2))
    markdown = results_markdown(preset, options.preset, table, curve)
    (paths.work / "results.md").write_text(markdown)
    if table:
        plot_success(table, paths.work / "success.png", preset)
    if curve:
        plot_curve(curve, paths.work / "curve.png", preset)
    return result


def results_markdown(preset: Preset, preset_name: str, table: list[dict], curve: dict) -> str:
    lines = [f"# Policies on state, {preset.task}, preset {preset_name}", "",
             "| failures | row | success | 95 % Wilson | successes / rollouts | per training seed | "
             "minus (a), paired 95 % | train s (steps) |", "|---|---|---|---|---|---|---|---|"]
    for entry in table:
        diff = entry.get("minus_a")
        paired = f"{diff['mean']:+.2f} [{diff['ci95_low']:+.2f}, {diff['ci95_high']:+.2f}]" if diff else ""
        per_seed = ", ".join(f"{seed}: {rate:.2f}" for seed, rate in zip(entry["seeds"], entry["per_seed"], strict=True))
        lines.append(f"| {entry['share']:.0%} | ({entry['row']}) {entry['name']} | {entry['success_rate']:.2f} | "
                     f"[{entry['ci95_low']:.2f}, {entry['ci95_high']:.2f}] | {entry['successes']} / "
                     f"{entry['episodes']} | {per_seed} | {paired} | "
                     f"{', '.join(f'{s:.0f}' for s in entry['train_seconds'])} ({preset.steps}) |")
    for row, points in curve.items():
        lines += ["", f"Learning curve ({row}) {ROWS[row].name}, seed {preset.seeds[0]}, "
                      f"{max(preset.shares):.0%} failures: " + ", ".join(
                          f"{p['step']} steps {p['successes']}/{p['episodes']}" for p in points)]
    return "\n".join(lines) + "\n"


def plot_success(table: list[dict], path: Path, preset: Preset) -> None:
    plt = pyplot()

    figure, axis = plt.subplots(figsize=(7, 3.5))
    for offset, share in zip((-0.15, 0.15), preset.shares):
        entries = [e for e in table if e["share"] == share]
        x = [list(ROWS).index(e["row"]) + offset for e in entries]
        rate = np.array([e["success_rate"] for e in entries])
        errors = [rate - [e["ci95_low"] for e in entries], [e["ci95_high"] for e in entries] - rate]
        axis.errorbar(x, rate, yerr=errors, fmt="o", capsize=4, label=f"{share:.0%} failures")
    axis.set_xticks(range(len(ROWS)), [f"({row}) {spec.name}" for row, spec in ROWS.items()])
    axis.set_ylim(0, 1)
    axis.set_ylabel("success rate (Wilson 95 %)")
    seeds = "/".join(str(n) for n in sorted({len(e["seeds"]) for e in table}))
    axis.set_title(f"{preset.task}: {seeds} training seed(s) x {preset.rollouts} rollouts per point")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_curve(curve: dict, path: Path, preset: Preset) -> None:
    plt = pyplot()

    figure, axis = plt.subplots(figsize=(5, 3.5))
    for row, points in curve.items():
        steps = [p["step"] for p in points]
        rate = np.array([p["success_rate"] for p in points])
        errors = [rate - [p["ci95_low"] for p in points], [p["ci95_high"] for p in points] - rate]
        axis.errorbar(steps, rate, yerr=errors, fmt="o-", capsize=4, label=f"({row}) {ROWS[row].name}")
    axis.set_ylim(0, 1)
    axis.set_xlabel("training steps")
    axis.set_ylabel(f"success ({preset.curve_rollouts} rollouts)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(PolicyExperimentOptions, argv, prog="python -m training.experiments.policy_experiment")
    preset = PRESETS[options.preset]
    paths = Paths(options.work / options.preset)
    paths.work.mkdir(parents=True, exist_ok=True)
    timings_file = paths.work / "timings.json"
    timings = {}

    def step(name: str, done: Path, action) -> None:
        timed(name, done, timings, action)
        # read again: runs of other rows may be writing beside this one
        recorded = json.loads(timings_file.read_text()) if timings_file.exists() else {}
        timings.update({**recorded, **timings})
        timings_file.write_text(json.dumps(timings, indent=2))

    step("record", paths.recorded, lambda: record(paths, preset, options.data_seed))
    step("state view", paths.state, lambda: state_view(paths))
    if any(ROWS[row].reads_labels for row in options.rows):
        step("label", paths.labeled, lambda: label(paths, options.model))
    if "d" in options.rows:
        step("advantages", paths.advantages, lambda: advantages(paths, preset))
    curve_share, seeds = max(preset.shares), eval_seeds(preset.rollouts)
    shares = options.shares or preset.shares
    for share in sorted(shares, reverse=True):
        for row, _, seed in planned_runs(options.rows, (share,), options.seeds or preset.seeds, preset):
            name = run_name(row, share, seed)
            curve = row in CURVE_ROWS and share == curve_share and seed == preset.seeds[0]
            step(f"train {name}", paths.policy(row, share, seed) / "cost.json",
                 lambda: train(row, share, seed, paths, preset, curve))
            step(f"roll out {name}", paths.rollouts(name), lambda: roll_out(
                paths.policy(row, share, seed) / "checkpoints" / "last", preset, paths, seeds, paths.rollouts(name)))
            if curve and preset.checkpoint_every:
                for checkpoint in sorted((paths.policy(row, share, seed) / "checkpoints").glob("[0-9]*")):
                    out = paths.work / "curve" / f"{row}_step{int(checkpoint.name)}.json"
                    step(f"curve {row} {int(checkpoint.name)} steps", out, lambda: roll_out(
                        checkpoint, preset, paths, eval_seeds(preset.curve_rollouts), out))
        report(options, preset, paths, timings)  # a table after each share, for a run that stops early
    for row in options.rows:
        name = run_name(row, curve_share, preset.seeds[0])
        if not paths.rollouts(name).exists():  # another run trains that seed
            continue
        step(f"videos {row}", paths.work / "videos" / row, lambda: videos(row, name, preset, paths,
                                                                          paths.work / "videos" / row))
    result = report(options, preset, paths, timings)
    if options.results:
        publish_results(paths, options.results)
    print(results_markdown(preset, options.preset, result["table"], result["curve"]), end="")
    return 0


def publish_results(paths: Paths, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.md", "success.png", "curve.png", "timings.json"):
        if (paths.work / name).exists():
            shutil.copy2(paths.work / name, results / name)
    for video in sorted((paths.work / "videos").glob("*/*.mp4")):
        (results / "videos").mkdir(exist_ok=True)
        shutil.copy2(video, results / "videos" / video.name)


if __name__ == "__main__":
    sys.exit(run_cli(main))

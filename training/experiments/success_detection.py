"""Does the reward head know it is done? Success detection on a policy's rollouts, before and
after a rollout-label round (issue 21, item 4).

    python -m training.experiments.success_detection --preset cpu --task reach-v3 \
        --policies outputs/train/policy/checkpoints/last --datasets outputs/bench_reach \
        --work outputs/success_detection --results docs/results/success_detection

1. Round one: every policy (any RewACT or ACT checkpoint, on state or pixels) rolled out on new
   seeds and recorded with the head's views (`training.evaluation.rollouts.Recording`); a success
   ends on its flag. The same seeds again run on past their success to `run_on_length` frames, so
   a success is as long as a failure and shows what follows it. Both labeled by `labeling.run`
   with `--model` (pixels and the task only).
2. The labels themselves: each success's label on the frame the simulator first flags it against
   the failures' labels on the same frame (`label_separation`); a head learns "done" only if they
   hold it. `--other-labelers` scores more models' labels of the same rollouts (labeling only),
   and `--labels-only` stops here: a labeler checked before paying for heads.
3. The heads: each of `--datasets` labeled by `labeling.run`, a pixel RewACT trained on them
   ("before"), on them plus round one ("after"), and on them plus round one run on ("after
   run-on"). In round one a success ends on its flag and a failure at the episode's length, so
   the "after" head can learn the length; the run-on round takes that away.
4. Fresh rollouts on seeds neither round used. Each head's final-frame AUROC, false success at the
   threshold from its own training labels, and "stop when done" (`training.evaluation.detection`).
5. Rollouts on seeds after those that go on past the success flag, so a stop rule can be scored
   on what a success looks like afterwards: each "after" head stopping at its first crossing, and
   after a hold long enough to pass over every failure of its own round (`hold_for`, taken from
   rollouts the head was trained on, not the ones it is scored on).

Finished steps are skipped when run again (`--work`), the heads' predictions among them.
Results: `results.json`, and in `--results` a README with the command, seeds and tables,
`labels_at_flag.png`, `final_reward.png`, `roc.png` and `reward_traces.png`.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from common.cli import ConfigError, DatasetError, run_cli
from common.dataset import EpisodeSource
from common.ground_truth import read_ground_truth_by_episode
from common.options import as_record, command_line, option, parse_options
from common.reward_sources import read_rewards
from common.scale import SCORES
from common.staging import publish, staging_dir, write_file
from training.evaluation.detection import (RolloutTrace, detection_metrics, hold_for, label_separation,
                                           training_threshold)
from training.evaluation.plots import pyplot
from training.evaluation.predict import load_policy, predict_rewards
from training.evaluation.rollouts import IMAGE_PREFIX, Recording, env_config_for, run_rollouts
from training.evaluation.success import success_summary
from training.experiments.workbench import run, step, train_rewact

PROG = "python -m training.experiments.success_detection"
ROLLOUT_SETS = {"round1": "round one", "round1_run_on": "round one run on past success", "fresh": "the fresh seeds",
                "run_on": "the fresh seeds run on past success"}
HEAD_LABELS = "reward_labels.parquet"  # beside each head's training set: its labels and outcome verdicts


@dataclass(frozen=True)
class Preset:
    rollouts: int  # per policy and round
    episode_length: int  # frames before a rollout is cut off
    run_on_length: int  # frames of a rollout that goes on past its success (step 5)
    head_steps: int
    head_batch_size: int
    bootstrap: int  # resamples of each interval


PRESETS = {
    # Plumbing only (a minute or two on a CPU): its numbers mean nothing.
    "smoke": Preset(rollouts=2, episode_length=8, run_on_length=10, head_steps=2, head_batch_size=2, bootstrap=100),
    # Sized for a 2-core CPU: 20 rollouts per policy and round, the head trained as SMALL_REWACT.
    "cpu": Preset(rollouts=20, episode_length=90, run_on_length=150, head_steps=1500, head_batch_size=8,
                  bootstrap=1000),
}


@dataclass(frozen=True)
class SuccessDetectionOptions:
    """Does the reward head know it is done? Success detection on rollouts, before and after a rollout-label round."""

    policies: tuple[Path, ...] = option(help="policy checkpoints to roll out (RewACT or ACT, state or pixels)")
    datasets: tuple[Path, ...] = option(help="the reward head's training datasets (recorded by data.generate); "
                                             "labeled here by labeling.run")
    task: str = option(help="MetaWorld task the policies do, e.g. reach-v3")
    preset: str = option("cpu", choices=tuple(PRESETS), help="how large the run is")
    work: Path = option(Path("outputs/success_detection"), help="labels, heads, rollouts; finished steps are reused")
    results: Path = option(Path("docs/results/success_detection"), help="README, plots and results.json")
    model: str = option("models/metaworld-reward-vlm", help="the labeler's model (labeling.run --model)")
    labels_only: bool = option(False, help="stop after step 2: round one's rollouts labeled and their labels scored; "
                                           "no head trained (a labeler checked before paying for heads)")
    other_labelers: tuple[str, ...] = option((), help="more labeling models whose labels of each round's rollouts are "
                                                      "scored beside --model's (step 2); no head is trained on them")
    train_episodes: str | None = option(None, help="episodes of each --datasets to label and train on, e.g. 0,3,5-9 "
                                                   "(default: all)")
    seed: int = option(5000, help="first rollout seed; round one uses the next --rollouts seeds, the fresh "
                                  "rollouts the ones after")
    head_seed: int = option(0, help="training seed of every head")
    rollouts: int | None = option(None, help="rollouts per policy and round (default: the preset's)")
    head_steps: int | None = option(None, help="training steps of each head (default: the preset's)")
    action_repeat: int = option(2, help="simulator steps per action, as the datasets were recorded")
    device: str = option("cpu", help="torch device of policies, heads and labeler")

    def __post_init__(self):
        if not self.policies or not self.datasets:
            raise ConfigError("--policies and --datasets each need at least one path")
        labelers = (self.model, *self.other_labelers)
        if len(set(labelers)) < len(labelers):
            raise ConfigError(f"--other-labelers repeats a labeler ({', '.join(labelers)}): each model is scored once")

    @property
    def sized(self) -> Preset:
        preset = PRESETS[self.preset]
        return replace(preset, rollouts=self.rollouts or preset.rollouts,
                       head_steps=self.head_steps or preset.head_steps)

    def seeds(self, round_index: int) -> list[int]:
        start = self.seed + round_index * self.sized.rollouts
        return list(range(start, start + self.sized.rollouts))


@dataclass(frozen=True)
class Head:
    """A trained reward head: its name, checkpoint, training set, and its scores (threshold and
    traces, kept with it, so retraining it drops them)."""

    name: str
    checkpoint: Path
    training_set: Path

    @property
    def scores(self) -> Path:
        return self.checkpoint.parents[1] / "scores"


@dataclass(frozen=True)
class LabelRound:
    """One rollout-label round's rollouts (one dataset per policy) and their labels."""

    name: str
    rollouts: list[Path]
    labeled: list[Path]


@dataclass(frozen=True)
class RolloutSet:
    """One policy's recorded rollouts of a round: the simulator's truth per episode (to score only)
    and the dataset's metadata (to read labels in its episode numbering)."""

    truth: dict[int, pd.DataFrame]
    meta: object

    @classmethod
    def read(cls, root: Path) -> RolloutSet:
        return cls(read_ground_truth_by_episode(root)[0], EpisodeSource.open(root).meta)


def label(dataset: Path, out: Path, options: SuccessDetectionOptions, timings: list, episodes: str | None = None,
          model: str | None = None) -> Path:
    """`labeling.run` on `dataset` with `model` (default --model); the labeler sees frames and task only."""
    out.parent.mkdir(parents=True, exist_ok=True)
    step(f"label {out.relative_to(options.work)}", out, timings, lambda: run(
        [sys.executable, "-m", "labeling.run", "--dataset", str(dataset), "--out", str(out), "--model", model or options.model,
         "--device", options.device, "--quiet", *(["--episodes", episodes] if episodes else [])],
        out.with_name(out.name + ".log")))
    return out


def head_training_set(labeled: list[Path], out: Path, timings: list) -> Path:
    """The labeled outputs as one dataset, with their labels and outcome verdicts renumbered into it
    (`HEAD_LABELS`: episode_index, frame_index, reward, imitate) for `--label-source labels`."""

    def build() -> None:
        from lerobot.datasets.aggregate import aggregate_datasets

        tables, offset = [], 0
        for root in labeled:
            meta = EpisodeSource.open(root).meta
            rows = read_rewards(f"labels:{root}", meta)
            tables.append(rows.assign(episode_index=rows.episode_index + offset))
            offset += meta.total_episodes
        partial = staging_dir(out)
        aggregate_datasets([f"local/{root.name}" for root in labeled], f"local/{out.name}", roots=labeled,
                           aggr_root=partial)
        pd.concat(tables, ignore_index=True).to_parquet(partial / HEAD_LABELS, index=False)
        publish(partial, out)

    step(f"head training set {out.name}", out, timings, build)
    return out


def train_head(name: str, dataset: Path, options: SuccessDetectionOptions, timings: list) -> Head:
    (options.work / "heads").mkdir(parents=True, exist_ok=True)
    spec = train_rewact(f"head {name}", dataset, ["--label-source", "labels", "--labels-path",
                                                  str(dataset / HEAD_LABELS)],
                        options.work / "heads" / name, options.sized.head_steps, options.sized.head_batch_size,
                        options.device, options.head_seed, [], timings)
    return Head(name, Path(spec.removeprefix("rewact:")), dataset)


def recording_views(dataset: Path) -> tuple[tuple[str, ...], int]:
    """(cameras, image size) of the head's training data: the views rollouts are recorded with."""
    features = EpisodeSource.open(dataset).meta.features
    cameras = tuple(key.removeprefix(IMAGE_PREFIX) for key in features if key.startswith(IMAGE_PREFIX))
    if not cameras:
        raise ConfigError(f"{dataset} has no camera: the reward head reads pixels")
    if "observation.environment_state" in features:
        raise ConfigError(f"{dataset} records observation.environment_state: a reward head must not read the "
                          "simulator's object and goal positions (record it without --environment-state)")
    return cameras, int(features[f"{IMAGE_PREFIX}{cameras[0]}"]["shape"][0])


def roll_out(round_name: str, round_index: int, views: tuple[tuple[str, ...], int], options: SuccessDetectionOptions,
             timings: list, run_on: bool = False) -> list[Path]:
    """Every policy's rollouts of one round recorded with `views` (cameras, image size), each as a
    dataset with its rollouts.json beside it; with `run_on`, each goes on past its success for
    `run_on_length` frames in all."""
    cameras, image_size = views
    recorded = []
    for index, checkpoint in enumerate(options.policies):
        out = options.work / "rollouts" / round_name / f"policy{index}"
        report = out.with_name(out.name + ".json")

        def roll(out=out, report=report, checkpoint=checkpoint) -> None:
            loaded = load_policy(checkpoint, options.device)
            recording = Recording(out, cameras, image_size, repo_id=f"local/{out.name}")
            length = options.sized.run_on_length if run_on else options.sized.episode_length
            env_config = env_config_for(loaded.policy.config, options.task, options.action_repeat, length,
                                        options.datasets, recording)
            rollouts = run_rollouts(loaded, env_config, options.seeds(round_index), recording=recording,
                                    stop_on_success=not run_on)
            report.write_text(json.dumps({"checkpoint": str(checkpoint), **success_summary(
                [rollout.success for rollout in rollouts]), "rollouts": [r.record for r in rollouts]}, indent=2))

        step(f"roll out policy {index} ({round_name})", report, timings, roll)
        recorded.append(out)
    return recorded


def label_round(round_name: str, views: tuple[tuple[str, ...], int], options: SuccessDetectionOptions, timings: list,
                run_on: bool = False) -> LabelRound:
    """Round one's rollouts (seeds(0)), run on past success or not, labeled by `labeling.run`."""
    rollouts = roll_out(round_name, 0, views, options, timings, run_on)
    labeled = [label(root, options.work / "labeled" / f"{round_name}_{root.name}", options, timings) for root in rollouts]
    return LabelRound(round_name, rollouts, labeled)


def head_after(round_: LabelRound, head_name: str, labeled_training: list[Path], options: SuccessDetectionOptions,
               timings: list) -> Head:
    """A head trained on the training data plus the round's labeled rollouts."""
    head_set = head_training_set(labeled_training + round_.labeled, options.work / "head_data" / head_name, timings)
    return train_head(head_name, head_set, options, timings)


def label_traces(labeled: list[Path], rollouts: list[RolloutSet]) -> tuple[list[RolloutTrace], np.ndarray, int]:
    """The labels of recorded rollouts at every frame beside the simulator's success flags, the
    labels' verdict per rollout (success: imitate), and how many rollouts the labeler left without
    a label on every frame (skipped as unreadable: `labeling.run` records them in skipped.parquet)."""
    found, called, skipped = [], [], 0
    for labeled_root, rollout_set in zip(labeled, rollouts, strict=True):
        truth = rollout_set.truth
        # read for the rollouts, so in their episode numbering (the output renumbers around skipped ones)
        rows = read_rewards(f"labels:{labeled_root}", rollout_set.meta)
        by_episode = {int(e): frames.sort_values("frame_index") for e, frames in rows.groupby("episode_index")}
        for episode in sorted(truth):
            if episode not in by_episode or len(by_episode[episode]) != len(truth[episode]):
                skipped += 1
                continue
            found.append(RolloutTrace(by_episode[episode]["reward"].to_numpy(dtype=float),
                                      truth[episode]["success"].to_numpy(dtype=bool)))
            called.append(bool(by_episode[episode]["imitate"].iloc[0]))
    return found, np.array(called, dtype=bool), skipped


def labeler_dir(model: str) -> str:
    """A directory name per labeling model (its path or hub id, readable, plus a hash of all of it),
    so a finished labeling is reused only for the model that made it."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(Path(model).parts[-2:]))
    return f"{readable}_{hashlib.sha1(model.encode()).hexdigest()[:8]}"


def closest_to_goal(rollouts: list[RolloutSet]) -> dict[str, list[float]]:
    """The simulator's closest object-to-goal distance (hand-to-goal on reach) of every success and
    failure, in cm: how small a difference the labeler has to see."""
    closest = {"success": [], "failure": []}
    for rollout_set in rollouts:
        for frames in rollout_set.truth.values():
            outcome = "success" if frames["success"].any() else "failure"
            closest[outcome].append(round(100 * float(frames["obj_to_target"].min()), 2))
    return closest


def labels_of_rounds(rounds: list[LabelRound], options: SuccessDetectionOptions,
                     timings: list) -> tuple[dict[str, dict], dict[str, dict]]:
    """Step 2: `label_separation` of --model's labels of each round's rollouts and of every
    --other-labelers model's labels of the same rollouts, keyed "model, round"; and each round's
    `closest_to_goal`."""
    separation, closest = {}, {}
    for round_ in rounds:
        labeled_by = {options.model: round_.labeled} | {
            model: [label(root, options.work / "labeled_by" / labeler_dir(model) / f"{round_.name}_{root.name}", options,
                          timings, model=model) for root in round_.rollouts]
            for model in options.other_labelers}
        rollouts = [RolloutSet.read(root) for root in round_.rollouts]
        closest[round_.name] = closest_to_goal(rollouts)
        for model, labeled in labeled_by.items():
            found, called, skipped = label_traces(labeled, rollouts)
            separation[f"{model}, {round_.name}"] = {**label_separation(found, called, samples=options.sized.bootstrap),
                                                    "skipped_by_labeler": skipped}
    return separation, closest


def head_threshold(head: Head, timings: list) -> float:
    """The head's own "done": the final-frame reward that 95 % of its training episodes the labels
    call successes reach; computed once."""
    out = head.scores / "threshold.json"

    def compute() -> None:
        labels = pd.read_parquet(head.training_set / HEAD_LABELS)
        successes = sorted(int(e) for e, rows in labels.groupby("episode_index") if rows["imitate"].iloc[0])
        if not successes:
            raise DatasetError(f"labeling.run called none of the episodes in {head.training_set} a success: the head "
                               "has no threshold to learn from; give --datasets with successes")
        predicted = predict_rewards(load_policy(head.checkpoint), head.training_set, successes)
        threshold = training_threshold(np.array([reward[-1] for reward, _ in predicted.values()]))
        write_file(out, lambda partial: partial.write_text(json.dumps({"threshold": threshold})))

    step(f"threshold of head {head.name}", out, timings, compute)
    return json.loads(out.read_text())["threshold"]


def traces(head: Head, rollout_sets: list[Path], timings: list) -> list[RolloutTrace]:
    """The head's reward at every frame of one round's recorded rollouts (`rollout_sets`, one per
    policy), with the simulator's success flags; predicted once."""
    out = head.scores / f"{rollout_sets[0].parent.name}.parquet"

    def predict() -> None:
        loaded, frames = load_policy(head.checkpoint), []
        for root in rollout_sets:
            truth, _ = read_ground_truth_by_episode(root)
            predicted = predict_rewards(loaded, root, sorted(truth))
            for episode in sorted(truth):
                frames.append(pd.DataFrame({"rollout": len(frames), "reward": predicted[episode][0],
                                            "success": truth[episode]["success"].to_numpy(dtype=bool)}))
        write_file(out, lambda partial: pd.concat(frames, ignore_index=True).to_parquet(partial, index=False))

    step(f"traces of head {head.name} on {out.stem}", out, timings, predict)
    return [RolloutTrace(rows["reward"].to_numpy(dtype=float), rows["success"].to_numpy(dtype=bool))
            for _, rows in pd.read_parquet(out).groupby("rollout", sort=True)]


def score_heads(before: Head, round1: LabelRound, after: dict[str, tuple[Head, LabelRound]], fresh: list[Path],
                run_on: list[Path], options: SuccessDetectionOptions,
                timings: list) -> tuple[dict[str, dict], dict[str, list[RolloutTrace]]]:
    """Steps 4 and 5: every head's detection metrics per rollout set (each "after" head's hold from
    the failures of the round it trained on), and the traces to draw."""
    threshold_before = head_threshold(before, timings)
    scored = {"before, round-one rollouts": (traces(before, round1.rollouts, timings), threshold_before, 1),
              "before, fresh rollouts": (traces(before, fresh, timings), threshold_before, 1)}
    for name, (head, round_) in after.items():
        threshold = head_threshold(head, timings)
        own_round = traces(head, round_.rollouts, timings)
        hold = hold_for([trace for trace in own_round if not trace.succeeded], threshold)
        run_on_traces = traces(head, run_on, timings)
        scored |= {f"{name}, fresh rollouts": (traces(head, fresh, timings), threshold, 1),
                   f"{name}, run on past success": (run_on_traces, threshold, 1),
                   f"{name}, run on past success, held": (run_on_traces, threshold, hold)}
    rows = {name: detection_metrics(found, threshold, options.sized.bootstrap, hold=held)
            for name, (found, threshold, held) in scored.items()}
    traced = {name: found for name, (found, _, held) in scored.items() if held == 1}  # a held row's traces are drawn already
    return rows, traced


def success_report(rollouts: Path) -> dict:
    """A policy's success summary of one rollout set, without the per-rollout records."""
    report = json.loads(rollouts.with_name(rollouts.name + ".json").read_text())
    report.pop("rollouts")
    return report


def roc_points(final_reward: dict[str, list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) of "final reward >= t" over every t."""
    success, failure = np.array(final_reward["success"]), np.array(final_reward["failure"])
    thresholds = np.concatenate([[np.inf], np.sort(np.concatenate([success, failure]))[::-1]])
    return (np.array([(failure >= t).mean() if len(failure) else np.nan for t in thresholds]),
            np.array([(success >= t).mean() if len(success) else np.nan for t in thresholds]))


def write_head_plots(rows: dict[str, dict], traced: dict[str, list[RolloutTrace]], results: Path) -> None:
    """final_reward.png, roc.png and reward_traces.png."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for column, metrics in enumerate(rows.values()):
        for offset, (outcome, colour) in enumerate((("success", "tab:green"), ("failure", "tab:red"))):
            values = metrics["final_reward"][outcome]
            jitter = np.random.default_rng(column).uniform(-0.08, 0.08, len(values))
            ax.scatter(column + (offset - 0.5) * 0.3 + jitter, values, s=12, color=colour,
                       label=outcome if column == 0 else None)
        ax.hlines(metrics["threshold"], column - 0.4, column + 0.4, colors="k", linestyles="dashed",
                  label="threshold (training labels)" if column == 0 else None)
    ax.set_xticks(range(len(rows)), list(rows), fontsize=8)
    ax.set(ylabel="final-frame reward", ylim=(-0.05, 1.05), title="Final-frame reward by rollout outcome")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(results / "final_reward.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4, 4))
    for name, metrics in rows.items():
        fpr, tpr = roc_points(metrics["final_reward"])
        ax.plot(fpr, tpr, marker=".", label=f"{name} (AUROC {metrics['auroc'][0]:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax.set(xlabel="false-success rate", ylabel="true-success rate", title="ROC of the final-frame reward")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(results / "roc.png", dpi=120)
    plt.close(fig)

    # Every frame: where a "stop when done" rule would fire, and for how long the reward stays up.
    fig, axes = plt.subplots(1, len(traced), figsize=(4 * len(traced), 3.2), sharey=True, squeeze=False)
    for ax, (name, found) in zip(axes[0], traced.items(), strict=True):
        for trace in sorted(found, key=lambda trace: trace.succeeded):  # successes drawn on top
            colour = "tab:green" if trace.succeeded else "tab:red"
            ax.plot(trace.reward, color=colour, alpha=0.8 if trace.succeeded else 0.25, linewidth=1)
            if trace.succeeded:
                ax.plot(trace.first_success, trace.reward[trace.first_success], "o", color=colour, markersize=3)
        ax.axhline(rows[name]["threshold"], color="k", linestyle="dashed", linewidth=1)
        ax.set(title=name, xlabel="frame", ylim=(-0.05, 1.05))
    axes[0][0].set_ylabel("reward head")
    axes[0][0].legend(handles=[plt.Line2D([], [], color="tab:green", marker="o", markersize=3, label="success (dot: flag)"),
                               plt.Line2D([], [], color="tab:red", label="failure"),
                               plt.Line2D([], [], color="k", linestyle="dashed", label="threshold")],
                      fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(results / "reward_traces.png", dpi=110)
    plt.close(fig)


def write_labels_plot(labels: dict[str, dict], results: Path) -> None:
    """labels_at_flag.png: the share of each label at the successes' flags and at the failures' same frames."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(labels), figsize=(2.6 * len(labels), 3.4), sharey=True, squeeze=False)
    colours = plt.get_cmap("RdYlGn")(np.linspace(0.05, 0.95, len(SCORES)))
    for ax, (name, found) in zip(axes[0], labels.items(), strict=True):
        groups = {f"successes\nat the flag ({len(found['score_at_flag']['success'])})": found["score_at_flag"]["success"],
                  f"failures, same\nframes ({len(found['score_at_flag']['failure'])})": found["score_at_flag"]["failure"]}
        for position, values in enumerate(groups.values()):
            shares = np.array([np.mean(np.rint(values) == score) if len(values) else 0.0 for score in SCORES])
            ax.bar(position, shares, bottom=np.concatenate([[0], np.cumsum(shares)[:-1]]), color=colours, width=0.6)
        ax.set_xticks(range(len(groups)), list(groups), fontsize=7)
        ax.set_title(name.replace(", ", "\n"), fontsize=7)
    axes[0][0].set_ylabel("share of labels")
    axes[0][-1].legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colour) for colour in colours],
                       labels=[str(score) for score in SCORES], title="label", fontsize=7, title_fontsize=7,
                       loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("The labels at the moment of success", fontsize=9)
    fig.tight_layout()
    fig.savefig(results / "labels_at_flag.png", dpi=120)
    plt.close(fig)


def interval(value: tuple[float, float, float]) -> str:
    estimate, low, high = value
    return "n/a" if np.isnan(estimate) else f"{estimate:.2f} [{low:.2f}, {high:.2f}]"


def results_table(rows: dict[str, dict]) -> str:
    lines = ["| head, rollouts | rollouts (successes) | threshold | AUROC | AUROC at matched frames | false success "
             "@95 % TPR | true success | hold (frames) | stops right / early / wrong | successes never stopped | "
             "failures' longest stretch above it (frames: median, range) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, metrics in rows.items():
        stops = metrics["stop_when_done"]
        runs = stops["longest_run_above"]["failure"]
        stretch = f"{np.median(runs):.0f} ({min(runs)}-{max(runs)})" if runs else "n/a"
        lines.append(f"| {name} | {metrics['rollouts']} ({metrics['successes']}) | {metrics['threshold']:.2f} | "
                     f"{interval(metrics['auroc'])} | {interval(metrics['matched_frame_auroc'])} | "
                     f"{interval(metrics['false_success'])} | "
                     f"{interval(metrics['true_success'])} | {stops['hold']} | "
                     f"{stops['right']} / {stops['early']} / {stops['wrong']} | "
                     f"{stops['never_stopped_successes']} | {stretch} |")
    return "\n".join(lines) + "\n"


def labels_table(labels: dict[str, dict]) -> str:
    """Step 2 as a table: the labels at each success's first flagged frame against the failures'
    at the same frame."""

    def scores(values: list[float]) -> str:
        values = np.array(values)
        return (f"{values.mean():.2f} ({(values >= 4).mean():.0%} / {(values >= 5).mean():.0%})" if len(values)
                else "n/a")

    lines = ["| labeler, round | rollouts (successes) | AUROC at the flag | successes' label at the flag: mean (>= 4 / 5) "
             "| failures' labels at the same frames: mean (>= 4 / 5) | called a success: successes / failures |",
             "|---|---|---|---|---|---|"]
    for name, found in labels.items():
        called = found["called_success"]
        skipped = f"; {found['skipped_by_labeler']} left unlabeled" if found["skipped_by_labeler"] else ""
        lines.append(f"| {name} | {found['rollouts']} ({found['successes']}){skipped} | {interval(found['auroc_at_flag'])} | "
                     f"{scores(found['score_at_flag']['success'])} | {scores(found['score_at_flag']['failure'])} | "
                     f"{called['success']}/{found['successes']} / {called['failure']}/"
                     f"{found['rollouts'] - found['successes']} |")
    return "\n".join(lines) + "\n"


def closest_lines(closest: dict[str, dict]) -> str:
    """How close each round's successes and failures came to the goal, for the reader to judge what
    the labels had to see."""

    def spread(values: list[float]) -> str:
        return f"median {np.median(values):.1f} ({min(values):.1f}-{max(values):.1f})" if values else "none"

    return ("How close the rollouts came to the goal (the simulator's closest object-to-goal distance, "
            "hand-to-goal on reach, in cm):\n\n" + "\n".join(
                f"- {name}: successes {spread(found['success'])}, failures {spread(found['failure'])}"
                for name, found in closest.items()))


def write_readme(options: SuccessDetectionOptions, argv: list[str] | None, rows: dict[str, dict],
                 labels: dict[str, dict], closest: dict[str, dict], success_rates: dict[str, dict]) -> None:
    policies = "\n".join(f"- policy {index}: `{checkpoint}`: " + ", ".join(
        f"{report['successes']}/{report['episodes']} successes in {ROLLOUT_SETS[name]}" for name, report in rates.items())
        for index, (checkpoint, rates) in enumerate(zip(options.policies, success_rates.values(), strict=True)))
    heads = f"""Fresh rollouts on seeds {options.seeds(1)[0]}-{options.seeds(1)[-1]}, and {options.seeds(2)[0]}-{options.seeds(2)[-1]} run on past the
success flag to {options.sized.run_on_length} frames; head training seed {options.head_seed}. Intervals: 95 % bootstrap
over rollouts ({options.sized.bootstrap} resamples); the threshold is the final-frame reward that 95 % of the
training episodes the labels call successes reach; the AUROC at matched frames compares each
success's last frame with every failure's frame of the same index (the env ends a success on its
flag, a failure at the episode's length, so the final frame alone can reward a head that only
tells late frames from early ones); a stop is at the frame that ends `hold` frames
in a row at or above it, right when the simulator has said success at or before that frame. A
held row's hold passes over every failure of its head's own round (round one) under that head; on
rollouts run on past their success, "success" means flagged on some frame. The "after" head
trains on round one's rollouts, the "after run-on" head on the same seeds run on past the success
flag to {options.sized.run_on_length} frames, so its successes are as long as its failures.

{results_table(rows)}
Targets after the round: AUROC >= 0.9 (at matched frames too: on the final frame alone, episode
length can meet it), false success <= 0.10 at 95 % TPR.

![final-frame reward by outcome](final_reward.png) ![ROC](roc.png)

The head's reward at every frame of every rollout (a success ends on the frame the simulator
flags, except in the rollouts run on past it):

![reward traces](reward_traces.png)
""" if rows else "(`--labels-only`: no head trained.)\n"
    (options.results / "README.md").write_text(f"""# Does the reward head know it is done?

```bash
{command_line(PROG, argv)}
```

Task {options.task}, preset `{options.preset}`; round one: rollout seeds {options.seeds(0)[0]}-{options.seeds(0)[-1]}, ended at
the success flag and again run on past it, labeled by `labeling.run` with `{options.model}`.

{policies}

The labels of round one's rollouts (and other labelers' labels of the same rollouts, if any):
each success's label (1-5) on the frame the simulator first flags success against every
failure's label on the same frame. A head learns "done" only if these separate.

{labels_table(labels)}
{closest_lines(closest)}

![labels at the success flag](labels_at_flag.png)

{heads}""")


def main(argv: list[str] | None = None) -> int:
    options = parse_options(SuccessDetectionOptions, argv, prog=PROG)
    work, timings = options.work, []
    views = recording_views(options.datasets[0])
    round1 = label_round("round1", views, options, timings)
    round1_run_on = label_round("round1_run_on", views, options, timings, run_on=True)
    labels, closest = labels_of_rounds([round1, round1_run_on], options, timings)
    rollout_sets = {"round1": round1.rollouts, "round1_run_on": round1_run_on.rollouts}
    rows, traced = {}, {}
    if not options.labels_only:
        labeled_training = [label(dataset, work / "labeled" / f"train{index}", options, timings, options.train_episodes)
                            for index, dataset in enumerate(options.datasets)]
        before = train_head("before", head_training_set(labeled_training, work / "head_data" / "before", timings),
                            options, timings)
        after = head_after(round1, "after", labeled_training, options, timings)
        after_run_on = head_after(round1_run_on, "after_run_on", labeled_training, options, timings)
        rollout_sets |= {"fresh": roll_out("fresh", 1, views, options, timings),
                         "run_on": roll_out("run_on", 2, views, options, timings, run_on=True)}
        rows, traced = score_heads(before, round1, {"after": (after, round1), "after run-on": (after_run_on, round1_run_on)},
                                   rollout_sets["fresh"], rollout_sets["run_on"], options, timings)
    success_rates = {f"policy{index}": {name: success_report(roots[index]) for name, roots in rollout_sets.items()}
                     for index in range(len(options.policies))}
    options.results.mkdir(parents=True, exist_ok=True)
    (options.results / "results.json").write_text(json.dumps(
        {"command": command_line(PROG, argv), "options": as_record(options), "preset": asdict(options.sized),
         "seeds": {"round1": options.seeds(0)} | ({} if options.labels_only else {"fresh": options.seeds(1),
                                                                                  "run_on": options.seeds(2)}),
         "policies": success_rates, "heads": rows, "labels": labels, "closest_to_goal_cm": closest,
         "timings": timings}, indent=2))
    if rows:
        write_head_plots(rows, traced, options.results)
    write_labels_plot(labels, options.results)
    write_readme(options, argv, rows, labels, closest, success_rates)
    print((results_table(rows) + "\n" if rows else "") + labels_table(labels), end="")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

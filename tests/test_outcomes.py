"""Episode outcomes and the order of the stages: `labeling.run` judges each episode from its
labels (after validation), and every consumer uses that verdict without a flag.

The model is scripted by what each call is about (episode, frame, validation target), so each
test can say which episode fails, which answers are unreadable and what validation changes."""

import json

import numpy as np
import pandas as pd
import pytest

from common.dataset import EpisodeSource
from common.label_files import read_outcomes, read_output_numbering
from labeling.calls import CallResult, CallStats
from labeling.clips import ClipSpec
from labeling.config import LabelingConfig, OutcomeConfig, ValidationConfig
from labeling.context import LabelingContext
from labeling.output import write_outputs
from labeling.pipeline import label_episodes
from labeling.prompts import PromptLibrary
from labeling.records import TaskRewrite
from labeling.run import provenance, summarize

SUCCESS, FAILURE = 0, 7  # demo episodes (35 and 28 frames)


class ScriptedModel:
    """Answers as `ModelCaller.run` does, from `progress(episode, frame, length)` (a score, or
    None for an unreadable answer) and `verdict(target_id, proposed)` (None: consistent)."""

    progress = False  # no progress bars

    def __init__(self, source, progress, verdict=lambda target, proposed: None):
        self.source, self.score, self.verdict = source, progress, verdict
        self.calls: list[tuple[str, dict]] = []
        self.stats = CallStats()  # the stages time their phases on the caller's counters

    def run(self, stage, jobs, params, parse, show_progress=True):
        self.calls += [(stage, job.about) for job in jobs]
        return [self._answer(stage, job.about) for job in jobs]

    def _answer(self, stage, about):
        if stage == "progress":
            score = self.score(about["episode"], about["frame"], self.source.episode(about["episode"]).length)
            if score is None:
                return CallResult(reason="no score in the answer")
            return CallResult(value=score, probs=[float(k == score) for k in range(1, 6)])
        if stage == "validate":
            relabel = self.verdict(about["target"], about)
            return CallResult(value={"consistent": relabel is None, "score": relabel})
        if stage == "describe":
            return CallResult(value="the arm moves the puck")
        if stage == "counterfactual":
            return CallResult(value=[["Push the puck off the table", 1]])
        raise AssertionError(stage)


def rises_to(final):
    """Progress rising over the episode from 1 to `final`."""
    return lambda episode, frame, length: int(round(1 + (final - 1) * frame / (length - 1)))


def run_pipeline(source, model, episodes, stages=("progress", "negatives", "validate"), fraction=0.2):
    config = LabelingConfig(views=ClipSpec(cameras=("observation.images.topview",), image_size=32), stages=stages,
                            validation=ValidationConfig(fraction=fraction))
    ctx = LabelingContext(source, model, PromptLibrary(), config.views, episodes)
    return label_episodes(ctx, config, {e: source.episode(e).task for e in episodes}), config


def write(out, source, result, config):
    prompts = PromptLibrary()
    rewrites = {t: TaskRewrite(t, t) for t in {source.episode(e).task for e in result.labels}}
    record = provenance({"backend": "scripted", "model": "scripted"}, prompts, config, source,
                        sorted(result.labels), {"executor": "local"}, "start")
    write_outputs(out, source, result, rewrites, record, summarize(CallStats(), False, result, 0.0))
    return out


@pytest.fixture(scope="module")
def demo(demo_root):
    return EpisodeSource.open(demo_root)


@pytest.fixture(scope="module")
def labeled_with_a_failure(demo, tmp_path_factory):
    """Episode 0 ends at 5, episode 7 at 2: an unflagged failure the labels saw."""
    model = ScriptedModel(demo, lambda e, f, n: rises_to(5 if e == SUCCESS else 2)(e, f, n))
    result, config = run_pipeline(demo, model, [SUCCESS, FAILURE])
    return write(tmp_path_factory.mktemp("outcomes") / "labeled", demo, result, config), result, model


def test_each_episode_gets_a_verdict_in_the_output(labeled_with_a_failure):
    out, result, _ = labeled_with_a_failure
    assert result.outcomes == {SUCCESS: True, FAILURE: False}
    assert read_outcomes(out) == {SUCCESS: True, FAILURE: False}
    episodes = pd.read_parquet(out / "labels" / "episodes.parquet")
    assert episodes.set_index("episode_index").final_expected.to_dict() == {SUCCESS: 5.0, FAILURE: 2.0}
    assert episodes.labeled.all() and episodes.reason.str.contains("final expected score").all()
    frames = pd.read_parquet(out / "labels" / "frames.parquet")
    assert frames.groupby("episode_index").success.agg(["all", "any"]).to_dict("index") == {
        SUCCESS: {"all": True, "any": True}, FAILURE: {"all": False, "any": False}}
    assert json.loads((out / "labels" / "provenance.json").read_text())["config"]["outcome"] == {
        "success_min_final_expected": OutcomeConfig.success_min_final_expected}


def test_a_labeled_failure_is_masked_out_of_rewacts_action_loss_with_no_flag(labeled_with_a_failure):
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    from rewact.configuration_rewact import RewACTConfig
    from rewact.labels import build_reward_table

    out = labeled_with_a_failure[0]
    meta = LeRobotDatasetMetadata("local/labeled", root=out)
    spans = {int(r["episode_index"]): (int(r["dataset_from_index"]), int(r["dataset_to_index"]))
             for r in meta.episodes.to_list()}
    number = read_output_numbering(out)  # the output holds the two labeled episodes, numbered 0..1
    for source in (dict(label_source="labels", labels_path=str(out)), dict(label_source="dataset")):
        table = build_reward_table(RewACTConfig(**source, skip_unlabeled_episodes=True), meta)
        assert table.imitate[slice(*spans[number[SUCCESS]])].all(), source
        assert not table.imitate[slice(*spans[number[FAILURE]])].any(), source
        assert table.labeled[slice(*spans[number[FAILURE]])].all(), source  # it still trains the reward head


def test_ra_bc_gives_a_failed_episode_zero_weight(labeled_with_a_failure):
    from lerobot.rewards.sarm.rabc import RABCWeights

    out = labeled_with_a_failure[0]
    dataset = pd.read_parquet(sorted((out / "data").rglob("*.parquet"))[0])  # RA-BC reads the output's indices
    weighter = RABCWeights(out / "sarm_progress.parquet", chunk_size=5, device="cpu")
    for episode, rows in dataset.groupby("episode_index"):
        weights, _ = weighter.compute_batch_weights({"index": rows["index"].to_numpy()[:-1]})
        if episode == read_output_numbering(out)[FAILURE]:
            assert float(weights.max()) == 0.0
        else:
            assert float(weights.min()) > 0.0


def test_outcomes_and_rewards_in_rewacts_own_formats(labeled_with_a_failure):
    out = labeled_with_a_failure[0]
    # rewACT reads these with the output dataset: its numbering (the run labeled two source episodes)
    number = read_output_numbering(out)
    outcomes = json.loads((out / "candywrapper_plugins" / "episode_outcome" / "outcomes.json").read_text())
    assert outcomes == [{"episode_index": number[SUCCESS], "outcome": "success"},
                        {"episode_index": number[FAILURE], "outcome": "failure"}]
    dataset = pd.read_parquet(sorted((out / "data").rglob("*.parquet"))[0])
    for episode, rows in dataset.groupby("episode_index"):
        rewards = pd.read_parquet(out / "candywrapper_plugins" / "labelled_rewards" / f"episode_{episode:06d}.parquet")
        assert list(rewards.columns) == ["frame_index", "reward"]
        np.testing.assert_array_equal(rewards.frame_index, rows["index"])  # the global index, as rewACT reads it
        np.testing.assert_allclose(rewards.reward, [float(np.ravel(r)[0]) for r in rows["next.reward"]])


def test_negatives_come_from_successful_episodes_only(labeled_with_a_failure):
    out, result, model = labeled_with_a_failure
    assert {n.episode for n in result.negatives} == {SUCCESS}
    assert {n.origin for n in result.negatives} == {"temporal_clip", "counterfactual"}
    assert {about["episode"] for stage, about in model.calls if stage == "describe"} == {SUCCESS}
    assert set(pd.read_parquet(out / "labels" / "negatives.parquet").episode) == {SUCCESS}


def test_fine_tuning_takes_negatives_of_successes_only(labeled_with_a_failure, tmp_path):
    import shutil

    from training.reward_vlm.examples import negative_examples

    out = tmp_path / "labeled"
    shutil.copytree(labeled_with_a_failure[0] / "labels", out / "labels")
    negatives = pd.read_parquet(out / "labels" / "negatives.parquet")
    planted = negatives.iloc[:1].assign(episode=FAILURE, id="cf-planted")  # as an older run cut them
    pd.concat([negatives, planted]).to_parquet(out / "labels" / "negatives.parquet")
    examples = negative_examples(out, [SUCCESS, FAILURE])
    assert {e.episode for e in examples} == {SUCCESS} and len(examples) == len(negatives)


def test_an_episode_with_too_few_readable_answers_is_left_unlabeled_with_the_reason(demo, tmp_path):
    def answers(episode, frame, length):
        return rises_to(5)(episode, frame, length) if episode == SUCCESS or frame == 0 else None

    result, config = run_pipeline(demo, ScriptedModel(demo, answers), [SUCCESS, FAILURE], stages=("progress",))
    assert set(result.labels) == {SUCCESS} and set(result.outcomes) == {SUCCESS}
    assert result.skipped[FAILURE].startswith("only 1 of 6 progress answers readable, 3 needed")
    out = write(tmp_path / "labeled", demo, result, config)
    episodes = pd.read_parquet(out / "labels" / "episodes.parquet").set_index("episode_index")
    assert not episodes.labeled[FAILURE] and "only 1 of 6" in episodes.reason[FAILURE]
    data = pd.read_parquet(out / "data")
    assert (data[data.episode_index == FAILURE]["reward.labeled"] == 0).all()
    assert FAILURE not in set(pd.read_parquet(out / "sarm_progress.parquet").episode_index)
    assert {"episode_index": read_output_numbering(out)[FAILURE], "outcome": "unknown"} in json.loads(
        (out / "candywrapper_plugins" / "episode_outcome" / "outcomes.json").read_text())


def test_validation_comes_before_what_is_derived_from_the_labels(demo):
    """The validator says the last keyframe is a 2, not a 5: the episode becomes a failure, the
    keyframe keeps no stale probabilities, and no negative is cut from the labels it replaced."""
    last = demo.episode(SUCCESS).length - 1

    def verdict(target, about):
        return 2 if about["frame"] == last else None

    model = ScriptedModel(demo, rises_to(5), verdict)
    result, _ = run_pipeline(demo, model, [SUCCESS], fraction=1.0)
    keyframe = result.labels[SUCCESS].keyframes[last]
    assert (keyframe.source, keyframe.score, keyframe.expected, keyframe.probs) == ("validator", 2, 2, None)
    assert result.outcomes == {SUCCESS: False}
    assert result.negatives == []
    assert [stage for stage, _ in model.calls if stage != "progress"] == ["validate"] * 6


def test_temporal_clips_are_cut_from_the_validated_labels(demo):
    """A middle keyframe relabelled: every clip's score is the final label at its last frame."""
    def verdict(target, about):
        return 4 if about["frame"] == 14 else None

    result, _ = run_pipeline(demo, ScriptedModel(demo, rises_to(5), verdict), [SUCCESS], fraction=1.0)
    label = result.labels[SUCCESS]
    clips = [n for n in result.negatives if n.origin == "temporal_clip"]
    assert clips and all(label.score[clip.end] == clip.score for clip in clips)
    assert result.labels[SUCCESS].keyframes[14].source == "validator"

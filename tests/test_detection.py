"""Success detection on rollouts (training/evaluation/detection.py), on hand-made traces: the
threshold comes from the training successes, and every stop is counted as right, early or wrong."""

import numpy as np
import pytest

from training.evaluation.detection import (RolloutTrace, detection_metrics, hold_for, label_separation,
                                           stop_when_done, training_threshold)


def trace(reward, first_success=None):
    reward = np.array(reward, dtype=float)
    success = np.zeros(len(reward), dtype=bool)
    if first_success is not None:
        success[first_success:] = True
    return RolloutTrace(reward, success)


def test_threshold_is_what_95_percent_of_the_training_successes_reach():
    finals = np.linspace(0.5, 0.99, 20)  # 20 training successes: 19 of them (95 %) reach the second lowest
    assert training_threshold(finals) == pytest.approx(finals[1])
    assert training_threshold(np.array([0.9, 0.7]), recall=0.5) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="no episode a success"):
        training_threshold(np.array([]))


def test_stop_when_done_counts_right_early_wrong_and_never_stopped_successes():
    traces = [
        trace([0.1, 0.5, 0.95], first_success=2),  # crosses at the success frame: right
        trace([0.1, 0.95, 0.97, 0.99], first_success=3),  # crosses at 1, success at 3: early
        trace([0.2, 0.9, 0.4]),  # crosses, never succeeds: wrong
        trace([0.2, 0.3, 0.5], first_success=2),  # a success the head never reaches: never stopped
        trace([0.1, 0.2, 0.3]),  # a failure it never stops: nothing to count
    ]
    stops = stop_when_done(traces, threshold=0.9)
    assert {key: stops[key] for key in ("stops", "right", "early", "wrong", "never_stopped_successes")} == {
        "stops": 3, "right": 1, "early": 1, "wrong": 1, "never_stopped_successes": 1}
    assert stops["stop_right_rate"] == pytest.approx(1 / 3)
    low, high = stops["stop_right_ci95"]
    assert 0 < low < 1 / 3 < high < 1
    assert stops["longest_run_above"] == {"success": [1, 3, 0], "failure": [1, 0]}


def test_longest_run_above_counts_the_longest_stretch_not_every_frame_above():
    assert trace([0.9, 0.2, 0.95, 0.96, 0.97, 0.1, 0.99]).longest_run_above(0.9) == 3
    assert trace([0.91, 0.92]).longest_run_above(0.9) == 2 and trace([0.1, 0.2]).longest_run_above(0.9) == 0


def test_a_hold_stops_at_the_kth_frame_in_a_row_above_and_passes_over_shorter_stretches():
    hovering_failure = trace([0.1, 0.9, 0.95, 0.92, 0.3, 0.95, 0.2])  # up for 3 frames, then once
    success_run_on = trace([0.1, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97], first_success=3)  # stays up past its flag
    assert hovering_failure.stop_frame(0.9) == 1 and hovering_failure.stop_frame(0.9, hold=3) == 3
    assert hovering_failure.stop_frame(0.9, hold=4) is None
    hold = hold_for([hovering_failure], 0.9)
    assert hold == 4 and success_run_on.stop_frame(0.9, hold) == 4  # at or after the flag: right
    stops = stop_when_done([hovering_failure, success_run_on], 0.9, hold)
    assert (stops["hold"], stops["right"], stops["early"], stops["wrong"]) == (4, 1, 0, 0)
    assert stop_when_done([hovering_failure, success_run_on], 0.9)["wrong"] == 1  # no hold: stopped at frame 1
    assert hold_for([], 0.9) == 1


def test_a_rollout_run_on_past_its_success_still_counts_as_one():
    drifted_away = RolloutTrace(np.array([0.1, 0.9, 0.5]), np.array([False, True, False]))
    assert drifted_away.succeeded and drifted_away.first_success == 1


def test_false_success_is_scored_at_the_given_threshold_not_one_fitted_to_the_rollouts():
    successes = [trace([0.2, r], first_success=1) for r in (0.8, 0.85, 0.9, 0.95)]
    failures = [trace([0.1, r]) for r in (0.3, 0.6, 0.82, 0.88)]
    metrics = detection_metrics(successes + failures, threshold=0.84, samples=200)
    assert metrics["auroc"][0] == pytest.approx(13 / 16)  # success > failure in 13 of 16 pairs
    assert metrics["false_success"][0] == pytest.approx(1 / 4)  # 0.88 reaches 0.84
    assert metrics["true_success"][0] == pytest.approx(3 / 4)  # 0.8 does not
    for name in ("auroc", "false_success", "true_success"):
        estimate, low, high = metrics[name]
        assert low <= estimate <= high
    assert metrics["final_reward"] == {"success": [0.8, 0.85, 0.9, 0.95], "failure": [0.3, 0.6, 0.82, 0.88]}
    # A threshold below every final reward calls every failure a success.
    assert detection_metrics(successes + failures, threshold=0.0, samples=10)["false_success"][0] == 1.0


def test_a_head_that_only_tells_late_frames_from_early_ones_fails_the_matched_frame_auroc():
    clock = np.linspace(0.2, 0.8, 90)  # the same rise in every rollout, whatever happens
    successes = [trace(clock[:length], first_success=length - 1) for length in (20, 30, 40)]
    failures = [trace(np.concatenate([clock[:60], np.full(30, 0.1)])) for _ in range(3)]  # labeled low at their end
    metrics = detection_metrics(successes + failures, threshold=0.5, samples=50)
    assert metrics["auroc"][0] == 1.0  # the final frame separates them: the failures' last frames are late
    assert metrics["matched_frame_auroc"][0] == 0.5  # at a success's last frame, failures read the same
    seeing = [trace(np.concatenate([clock[:length - 1], [0.95]]), first_success=length - 1) for length in (20, 30, 40)]
    assert detection_metrics(seeing + failures, threshold=0.5, samples=50)["matched_frame_auroc"][0] == 1.0


def test_label_separation_compares_a_success_at_its_flag_with_failures_at_the_same_frame():
    # Labels as rewards: 0.75 is a 4, 1.0 a 5. Two successes run on past their flag (frames 2 and 3).
    touching = trace([0.25, 0.5, 1.0, 1.0, 0.75], first_success=2)  # a 5 at its flag
    hovering_success = trace([0.25, 0.5, 0.75, 0.75, 0.75], first_success=3)  # only a 4 at its flag
    hovering_failure = trace([0.25, 0.75, 0.75, 0.75, 0.75])  # a 4 at frames 2 and 3
    stalled = trace([0.25, 0.25, 0.25])  # too short for the second success's flag
    separation = label_separation([touching, hovering_success, hovering_failure, stalled],
                                  called_success=[True, False, True, False], samples=200)
    # Pairs: touching beats both failures at frame 2; hovering_success ties hovering_failure at 3.
    assert separation["auroc_at_flag"][0] == pytest.approx((1 + 1 + 0.5) / 3)
    low, high = separation["auroc_at_flag"][1:]
    assert low <= separation["auroc_at_flag"][0] <= high
    assert separation["score_at_flag"] == {"success": [5.0, 4.0], "failure": [4.0, 2.0, 4.0]}
    assert separation["called_success"] == {"success": 1, "failure": 1}
    assert (separation["rollouts"], separation["successes"]) == (4, 2)
    # Labels that mark only the flag frame (not the time) separate completely.
    seeing = [trace([0.25, 0.5, 1.0], first_success=2), trace([0.25, 0.5, 0.75, 0.75])]
    assert label_separation(seeing, [True, False], samples=20)["auroc_at_flag"][0] == 1.0


def test_auroc_is_undefined_without_both_outcomes():
    metrics = detection_metrics([trace([0.1, 0.2]), trace([0.3, 0.4])], threshold=0.5, samples=10)
    assert np.isnan(metrics["auroc"][0]) and metrics["false_success"][0] == 0.0
    assert np.isnan(metrics["stop_when_done"]["stop_right_rate"])


@pytest.mark.slow
def test_smoke_preset_runs_both_rollout_label_rounds_and_reports_every_head(demo_checkpoint, demo_root, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from common.ground_truth import read_ground_truth

    work, results = tmp_path / "work", tmp_path / "results"
    command = [sys.executable, "-m", "training.experiments.success_detection", "--preset", "smoke", "--task",
               "reach-v3", "--policies", str(demo_checkpoint), "--datasets", str(demo_root), "--work", str(work),
               "--results", str(results), "--train-episodes", "7,8,10"]  # two reach successes and a stall
    # --labels-only: round one's rollouts (ended at success, and run on) labeled and the labels
    # scored at the success flags; no head is trained.
    labels_only = subprocess.run([*command, "--labels-only"], capture_output=True, text=True, timeout=600)
    assert labels_only.returncode == 0, labels_only.stderr[-3000:]
    report = json.loads((results / "results.json").read_text())
    labeler = "models/metaworld-reward-vlm"
    assert report["heads"] == {} and report["seeds"] == {"round1": [5000, 5001]}
    assert set(report["labels"]) == {f"{labeler}, round1", f"{labeler}, round1_run_on"}
    for found in report["labels"].values():
        assert found["rollouts"] == 2 and found["skipped_by_labeler"] == 0
        assert all(1 <= score <= 5 for values in found["score_at_flag"].values() for score in values)
    assert set(report["policies"]["policy0"]) == {"round1", "round1_run_on"}
    for closest in report["closest_to_goal_cm"].values():  # reach-v3 succeeds within 5 cm of its goal
        assert len(closest["success"]) + len(closest["failure"]) == 2
        assert all(cm <= 5 for cm in closest["success"]) and all(cm >= 4.99 for cm in closest["failure"])
    assert set(report["closest_to_goal_cm"]) == {"round1", "round1_run_on"}
    assert not (work / "heads").exists() and not (work / "labeled" / "train0").exists()
    readme = (results / "README.md").read_text()
    assert f"| {labeler}, round1_run_on | 2 (" in readme and "no head trained" in readme
    assert (results / "labels_at_flag.png").is_file() and not (results / "roc.png").exists()

    # The whole command: round one is reused, the heads trained and scored.
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "roll out policy 0 (round1_run_on): already done" in result.stdout
    report = json.loads((results / "results.json").read_text())
    assert report["seeds"] == {"round1": [5000, 5001], "fresh": [5002, 5003], "run_on": [5004, 5005]}
    after_rows = ("fresh rollouts", "run on past success", "run on past success, held")
    for name in ("before, round-one rollouts", "before, fresh rollouts",
                 *(f"{head}, {rows}" for head in ("after", "after run-on") for rows in after_rows)):
        head = report["heads"][name]
        assert head["rollouts"] == 2 and 0.0 <= head["threshold"] <= 1.0
        assert len(head["final_reward"]["success"]) + len(head["final_reward"]["failure"]) == 2
        runs = head["stop_when_done"]["longest_run_above"]
        assert len(runs["success"]) + len(runs["failure"]) == 2 and all(0 <= n <= 10 for n in runs["failure"])
    for head in ("after", "after run-on"):
        held = report["heads"][f"{head}, run on past success, held"]["stop_when_done"]["hold"]
        assert report["heads"][f"{head}, run on past success"]["stop_when_done"]["hold"] == 1
        assert 1 <= held <= {"after": 9, "after run-on": 11}[head]  # one more than a failure's frames at most
    # Rollouts run on past success go on to the run-on length whatever the simulator says.
    run_on = read_ground_truth(work / "rollouts" / "run_on" / "policy0")
    assert run_on[1]["seed"].tolist() == [5004, 5005] and (run_on[0].groupby("episode_index").size() == 10).all()
    # The round's rollouts were recorded with the head's views and labeled by labeling.run; the
    # after-head trained on the training episodes and them.
    round1 = work / "rollouts" / "round1" / "policy0"
    assert read_ground_truth(round1)[1]["seed"].tolist() == [5000, 5001]
    assert (work / "labeled" / "round1_policy0" / "labels" / "episodes.parquet").is_file()
    after = json.loads((work / "head_data" / "after" / "meta" / "info.json").read_text())
    before = json.loads((work / "head_data" / "before" / "meta" / "info.json").read_text())
    assert after["total_episodes"] == before["total_episodes"] + 2
    # The run-on round: round one's seeds again, each rollout going on to the run-on length, labeled
    # and trained on in place of round one's.
    round1_run_on = read_ground_truth(work / "rollouts" / "round1_run_on" / "policy0")
    assert round1_run_on[1]["seed"].tolist() == [5000, 5001]
    assert (round1_run_on[0].groupby("episode_index").size() == 10).all()
    assert (work / "labeled" / "round1_run_on_policy0" / "labels" / "episodes.parquet").is_file()
    after_run_on = json.loads((work / "head_data" / "after_run_on" / "meta" / "info.json").read_text())
    assert after_run_on["total_episodes"] == before["total_episodes"] + 2
    assert after_run_on["total_frames"] == before["total_frames"] + 20
    assert report["policies"]["policy0"]["round1_run_on"]["episodes"] == 2
    for file in ("README.md", "final_reward.png", "roc.png", "reward_traces.png", "labels_at_flag.png"):
        assert (results / file).is_file()
    assert "| after, fresh rollouts | 2 (" in (results / "README.md").read_text()
    assert set(report["labels"]) == {f"{labeler}, round1", f"{labeler}, round1_run_on"}
    # Run again with another labeler: every step is reused but labeling the rounds' rollouts with it
    # (here the same model by another path, so its labels must score the same).
    other = str(Path(labeler).resolve())
    again = subprocess.run([*command, "--other-labelers", other], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    steps = [line for line in again.stdout.splitlines() if line.startswith("[experiment]")]
    new_steps = [line for line in steps if "already done" not in line]
    [labeler_dir] = [path.name for path in (work / "labeled_by").iterdir()]
    assert labeler_dir.startswith("models_metaworld-reward-vlm_")
    assert steps and new_steps == [f"[experiment] label labeled_by/{labeler_dir}/round1_policy0 ...",
                                   f"[experiment] label labeled_by/{labeler_dir}/round1_run_on_policy0 ..."]
    labels = json.loads((results / "results.json").read_text())["labels"]
    for round_name in ("round1", "round1_run_on"):
        assert labels[f"{other}, {round_name}"] == labels[f"{labeler}, {round_name}"]


def test_a_head_dataset_with_simulator_positions_is_refused_before_anything_runs(tmp_path, cli):
    from data.benchmark import GenerateConfig, generate
    from data.rollout import RolloutConfig

    dataset = generate(GenerateConfig(out=tmp_path / "with_positions", tasks=("reach-v3",), successes=1,
                                      failures_per_kind=0, rollout=RolloutConfig(cameras=("topview",), image_size=32),
                                      use_videos=False, environment_state=True), progress=False)
    result = cli("training.experiments.success_detection", "--policies", tmp_path / "unused", "--datasets", dataset,
                 "--task", "reach-v3", "--work", tmp_path / "work", "--results", tmp_path / "results")
    assert result.returncode == 2 and "must not read the simulator's object and goal positions" in result.stderr
    assert not (tmp_path / "work").exists()


def test_a_labeler_named_twice_is_refused_before_anything_runs(tmp_path, cli):
    result = cli("training.experiments.success_detection", "--policies", tmp_path / "unused", "--datasets",
                 tmp_path / "unused", "--task", "reach-v3", "--work", tmp_path / "work", "--other-labelers",
                 "models/metaworld-reward-vlm")
    assert result.returncode == 2 and "repeats a labeler" in result.stderr
    assert not (tmp_path / "work").exists()


def test_each_labeling_model_has_its_own_directory_so_a_changed_list_never_reuses_another_models_labels():
    from training.experiments.success_detection import labeler_dir

    models = ["outputs/reward_vlm_all_kinds/model", "outputs/reward_vlm_reach/model", "Qwen/Qwen2.5-VL-7B-Instruct",
              "/abs/outputs/reward_vlm_reach/model"]
    names = [labeler_dir(model) for model in models]
    assert len(set(names)) == len(models)
    assert names[2].startswith("Qwen_Qwen2.5-VL-7B-Instruct_") and "/" not in "".join(names)

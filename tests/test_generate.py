"""The benchmark generator: deterministic, atomic, streaming, and honest about every episode kind."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.cli import run_cli
from common.ground_truth import read_ground_truth
from data.benchmark import GenerateConfig, generate
from data.generate import main
from data.rollout import DETOUR_KINDS, FAILURE_KINDS, MetaWorldSim, RolloutConfig


def _first_kept(sim: MetaWorldSim, kind: str, seeds=range(20), **kwargs):
    return next(e for e in (sim.rollout(kind, seed, **kwargs) for seed in seeds) if e is not None)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["push-v3"])
def test_every_kind_is_produced_and_validated_by_the_simulator(task):
    sim = MetaWorldSim(task, RolloutConfig(cameras=("topview",), image_size=32))
    try:
        for kind in ("success", *FAILURE_KINDS, "hesitation", "corrected_misplacement"):
            frames = []
            episode = _first_kept(sim, kind, on_frame=frames.append)
            assert (episode.outcome == "success") == (kind in ("success", "hesitation", "corrected_misplacement"))
            assert len(frames) >= len(episode)  # rejected attempts' frames were handed over too
            assert frames[-1].images["topview"].shape == (32, 32, 3)
    finally:
        sim.close()


def test_the_demo_regenerates_identically(demo_root):
    """Today's defaults keep the committed demo (and every result made from it) valid: each demo
    episode, rolled out again from its recorded seed, has the same truth and the same actions. Progress
    may differ in a float's last bits between CPUs (numpy picks its SIMD code by machine)."""
    truth, episodes = read_ground_truth(demo_root)
    recorded = json.loads((demo_root / "ground_truth" / "config.json").read_text())["rollout"]
    config = RolloutConfig(cameras=(), action_repeat=recorded["action_repeat"])  # actions without rendering
    defaults = RolloutConfig()
    assert (defaults.action_repeat, defaults.image_size) == (recorded["action_repeat"], recorded["image_size"])
    actions = pd.read_parquet(demo_root / "data")
    sims = {task: MetaWorldSim(task, config) for task in episodes["env_name"].unique()}
    try:
        for row in episodes.itertuples():
            frames = []
            episode = sims[row.env_name].rollout(row.kind, int(row.seed), on_frame=frames.append)
            assert episode is not None and len(episode) == row.length
            stored = truth[truth["episode_index"] == row.episode_index]
            np.testing.assert_allclose(episode.progress, stored["progress"], rtol=0, atol=1e-12)
            np.testing.assert_array_equal(episode.score, stored["score"])
            stored_actions = np.stack(actions[actions["episode_index"] == row.episode_index]["action"])
            np.testing.assert_array_equal(np.stack([frame.action for frame in frames]), stored_actions)
    finally:
        for sim in sims.values():
            sim.close()


def _small(out, **overrides):
    return GenerateConfig(
        out=out, tasks=("reach-v3",), successes=1, failures_per_kind=1, failure_kinds=("near_miss",),
        rollout=RolloutConfig(cameras=("topview",), image_size=32), **overrides,
    )


def test_generation_is_deterministic_for_a_seed(tmp_path):
    first = generate(_small(tmp_path / "a"), progress=False)
    second = generate(_small(tmp_path / "b"), progress=False)
    other = generate(_small(tmp_path / "c", seed=1), progress=False)
    truth_a, truth_b, truth_c = (read_ground_truth(p)[0] for p in (first, second, other))
    pd.testing.assert_frame_equal(truth_a, truth_b)
    assert not truth_a["progress"].equals(truth_c["progress"])
    data_a = pd.read_parquet(first / "data")
    data_b = pd.read_parquet(second / "data")
    assert np.array_equal(np.stack(data_a["action"]), np.stack(data_b["action"]))


def test_frames_stream_to_disk_and_rejected_rollouts_leave_nothing(tmp_path, monkeypatch):
    """No rendered frame outlives its write, so memory does not grow with the episode; a rollout
    the simulator rejects for its kind is discarded from the dataset's episode buffer."""
    import weakref

    rendered, alive_at_render = [], []
    real_render = MetaWorldSim.render

    def render(sim):
        alive_at_render.append(sum(ref() is not None for ref in rendered))
        images = real_render(sim)
        rendered.extend(weakref.ref(image) for image in images.values())
        return images

    rejected = set()
    real_rollout = MetaWorldSim.rollout

    def reject_first_recording(sim, kind, seed, on_frame=None):  # as if the simulator disagreed once
        episode = real_rollout(sim, kind, seed, on_frame)
        if on_frame is not None and kind not in rejected:
            rejected.add(kind)
            return None
        return episode

    monkeypatch.setattr(MetaWorldSim, "render", render)
    monkeypatch.setattr(MetaWorldSim, "rollout", reject_first_recording)
    root = generate(_small(tmp_path / "a"), progress=False)
    monkeypatch.undo()
    assert rejected == {"success", "near_miss"}
    assert max(alive_at_render) == 0 and len(alive_at_render) > 60
    _, episodes = read_ground_truth(root)
    data = pd.read_parquet(root / "data")
    assert data.groupby("episode_index").size().tolist() == episodes["length"].tolist()
    sim = MetaWorldSim("reach-v3", RolloutConfig(cameras=()))
    try:
        for row in episodes.itertuples():  # the kept rollout's frames, not the rejected one's
            kept = []
            sim.rollout(row.kind, int(row.seed), on_frame=kept.append)
            np.testing.assert_array_equal(np.stack(data[data["episode_index"] == row.episode_index]["action"]),
                                          np.stack([frame.action for frame in kept]))
    finally:
        sim.close()


def test_a_recording_does_not_depend_on_the_rollout_before_it():
    """Seeds are judged by a rollout before the same seed is recorded, so the recording, frame 0's
    view included, must be the one a fresh simulator makes."""
    config = RolloutConfig(cameras=("corner2", "topview"), image_size=64)
    used, fresh = MetaWorldSim("push-v3", config), MetaWorldSim("push-v3", config)
    try:
        used.rollout("success", 123)
        after, alone = [], []
        used.rollout("success", 7, on_frame=after.append)
        fresh.rollout("success", 7, on_frame=alone.append)
    finally:
        used.close()
        fresh.close()
    assert len(after) == len(alone)
    for a, b in zip(after, alone):
        for camera in config.cameras:
            np.testing.assert_array_equal(a.images[camera], b.images[camera])
        np.testing.assert_array_equal(a.action, b.action)


def test_existing_output_is_never_overwritten_silently(tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_cli(main, ["--out", str(out), "--tasks", "reach-v3", "--successes", "1", "--failures-per-kind", "0"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "ds.partial").exists()


def test_unknown_task_is_a_clear_error(tmp_path, capsys):
    assert run_cli(main, ["--out", str(tmp_path / "x"), "--tasks", "fly-v3"]) == 2
    assert "unsupported task 'fly-v3'" in capsys.readouterr().err


def test_failures_per_task_deal_every_kind_round_robin_over_tasks(tmp_path):
    config = GenerateConfig(out=tmp_path, tasks=("a", "b", "c"), successes=2, failures_per_task=2)
    plan = config.episode_plan()
    failures = [(task, kind) for task, kind, _ in plan if kind != "success"]
    assert failures == [("a", "stall"), ("a", "near_miss"), ("b", "drop"), ("b", "reached_then_reset"),
                        ("c", "stall"), ("c", "near_miss")]
    assert sum(kind == "success" for _, kind, _ in plan) == 6
    assert len(set(plan)) == len(plan)  # (task, kind, index) names one episode and its seed


def _falls_then_succeeds(episode) -> None:
    """True progress has a local maximum, then a minimum at least one score level lower, then success."""
    dip = episode.dip
    assert dip is not None and dip.depth >= 1
    assert dip.peak_frame < dip.min_frame < episode.first_success_frame and episode.success[-1]
    progress = np.asarray(episode.progress)
    assert progress[dip.peak_frame] == progress[:dip.min_frame + 1].max()
    assert progress[dip.min_frame] == progress[dip.peak_frame:episode.first_success_frame].min()
    assert episode.score[dip.peak_frame] - episode.score[dip.min_frame] == dip.depth


def test_recovered_drop_falls_is_regrasped_and_succeeds():
    sim = MetaWorldSim("pick-place-v3", RolloutConfig(cameras=("topview",), image_size=16))
    try:
        episode = _first_kept(sim, "recovered_drop")
    finally:
        sim.close()
    _falls_then_succeeds(episode)
    dip = episode.dip
    assert episode.grasped[dip.peak_frame] and not episode.grasped[dip.min_frame]  # it was held, then let go
    assert episode.tcp_to_obj[dip.min_frame] > 0.05  # out of the hand
    assert episode.tcp_to_obj[episode.first_success_frame] < 0.03  # in it again at the goal


@pytest.mark.parametrize("task", ["push-v3", "pick-place-v3"])
def test_corrected_misplacement_goes_away_from_the_goal_then_to_it(task):
    sim = MetaWorldSim(task, RolloutConfig(cameras=("topview",), image_size=16))
    try:
        episode = _first_kept(sim, "corrected_misplacement")
    finally:
        sim.close()
    _falls_then_succeeds(episode)
    dip = episode.dip
    assert episode.obj_to_target[dip.min_frame] > episode.obj_to_target[dip.peak_frame] + 0.05


def test_hesitation_holds_still_for_seconds_then_succeeds():
    config = RolloutConfig(cameras=("topview",), image_size=16)
    sim = MetaWorldSim("reach-v3", config)
    try:
        frames = []
        episode = _first_kept(sim, "hesitation", on_frame=frames.append)
    finally:
        sim.close()
    kept = frames[-len(episode):]
    still = np.array([not frame.action[:3].any() for frame in kept] + [False])
    starts, = np.nonzero(still[1:] & ~still[:-1])
    ends, = np.nonzero(~still[1:] & still[:-1])
    pauses = [(start + 1, end + 1) for start, end in zip(starts, ends)]
    if still[0]:
        pauses.insert(0, (0, ends[0] + 1))
    assert 1 <= len(pauses) <= 2
    assert all(config.seconds(1.0) <= end - start <= config.seconds(3.0) + 1 for start, end in pauses)
    assert pauses[-1][1] <= episode.first_success_frame and episode.success[-1]
    for start, end in pauses:  # once the arm has caught up with its last command, nothing moves
        assert np.ptp(episode.progress[(start + end) // 2:end]) < 0.01


def test_kinds_a_task_cannot_show_are_refused(tmp_path, capsys):
    out = tmp_path / "x"
    assert run_cli(main, ["--out", str(out), "--tasks", "push-v3", "--success-kinds", "recovered_drop"]) == 2
    assert "'recovered_drop' needs a task whose expert grasps its object" in capsys.readouterr().err
    assert run_cli(main, ["--out", str(out), "--tasks", "reach-v3", "--success-kinds", "corrected_misplacement"]) == 2
    assert "needs a task with an object to move" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "x.partial").exists()


def test_each_task_gets_the_detours_it_can_show():
    config = GenerateConfig(out=Path("unused"), tasks=("reach-v3", "push-v3", "pick-place-v3"), successes=1,
                            failures_per_kind=0, success_kinds=DETOUR_KINDS, successes_per_kind=2)
    detours = [(task, kind) for task, kind, _ in config.episode_plan() if kind in DETOUR_KINDS]
    assert dict.fromkeys(detours) == dict.fromkeys([
        ("reach-v3", "hesitation"), ("push-v3", "hesitation"), ("push-v3", "corrected_misplacement"),
        ("pick-place-v3", "hesitation"), ("pick-place-v3", "recovered_drop"),
        ("pick-place-v3", "corrected_misplacement")])
    assert len(detours) == 2 * 6


def test_slow_operator_at_20_fps_with_three_non_square_views(tmp_path):
    """An operator at half speed recorded at 20 fps: the same reach takes as many frames as at full
    speed and 40 fps, and every view, the wrist's included, is recorded at height x width."""
    out = tmp_path / "ds"
    args = ["--out", str(out), "--tasks", "reach-v3", "--successes", "1", "--failures-per-kind", "0",
            "--resolution", "24x32", "--cameras", "corner2,topview,gripperPOV", "--fps", "20",
            "--operator-speed", "0.5", "--images"]
    assert run_cli(main, args) == 0
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["fps"] == 20
    views = {key: feature["shape"] for key, feature in info["features"].items() if "images" in key}
    assert views == {f"observation.images.{camera}": [24, 32, 3] for camera in ("corner2", "topview", "gripperPOV")}
    _, episodes = read_ground_truth(out)
    data = pd.read_parquet(out / "data")
    assert len(data) == episodes["length"].item() and np.allclose(np.diff(data["timestamp"]), 1 / 20)
    full_speed = MetaWorldSim("reach-v3", RolloutConfig(cameras=("topview",), image_size=16))
    try:
        reference = full_speed.rollout("success", int(episodes["seed"].item()))
    finally:
        full_speed.close()
    assert abs(len(reference) - episodes["length"].item()) <= 0.2 * len(reference)
    assert np.abs(np.stack(data["action"])[:, :3]).max() <= 0.5


def test_a_slow_operator_grasps_with_the_hand_down_at_the_object():
    """MetaWorld's pick-place expert starts closing 5 cm above the puck, timed for its full speed;
    slowed down it would close on air. The slow operator closes once the hand is down."""
    sim = MetaWorldSim("pick-place-v3", RolloutConfig(cameras=(), operator_speed=0.25))
    try:
        frames = []
        episode = sim.rollout("success", 0, on_frame=frames.append)
    finally:
        sim.close()
    assert episode is not None and episode.success[-1]
    assert all(frame.action.dtype == np.float32 and np.abs(frame.action[:3]).max() <= 0.25 for frame in frames)
    closing = next(frame for frame in frames if frame.action[3] > 0)
    hand_z, object_z = closing.state[2], closing.environment_state[2]
    assert hand_z - object_z < 0.04


def test_views_beyond_the_default_offscreen_buffer_render(tmp_path):
    sim = MetaWorldSim("reach-v3", RolloutConfig(cameras=("corner2", "gripperPOV"), image_size=(640, 480)))
    try:
        sim.reset(0)
        assert {camera: image.shape for camera, image in sim.render().items()} == {
            "corner2": (640, 480, 3), "gripperPOV": (640, 480, 3)}
    finally:
        sim.close()


def test_a_rate_that_does_not_divide_the_simulator_is_refused(tmp_path, capsys):
    assert run_cli(main, ["--out", str(tmp_path / "x"), "--fps", "30"]) == 2
    assert "--fps 30 does not divide the simulator's 80 Hz" in capsys.readouterr().err


def test_the_sidecar_says_where_each_dip_is(tmp_path):
    config = GenerateConfig(out=tmp_path / "ds", tasks=("pick-place-v3",), successes=1, failures_per_kind=0,
                            success_kinds=("recovered_drop",), use_videos=False,
                            rollout=RolloutConfig(cameras=("topview",), image_size=16))
    frames, episodes = read_ground_truth(generate(config, progress=False))
    plain, dropped = episodes.itertuples()
    assert (plain.kind, plain.dip_min_frame, dropped.kind) == ("success", -1, "recovered_drop")
    scores = frames[frames["episode_index"] == dropped.episode_index]["score"].to_numpy()
    assert dropped.dip_peak_frame < dropped.dip_min_frame < dropped.first_success_frame
    assert scores[dropped.dip_peak_frame] - scores[dropped.dip_min_frame] == dropped.dip_depth >= 1


@pytest.mark.parametrize("offset", [(0.05, 0.08), (0.08, 0.12)])
def test_a_near_miss_stops_as_far_from_the_goal_as_its_offset_says(offset):
    """Closer near-misses (`--near-miss-cm 5,8`) hover just outside reach's 5 cm success radius,
    as learned policies' failures do; the default misses by 8-12 cm."""
    sim = MetaWorldSim("reach-v3", RolloutConfig(cameras=(), near_miss_offset=offset))
    try:
        closest = [min(_first_kept(sim, "near_miss", seeds=range(seed, seed + 20)).obj_to_target)
                   for seed in (0, 100, 200)]
    finally:
        sim.close()
    assert all(offset[0] - 0.01 <= distance <= offset[1] + 0.01 for distance in closest), closest


def test_a_near_miss_offset_must_be_an_increasing_positive_range(tmp_path, capsys):
    assert run_cli(main, ["--out", str(tmp_path / "x"), "--near-miss-cm", "8,5"]) == 2
    assert "near-miss offset must be 0 < low <= high" in capsys.readouterr().err
    assert run_cli(main, ["--out", str(tmp_path / "x"), "--near-miss-cm", "5"]) == 2
    assert "bad range '5'" in capsys.readouterr().err

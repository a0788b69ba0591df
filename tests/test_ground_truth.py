"""The simulator yardstick: formula, rubric mapping, and the invariants of the bundled demo."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from common.ground_truth import read_ground_truth, read_ground_truth_by_episode, sidecar_dir
from data.ground_truth import TASK_SPECS, fractional_score, frame_progress, progress_to_score
from data.rollout import FAILURE_KINDS

PICK = TASK_SPECS["pick-place-v3"]


def test_progress_formula_endpoints():
    start = dict(tcp_to_obj=0.2, tcp_to_obj_0=0.2, grasped=False, obj_to_target=0.3, obj_to_target_0=0.3)
    assert frame_progress(PICK, **start, success=False) == 0.0
    done = dict(tcp_to_obj=0.0, tcp_to_obj_0=0.2, grasped=True, obj_to_target=0.0, obj_to_target_0=0.3)
    assert frame_progress(PICK, **done, success=False) == 0.95  # capped: only success is 1
    assert frame_progress(PICK, **done, success=True) == 1.0
    half = dict(tcp_to_obj=0.0, tcp_to_obj_0=0.2, grasped=True, obj_to_target=0.15, obj_to_target_0=0.3)
    assert frame_progress(PICK, **half, success=False) == pytest.approx(0.2 + 0.2 + 0.3)


@pytest.mark.parametrize(
    "progress, success, score",
    [(0.0, False, 1), (0.19, False, 1), (0.2, False, 2), (0.49, False, 2), (0.5, False, 3),
     (0.79, False, 3), (0.8, False, 4), (0.95, False, 4), (1.0, True, 5), (0.3, True, 5)],
)
def test_score_mapping(progress, success, score):
    assert progress_to_score(progress, success) == score
    assert round(float(fractional_score(np.array([progress]), np.array([success]))[0])) == score


def test_fractional_score_is_monotone_inside_the_bands():
    progress = np.linspace(0, 0.95, 200)
    fractional = fractional_score(progress, np.zeros(200, dtype=bool))
    assert np.all(np.diff(fractional) > 0) and fractional[0] == 1.0 and fractional[-1] < 4.5


@pytest.fixture(scope="module")
def demo_truth(demo_root):
    return read_ground_truth(demo_root)


def test_demo_covers_tasks_and_failure_kinds(demo_truth):
    frames, episodes = demo_truth
    assert episodes["env_name"].nunique() >= 2
    assert len(episodes) >= 10
    assert set(FAILURE_KINDS) <= set(episodes["kind"])
    assert (episodes.groupby("episode_index").size() == 1).all()
    assert frames.groupby("episode_index").size().tolist() == episodes["length"].tolist()


def test_demo_outcomes_match_final_scores(demo_truth):
    frames, episodes = demo_truth
    last = frames.groupby("episode_index").tail(1).set_index("episode_index")
    for row in episodes.itertuples():
        final = last.loc[row.episode_index, "score"]
        peak = frames.loc[frames.episode_index == row.episode_index, "score"].max()
        if row.outcome == "success":
            assert final == 5, row
        else:
            assert final < 5, row
        if row.kind == "reached_then_reset":
            assert peak == 5 and final < 5 and row.outcome == "failure"
        elif row.kind != "success":
            assert peak < 5, row  # failures other than reached-then-reset never touch 5
    assert (frames["score"] == 5).eq(frames["success"]).all()


def test_demo_expert_progress_rises(demo_truth):
    frames, episodes = demo_truth
    for index in episodes.loc[episodes.kind == "success", "episode_index"]:
        progress = frames.loc[frames.episode_index == index, "progress"].to_numpy()
        assert spearmanr(np.arange(len(progress)), progress).statistic > 0.8
        assert progress[-1] == 1.0 and progress[0] < 0.3


def test_demo_loads_offline_as_lerobot_dataset(demo_root, demo_truth):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/demo_metaworld", root=demo_root)
    _, episodes = demo_truth
    assert dataset.num_episodes == len(episodes)
    assert dataset.num_frames == episodes["length"].sum()
    item = dataset[0]
    assert item["observation.images.corner2"].shape[-2:] == (96, 96)
    assert not any(key.startswith(("gt", "ground_truth", "progress")) for key in dataset.features)


def test_ground_truth_by_episode_is_each_episodes_frames_in_order(tmp_path):
    directory = sidecar_dir(tmp_path)
    directory.mkdir()
    pd.DataFrame({"episode_index": [1, 0, 1, 0], "frame_index": [1, 1, 0, 0], "progress": [0.9, 0.4, 0.2, 0.1]}
                 ).to_parquet(directory / "frames.parquet")
    pd.DataFrame({"episode_index": [0, 1], "kind": ["success", "stall"]}).to_parquet(directory / "episodes.parquet")
    by_episode, episodes = read_ground_truth_by_episode(tmp_path)
    assert {e: rows.progress.tolist() for e, rows in by_episode.items()} == {0: [0.1, 0.4], 1: [0.2, 0.9]}
    assert episodes.kind.tolist() == ["success", "stall"]

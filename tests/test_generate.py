"""The benchmark generator: deterministic, atomic, and honest about every failure kind."""

import numpy as np
import pandas as pd
import pytest

from common.cli import run_cli
from common.ground_truth import read_ground_truth
from data.benchmark import GenerateConfig, generate
from data.generate import main
from data.rollout import EPISODE_KINDS, MetaWorldSim, RolloutConfig


@pytest.mark.slow
@pytest.mark.parametrize("task", ["push-v3"])
def test_every_kind_is_produced_and_validated_by_the_simulator(task):
    sim = MetaWorldSim(task, RolloutConfig(cameras=("topview",), image_size=32))
    try:
        for kind in EPISODE_KINDS:
            episode = next(e for e in (sim.rollout(kind, seed) for seed in range(20)) if e is not None)
            assert (episode.outcome == "success") == (kind == "success")
            assert len(episode.images["topview"]) == len(episode.state) == len(episode.action)
    finally:
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


def test_no_earlier_episode_frames_are_held_while_generating(tmp_path, monkeypatch):
    import gc
    import weakref

    import data.benchmark as generate_module

    alive, held = [], []
    real_rollout = generate_module._rollout_with_retries

    def rollout(*args):
        gc.collect()
        held.append(sum(ref() is not None for ref in alive))
        episode = real_rollout(*args)
        alive.extend(weakref.ref(frames[0]) for frames in episode.images.values())
        return episode

    monkeypatch.setattr(generate_module, "_rollout_with_retries", rollout)
    generate(_small(tmp_path / "a"), progress=False)
    assert held == [0, 0]  # each rollout's frames are let go once it is written
    assert len(read_ground_truth(tmp_path / "a")[1]) == 2


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

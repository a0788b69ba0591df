"""The experiment's pieces: negatives become real-frame failure episodes; the whole run, small."""

import json

import numpy as np
import pandas as pd
import pytest

from rewact.ground_truth import read_ground_truth
from labeling.dataset import EpisodeSource
from training.augment import augmented_dataset, clip_episodes


def test_temporal_clips_become_non_imitated_episodes_of_real_frames(demo_root, tmp_path, monkeypatch):
    labeled = tmp_path / "labeled"
    (labeled / "labels").mkdir(parents=True)
    pd.DataFrame([
        {"episode": 0, "end": 9, "origin": "temporal_clip", "status": "kept"},
        {"episode": 0, "end": 3, "origin": "temporal_clip", "status": "relabelled"},
        {"episode": 7, "end": 4, "origin": "temporal_clip", "status": "dropped"},
        {"episode": 7, "end": 30, "origin": "counterfactual", "status": "kept"},
    ]).to_parquet(labeled / "labels" / "negatives.parquet")
    clips = clip_episodes(labeled)
    assert clips.to_dict("records") == [{"episode": 0, "end": 9}, {"episode": 0, "end": 3}]

    truth = read_ground_truth(demo_root)[0].rename(columns={"progress": "reward"})
    decodes = []
    real_frames = EpisodeSource.frames
    monkeypatch.setattr(EpisodeSource, "frames", lambda self, e, *a, **k: decodes.append(e) or real_frames(self, e, *a, **k))
    out = augmented_dataset(demo_root, clips, tmp_path / "augmented", truth)
    monkeypatch.undo()
    assert sorted(decodes) == list(range(14))  # each source episode decoded once, clips included
    source, augmented = EpisodeSource.open(demo_root), EpisodeSource.open(out)
    assert augmented.episode_indices == list(range(16))
    assert augmented.episode(14).length == 10 and augmented.episode(15).length == 4
    labels = pd.read_parquet(out / "labels.parquet")
    clip = labels[labels.episode_index == 14]
    np.testing.assert_allclose(clip.reward, truth[truth.episode_index == 0].reward[:10])
    assert not labels[labels.episode_index >= 14].imitate.any() and labels[labels.episode_index < 14].imitate.all()
    original = source.frames(0, list(range(10)), cameras=["topview"])["observation.images.topview"]
    copied = augmented.frames(14, list(range(10)), cameras=["topview"])["observation.images.topview"]
    assert np.abs(original.astype(int) - copied.astype(int)).mean() < 6  # same frames, re-encoded


@pytest.mark.slow
def test_experiment_runs_end_to_end_small(tmp_path):
    from training.experiment import main

    results = tmp_path / "results"
    assert main(["--work", str(tmp_path / "work"), "--results", str(results), "--tasks", "reach-v3",
                 "--train-successes", "2", "--heldout-successes", "1", "--heldout-failures-per-kind", "1",
                 "--steps", "2", "--batch-size", "2"]) == 0
    report = json.loads((results / "results.json").read_text())
    assert set(report["metrics"]) == {
        "interpolation (raw)", "VLM labels (raw)", "(a) RewACT on interpolation", "(b) RewACT on VLM labels",
        "(c) RewACT on ground truth", "(d) RewACT on ground truth + negatives",
    }
    assert all(len(v) == 3 for metrics in report["metrics"].values() for v in metrics.values())
    record = json.loads((results / "experiment.json").read_text())
    assert record["command"].startswith("python -m training.experiment") and record["seed"] == 0
    assert set(record["heldout_kinds"]) == {"success", "stall", "near_miss", "drop", "reached_then_reset"}
    for name in ("results.md", "curves.png", "metrics.png"):
        assert (results / name).is_file()

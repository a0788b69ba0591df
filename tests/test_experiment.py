"""The experiment's pieces: negatives become real-frame failure episodes; the whole run, small."""

import gc
import json
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.cli import ConfigError, run_cli
from common.dataset import EpisodeSource
from common.ground_truth import read_ground_truth
from common.options import parse_options
from training.experiments.augment import augmented_dataset, clip_episodes


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
    decodes, alive, held = [], [], []
    real_frames = EpisodeSource.frames

    def frames(self, episode, *args, **kwargs):
        gc.collect()
        held.append(sum(ref() is not None for ref in alive))  # earlier episodes' frames still in memory
        decodes.append(episode)
        decoded = real_frames(self, episode, *args, **kwargs)
        alive.extend(weakref.ref(images) for images in decoded.values())
        return decoded

    monkeypatch.setattr(EpisodeSource, "frames", frames)
    out = augmented_dataset(demo_root, clips, tmp_path / "augmented", truth)
    monkeypatch.undo()
    assert sorted(decodes) == list(range(14))  # each source episode decoded once, clips included
    assert max(held) == 0  # one episode at a time: the next is decoded once the last is written and let go
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


def test_seed_spread_is_the_mean_min_and_max_of_the_seeds_point_estimates():
    from training.experiments.unflagged_failures import headline_spread

    metrics = {"(a) [seed 0]": {"mae": [1.0, 0.8, 1.2]}, "(a) [seed 1]": {"mae": [0.6, 0.5, 0.7]},
               "(b)": {"mae": [0.4, 0.3, 0.5]}}
    spread = headline_spread(metrics, {"(a)": ["(a) [seed 0]", "(a) [seed 1]"], "(b)": ["(b)"]})
    assert spread == {"(a)": {"mae": [0.8, 0.6, 1.0]}, "(b)": {"mae": [0.4, 0.4, 0.4]}}


def test_only_successful_episodes_are_imitated():
    from training.experiments.unflagged_failures import rewards_with_imitation

    table = rewards_with_imitation({3: np.array([0.0, 0.5, 0.75]), 4: np.array([0.0, 0.75, 0.5])}, {3: True, 4: False})
    assert table.groupby("episode_index").imitate.agg(["all", "any"]).to_dict("index") == {
        3: {"all": True, "any": True}, 4: {"all": False, "any": False}}
    assert list(table.frame_index) == [0, 1, 2, 0, 1, 2]


def test_each_row_trains_on_its_own_dataset_and_labels():
    from training.experiments.unflagged_failures import ROWS, row_of, row_variants
    from training.train import TrainOptions

    train, work = Path("w/train"), Path("w")
    variants = row_variants(train, work, successes="0,2,5")
    assert [row_of(variant) for variant in variants] == list(ROWS)
    parsed = {row_of(variant): parse_options(TrainOptions, ["--dataset", str(dataset), *args, "--out", "x"])
              for variant, (dataset, args) in variants.items()}
    read = {row: (options.dataset, options.label_source, options.labels_path, options.episodes)
            for row, options in parsed.items()}
    assert read == {
        "a": ("w/train", "interpolation", None, None),
        "a'": ("w/train", "interpolation", None, [0, 2, 5]),
        "b": ("w/train_labeled", "dataset", None, None),
        "b'": ("w/train_labels_with_negatives", "labels", "w/train_labels_with_negatives/labels.parquet", None),
        "c": ("w/train", "ground_truth", None, None),
        "d": ("w/train_truth_with_negatives", "labels", "w/train_truth_with_negatives/labels.parquet", None),
    }


def test_checkpoint_tags_name_every_setting_that_differs_from_the_preset():
    from training.experiments.unflagged_failures import PRESETS, settings_tag

    full = PRESETS["full"]
    assert settings_tag(full, full.steps, full.batch_size, []) == ""
    assert settings_tag(full, 1000, full.batch_size, []) == "_1000steps"
    assert settings_tag(full, full.steps, 8, []) == "_batch8"
    balanced = settings_tag(full, full.steps, full.batch_size, ["--policy.reward_balance=label_frequency"])
    assert balanced.startswith("_") and balanced != settings_tag(full, full.steps, full.batch_size,
                                                                 ["--policy.reward_loss_weight=10"])


def test_a_checkpoint_trained_otherwise_is_refused_not_scored(tmp_path, monkeypatch):
    import training.experiments.workbench as experiment

    out = tmp_path / "rewact_c_seed0"
    (out / "checkpoints" / "last").mkdir(parents=True)
    trained = ["--dataset", "train", "--steps", "400", "--batch-size", "16", "--seed", "0", "--",
               *experiment.SMALL_REWACT]
    (out / experiment.TRAINED_WITH).write_text(json.dumps(trained))
    monkeypatch.setattr(experiment, "run", lambda *args: pytest.fail("nothing should be trained"))
    assert experiment.train_rewact("c", Path("train"), [], out, 400, 16, "cpu", 0, [], []) == \
        f"rewact:{out / 'checkpoints' / 'last'}"
    with pytest.raises(ConfigError, match="was trained with"):
        experiment.train_rewact("c", Path("train"), [], out, 1000, 16, "cpu", 0, [], [])


@pytest.mark.parametrize("argument", [["--rows", "a,e"], ["--cameras", "corner2,wrist"]])
def test_experiment_rejects_unknown_rows_and_cameras_before_any_work(tmp_path, argument, capsys):
    from training.experiments.unflagged_failures import main

    assert run_cli(main, ["--preset", "smoke", "--work", str(tmp_path / "work"), *argument]) == 2
    assert "unknown" in capsys.readouterr().err
    assert not (tmp_path / "work" / "train").exists()


def test_experiment_flags_users_know_parse_into_one_recordable_configuration():
    from common.options import as_record, parse_options
    from training.experiments.unflagged_failures import ExperimentOptions

    options = parse_options(ExperimentOptions, [
        "--preset", "quick", "--work", "w", "--cameras", "corner2,topview", "--train-successes", "3", "--rows", "a,b",
        "--seeds", "0,1", "--rewact-option=--policy.reward_loss_weight=10", "--rewact-option=--policy.latent_dim=8",
        "--batch-size", "4", "--device", "cuda", "--label-cameras", "topview", "--data-seed", "500"])
    assert options.data.cameras == ("corner2", "topview") and options.rows == ("a", "b")
    assert options.rewact_option == ("--policy.reward_loss_weight=10", "--policy.latent_dim=8")
    assert options.rewact.batch_size == 4 and options.rewact.device == "cuda" and options.label_cameras == ("topview",)
    assert options.preset.seeds == (0, 1) and options.preset.train_successes == 3
    assert options.preset.train_failures == options.data.sized_preset.train_failures == 2  # the quick preset's
    record = as_record(options)
    assert json.loads(json.dumps(record)) == record and record["data"]["work"] == "w"
    with pytest.raises(ConfigError, match="also a training task"):
        parse_options(ExperimentOptions, ["--tasks", "reach-v3,push-v3", "--heldout-task", "push-v3"])
    with pytest.raises(ConfigError, match="reward VLM's training split"):
        parse_options(ExperimentOptions, ["--data-seed", "0"])


def test_the_full_presets_frontier_is_keyframe_frontier_against_every_frame(demo_root, tmp_path):
    from common.options import parse_options
    from training.experiments.keyframe_frontier import DENSE, FrontierOptions, scheme_arguments
    from training.experiments.unflagged_failures import FRONTIER_SCHEMES, frontier_command

    command = frontier_command(demo_root, tmp_path / "work", tmp_path / "results", "models/metaworld-reward-vlm",
                               "cpu", 96, ("topview",))
    assert command[1:3] == ["-m", "training.experiments.keyframe_frontier"]
    options = parse_options(FrontierOptions, command[3:])
    assert options.schemes == FRONTIER_SCHEMES and options.label_cameras == ("topview",)
    dense = scheme_arguments(DENSE, 40, options.dense_every)  # the reference: a keyframe on every frame
    assert float(dense["--keyframes-per-second"]) == 40


def test_ceiling_refuses_unknown_variants(capsys):
    from training.experiments.ceiling import main

    assert run_cli(main, ["--variants", "1,9"]) == 2
    assert "unknown variant(s) 9" in capsys.readouterr().err


@pytest.mark.slow
def test_experiment_runs_end_to_end_smoke_preset(tmp_path):
    from training.experiments.unflagged_failures import main, row_variants
    from training.train import TrainOptions, check_labels

    results, work = tmp_path / "results", tmp_path / "work"
    # 32 px views: the plumbing is the same as at 96, RewACT's ResNet and the renderer 9x cheaper.
    # Three rows, one per kind of training data (the split, the labeled copy, a copy with
    # negatives): each lerobot-train costs ~20 s here. The other rows' labels are checked below.
    assert main(["--preset", "smoke", "--work", str(work), "--results", str(results),
                 "--label-cameras", "topview", "--image-size", "32", "--rows", "a,b,b'"]) == 0
    provenance = json.loads((work / "train_labeled" / "labels" / "provenance.json").read_text())
    assert provenance["config"]["views"]["cameras"] == ["observation.images.topview"]  # RewACT still sees both
    record = json.loads((results / "experiment.json").read_text())
    assert record["command"].startswith("python -m training.experiments.unflagged_failures") and record["heldout_task"] == "push-v3"
    assert record["train_kinds"] == {"success": 1, "stall": 1}  # the labeler is never told which is which
    assert set(record["heldout_kinds"]) == {"success", "stall", "near_miss", "drop", "reached_then_reset"}
    for split in ("heldout", "heldout_task"):
        report = json.loads((results / split / "results.json").read_text())
        assert set(report["metrics"]) == {
            "interpolation (raw)", "reward VLM labels (raw)", "(a) RewACT on interpolation", "(b) RewACT on labels",
            "(b') RewACT on labels + negatives",
        }
        assert all(len(v) == 3 for metrics in report["metrics"].values() for v in metrics.values())
        assert set(report["seed_spread"]) == {"(a) RewACT on interpolation", "(b) RewACT on labels"}
        assert set(report["paired"]) == {"(b) RewACT on labels - (a) RewACT on interpolation"}
        for name in ("results.md", "seeds.md", "curves.png", "metrics.png"):
            assert (results / split / name).is_file()
    assert record["frontier"] is None and not (results / "frontier").exists()  # its own smoke test has it
    # Every row, trained or not, finds its dataset and labels in what the run wrote.
    episodes = read_ground_truth(work / "train")[1]
    successes = ",".join(str(e) for e in episodes[episodes.outcome == "success"].episode_index)
    for dataset, args in row_variants(work / "train", work, successes).values():
        options = parse_options(TrainOptions, ["--dataset", str(dataset), *args, "--out", "unused"])
        check_labels(options, EpisodeSource.open(dataset))

    # Run again for one row and seed with a RewACT option and other steps: nothing is generated or
    # labelled again, the plain row's checkpoint is left alone, and the new row is trained beside it.
    checkpoint = work / "rewact_a_seed0" / "checkpoints" / "last"
    trained_at = checkpoint.stat().st_mtime_ns
    assert main(["--preset", "smoke", "--work", str(work), "--results", str(results / "rerun"),
                 "--image-size", "32", "--steps", "3", "--rows", "a", "--seeds", "0",
                 "--rewact-option=--policy.reward_balance=label_frequency"]) == 0
    rerun = json.loads((results / "rerun" / "experiment.json").read_text())
    assert all(t["seconds"] < 5 for t in rerun["timings"] if t["step"].startswith(("generate", "label")))
    assert checkpoint.stat().st_mtime_ns == trained_at
    [balanced] = (work).glob("rewact_a_seed0_3steps_*/checkpoints/last/pretrained_model")
    assert json.loads((balanced / "config.json").read_text())["reward_balance"] == "label_frequency"
    assert json.loads((balanced / "train_config.json").read_text())["steps"] == 3
    report = json.loads((results / "rerun" / "heldout" / "results.json").read_text())
    assert set(report["metrics"]) == {"interpolation (raw)", "reward VLM labels (raw)", "(a) RewACT on interpolation"}
    with pytest.raises(ConfigError, match="recorded with views"):  # other views need another --work
        main(["--preset", "smoke", "--work", str(work), "--image-size", "32",
              "--cameras", "corner2,behindGripper"])

    # The ceiling ablation on the same splits (generated data reused): the head on the encoder's
    # image tokens, trained through stock lerobot-train and scored.
    from training.experiments.ceiling import VARIANTS
    from training.experiments.ceiling import main as ceiling

    assert ceiling(["--preset", "smoke", "--work", str(work), "--results", str(results / "ceiling"),
                    "--image-size", "32", "--variants", "3"]) == 0
    report = json.loads((results / "ceiling" / "results.json").read_text())
    chosen = list(VARIANTS)[3]
    assert list(report["metrics"]) == ["interpolation (raw)", chosen]
    assert report["variants"][chosen]["overrides"] == ["--policy.reward_features=encoder_images"]
    config = json.loads((work / "ceiling_3" / "checkpoints" / "last" / "pretrained_model"
                         / "config.json").read_text())
    assert config["reward_features"] == "encoder_images" and config["label_source"] == "ground_truth"

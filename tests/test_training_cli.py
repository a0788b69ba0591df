"""`python -m training.train` and `python -m training.visualize`, end to end on the demo."""

import subprocess
import sys

import av
import pytest

from common.label_files import write_keypoints

SMALL_MODEL = ["--", "--policy.dim_model=64", "--policy.dim_feedforward=128", "--policy.n_encoder_layers=1"]


def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def keypoint_checkpoint(demo_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    keypoints = tmp / "keypoints.json"
    write_keypoints(keypoints, {e: {10: 0.5, 20: 1.0} for e in range(14)})
    out = tmp / "run"
    result = run("training.train", "--dataset", demo_root, "--label-source", "keypoints", "--labels-path",
                 keypoints, "--out", out, "--steps", 2, "--batch-size", 2, *SMALL_MODEL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--policy.label_source=keypoints" in result.stdout
    return out / "checkpoints" / "last"


@pytest.mark.slow
def test_visualize_writes_video_and_plot_and_never_overwrites(keypoint_checkpoint, demo_root, tmp_path):
    out = tmp_path / "viz" / "ep3"
    result = run("training.visualize", "--checkpoint", keypoint_checkpoint, "--dataset", demo_root,
                 "--episode", 3, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    with av.open(str(out.with_suffix(".mp4"))) as container:
        frames = sum(1 for _ in container.decode(video=0))
    from common.dataset import EpisodeSource

    assert frames == EpisodeSource.open(demo_root).episode(3).length
    assert out.with_suffix(".png").stat().st_size > 10_000
    again = run("training.visualize", "--checkpoint", keypoint_checkpoint, "--dataset", demo_root,
                "--episode", 3, "--out", out)
    assert again.returncode == 2 and "already exist" in again.stderr


def test_train_rejects_bad_labels_in_one_line(demo_root, tmp_path, cli):
    write_keypoints(tmp_path / "k.json", {0: {5: 1.0}})
    result = cli("training.train", "--dataset", demo_root, "--label-source", "keypoints",
                 "--labels-path", tmp_path / "k.json", "--out", tmp_path / "run")
    assert result.returncode == 2
    assert "no labels for 13 episode(s)" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_train_options_map_onto_lerobot_train_and_pass_the_rest_through(demo_root, tmp_path):
    from common.dataset import EpisodeSource
    from common.options import parse_options
    from training.train import TrainOptions, lerobot_train_args

    options = parse_options(TrainOptions, ["--dataset", str(demo_root), "--out", str(tmp_path / "run"),
                                           "--episodes", "0,2-3", "--skip-unlabeled", "--steps", "10"])
    argv = lerobot_train_args(options, EpisodeSource.open(demo_root), SMALL_MODEL[1:])
    assert "--dataset.episodes=[0,2,3]" in argv and "--policy.skip_unlabeled_episodes=true" in argv
    assert "--save_freq=10" in argv and argv[-len(SMALL_MODEL) + 1:] == SMALL_MODEL[1:]

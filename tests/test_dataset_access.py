"""Episode-level access to LeRobot datasets: video and image features, cameras, bad input."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from common.cli import DatasetError, parse_episodes
from common.dataset import EpisodeSource


def test_episode_metadata(demo_root):
    source = EpisodeSource.open(demo_root)
    info = source.episode(0)
    assert info.fps == 40 and info.length > 10
    assert info.task == "Pick and place a puck to a goal"
    assert info.camera_keys == ("observation.images.corner2", "observation.images.topview")
    assert info.state_shape == (4,) and info.action_shape == (4,)
    assert source.episode_indices == list(range(14))


def test_video_frames_at_indices_stride_and_size(demo_root):
    source = EpisodeSource.open(demo_root)
    length = source.episode(3).length
    picked = source.frame_indices(3, stride=10)
    assert picked[0] == 0 and picked[-1] == length - 1 and picked[1] == 10
    frames = source.frames(3, picked, size=48)
    assert set(frames) == set(source.camera_keys)
    for array in frames.values():
        assert array.shape == (len(picked), 48, 48, 3) and array.dtype == np.uint8
    full = source.frames(3, cameras=["topview"])["observation.images.topview"]
    assert full.shape == (length, 96, 96, 3)
    # frames differ over time (the arm moves), and picking matches decoding all
    assert not np.array_equal(full[0], full[-1])
    assert np.array_equal(source.frames(3, [5], cameras=["topview"])["observation.images.topview"][0], full[5])


def test_each_episode_video_is_decoded_once(demo_root, monkeypatch):
    import lerobot.datasets.video_utils as video_utils

    calls = []
    real = video_utils.decode_video_frames_torchcodec
    monkeypatch.setattr(
        video_utils, "decode_video_frames_torchcodec", lambda *a, **k: calls.append(a[1]) or real(*a, **k)
    )
    source = EpisodeSource.open(demo_root)
    source.frames(2)
    assert len(calls) == len(source.camera_keys)
    assert len(calls[0]) == source.episode(2).length


def test_resized_frames_are_decoded_a_chunk_at_a_time(demo_root, monkeypatch):
    """Full-resolution frames are held a chunk at a time, whatever the number of frames asked."""
    import common.dataset as dataset

    source = EpisodeSource.open(demo_root)
    picked = list(range(source.episode(2).length))
    whole = source.frames(2, picked, cameras=["topview"])["observation.images.topview"]
    batches = []
    real = EpisodeSource._decode
    monkeypatch.setattr(EpisodeSource, "_decode", lambda self, *a: batches.append(len(a[2])) or real(self, *a))
    resized = source.frames(2, picked, cameras=["topview"], size=48)["observation.images.topview"]
    assert len(picked) > dataset.DECODE_CHUNK and max(batches) == dataset.DECODE_CHUNK and sum(batches) == len(picked)
    assert np.array_equal(resized, dataset._resize(whole, 48))  # the same pixels as resizing all at once


def test_resizing_filters_like_pil_bilinear(demo_root):
    """Frames are shrunk with an antialiasing filter (PIL's reference bilinear, within a level), never
    by picking pixels, and stay uint8."""
    from PIL import Image

    import common.dataset as dataset

    frames = EpisodeSource.open(demo_root).frames(2, [0, 20], cameras=["corner2"])["observation.images.corner2"]
    resized = dataset._resize(frames, (40, 30))
    assert resized.dtype == np.uint8 and resized.shape == (2, 40, 30, 3)
    for frame, small in zip(frames, resized, strict=True):
        reference = np.asarray(Image.fromarray(frame).resize((30, 40), Image.BILINEAR), dtype=int)
        assert np.abs(small.astype(int) - reference).max() <= 1


def test_image_feature_dataset_with_three_cameras(image_dataset):
    source = EpisodeSource.open(image_dataset)
    assert len(source.camera_keys) == 3
    assert not source.meta.video_keys
    frames = source.frames(1, [0, 4], cameras=["gripperPOV", "observation.images.corner2"])
    assert list(frames) == ["observation.images.gripperPOV", "observation.images.corner2"]
    assert frames["observation.images.corner2"].shape == (2, 64, 64, 3)
    wide = source.frames(0, [0], size=(32, 48))["observation.images.topview"]
    assert wide.shape == (1, 32, 48, 3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.episode(99), "episode 99 out of range"),
        (lambda s: s.frames(0, [0], cameras=["wrist"]), "unknown camera 'wrist'"),
        (lambda s: s.frames(0, [10_000]), "frame index 10000 out of range"),
        (lambda s: s.frame_indices(0, 0), "stride must be >= 1"),
    ],
)
def test_bad_requests(demo_root, call, message):
    with pytest.raises(DatasetError, match=message):
        call(EpisodeSource.open(demo_root))


def test_bad_sources(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        EpisodeSource.open(tmp_path / "missing")
    with pytest.raises(DatasetError, match="is not a LeRobot dataset"):
        EpisodeSource.open(tmp_path)
    with pytest.raises(DatasetError, match="not in the local cache.*pass a local directory"):
        EpisodeSource.open("nobody/not-a-cached-dataset")


def test_corrupt_video_is_one_clear_error(demo_root, tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(demo_root, copy)
    video = next((copy / "videos").rglob("*.mp4"))
    video.write_bytes(video.read_bytes()[:2000])
    with pytest.raises(DatasetError, match="cannot decode video"):
        EpisodeSource.open(copy).frames(0, [0])


def test_episode_spec_parsing():
    assert parse_episodes("0,3,5-7") == [0, 3, 5, 6, 7]
    assert parse_episodes(None) is None
    with pytest.raises(DatasetError):
        parse_episodes("2-x")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--dataset", "/no/such/dir"], "dataset directory not found"),
        (["--episodes", "99"], "episode 99 out of range"),
        (["--cameras", "wrist"], "unknown camera 'wrist'"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(demo_root, args, expected, cli):
    argv = ["--dataset", str(demo_root), *args] if args[0] != "--dataset" else args
    result = cli("labeling.inspect", *argv)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_summary(demo_root):
    result = subprocess.run(
        [sys.executable, "-m", "labeling.inspect", "--dataset", str(demo_root), "--episodes", "0-1"],
        capture_output=True, text=True, check=True,
    )
    assert "14 total" in result.stdout and "Pick and place a puck to a goal" in result.stdout


def test_reading_a_few_frames_of_an_image_feature_episode_holds_only_those(tmp_path):
    import tracemalloc

    import pyarrow.parquet as pq

    from common.dataset_writer import create_dataset

    camera = "observation.images.front"
    dataset = create_dataset(repo_id="local/noise", fps=10, root=tmp_path / "noise", use_videos=False,
                             features={camera: {"dtype": "image", "shape": (240, 320, 3), "names": None}})
    rng = np.random.default_rng(0)
    for _ in range(24):  # noise: each PNG is about as large as its pixels
        dataset.add_frame({camera: rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), "task": "noise"})
    dataset.save_episode()
    dataset.finalize()
    source = EpisodeSource.open(dataset.root)
    column = pq.read_table(source.root / source.meta.get_data_file_path(0), columns=[camera])[camera]
    encoded = sum(len(image["bytes"].as_py()) for image in column)
    tracemalloc.start()
    frames = source.frames(0, [5], cameras=[camera])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert frames[camera].shape == (1, 240, 320, 3)
    assert peak < encoded / 3  # one frame's bytes and pixels, not the episode's whole column

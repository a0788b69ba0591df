"""Recording datasets does not bury the terminal in the video encoder's banner."""

import os

import numpy as np

from common.dataset_writer import create_dataset


def record_one_video_episode(root):
    dataset = create_dataset(repo_id="local/quiet", fps=10, root=root, use_videos=True, features={
        "observation.images.cam": {"dtype": "video", "shape": (32, 32, 3), "names": ["height", "width", "channels"]},
        "action": {"dtype": "float32", "shape": (1,), "names": ["a"]}})
    for _ in range(3):
        dataset.add_frame({"observation.images.cam": np.zeros((32, 32, 3), np.uint8),
                           "action": np.zeros(1, np.float32), "task": "stay"})
    dataset.save_episode()
    dataset.finalize()


def test_encoding_an_episode_prints_no_encoder_banner(tmp_path, monkeypatch, capfd):
    monkeypatch.delenv("SVT_LOG", raising=False)
    record_one_video_episode(tmp_path / "quiet")
    printed = capfd.readouterr()
    assert os.environ["SVT_LOG"] == "1"
    assert list((tmp_path / "quiet" / "videos").rglob("*.mp4"))  # a video was encoded
    assert "SVT [version]" not in printed.out + printed.err


def test_a_log_level_the_user_set_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("SVT_LOG", "3")
    create_dataset(repo_id="local/loud", fps=10, root=tmp_path / "loud", use_videos=False,
                   features={"action": {"dtype": "float32", "shape": (1,), "names": ["a"]}})
    assert os.environ["SVT_LOG"] == "3"

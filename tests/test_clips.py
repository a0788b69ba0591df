"""What a prompt shows: camera selection and layout, frame counts, sizes."""

import numpy as np
import pytest

from common.dataset import EpisodeSource
from labeling.clips import ClipImages, ClipSpec


def test_tile_and_separate_layouts(demo_root):
    source = EpisodeSource.open(demo_root)
    cameras = source.camera_keys
    tile = ClipSpec(cameras=cameras, layout="tile", image_size=48)
    separate = ClipSpec(cameras=cameras, layout="separate", image_size=48)
    frames = (0, 5, 9)
    tiled = ClipImages(source, tile, 2, set(frames)).images(frames)
    split = ClipImages(source, separate, 2, set(frames)).images(frames)
    assert len(tiled) == 3 and tiled[0].shape == (48, 96, 3)
    assert len(split) == 6 and split[0].shape == (48, 48, 3)
    np.testing.assert_array_equal(tiled[1][:, :48], split[2])  # frame 5, first camera
    np.testing.assert_array_equal(tiled[1][:, 48:], split[3])  # frame 5, second camera
    assert tile.images_per_frame() == 1 and separate.images_per_frame() == 2
    assert "side by side" in tile.views_text() and "one per camera" in separate.views_text()
    single = ClipSpec(cameras=cameras[:1])
    assert single.views_text() == "Camera view: corner2."


def test_views_are_capped_never_upscaled(demo_root):
    source = EpisodeSource.open(demo_root)
    spec = ClipSpec(cameras=source.camera_keys[:1], image_size=224)
    assert ClipImages(source, spec, 0, {0}).images((0,))[0].shape == (96, 96, 3)


@pytest.fixture(scope="module")
def mixed_cameras(tmp_path_factory):
    """One episode from a 480x640 front camera and a 480x480 wrist camera, each view's last
    rows and columns painted (blue bottom, green right edge) to see whether they survive."""
    from common.dataset_writer import create_dataset

    shapes = {"observation.images.front": (480, 640), "observation.images.wrist": (480, 480)}
    features = {key: {"dtype": "image", "shape": (*shape, 3), "names": ["height", "width", "channels"]}
                for key, shape in shapes.items()}
    dataset = create_dataset(repo_id="local/mixed", fps=10, features=features, use_videos=False,
                             root=tmp_path_factory.mktemp("mixed") / "mixed")
    for _ in range(2):
        frame = {"task": "look"}
        for key, (height, width) in shapes.items():
            image = np.full((height, width, 3), 128, dtype=np.uint8)
            image[-height // 8:] = (0, 0, 255)
            image[:, -width // 8:] = (0, 255, 0)
            frame[key] = image
        dataset.add_frame(frame)
    dataset.save_episode()
    dataset.finalize()
    return EpisodeSource.open(dataset.root)


@pytest.mark.parametrize("image_size", [224, 600])
def test_tiled_views_keep_their_whole_field_and_are_never_upscaled(mixed_cameras, image_size):
    front, wrist = mixed_cameras.camera_keys
    spec = ClipSpec(cameras=(front, wrist), layout="tile", image_size=image_size)
    tile = ClipImages(mixed_cameras, spec, 0, {1}).images((1,))[0]
    height = round(480 * min(1, image_size / 640))  # the front view's height under the cap
    front_width = round(640 * height / 480)
    assert tile.shape == (height, front_width + height, 3)  # the square wrist view scaled, not cropped
    for view in (tile[:, :front_width], tile[:, front_width:]):
        assert (view[-1, view.shape[1] // 2] > [200, 200, 200]).tolist() == [False, False, True]  # blue bottom
        assert (view[view.shape[0] // 2, -1] > [200, 200, 200]).tolist() == [False, True, False]  # green right edge
    separate = ClipImages(mixed_cameras, ClipSpec(cameras=(front, wrist), layout="separate", image_size=image_size),
                          0, {1}).images((1,))
    assert [image.shape[:2] for image in separate] == [(height, front_width), (min(480, image_size),) * 2]

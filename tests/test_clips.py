"""What a prompt shows: camera selection and layout, frame counts, sizes."""

import numpy as np

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

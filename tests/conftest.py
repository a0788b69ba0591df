"""Shared fixtures. Tests never reach the network: the hub is forced offline."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DATASET = REPO_ROOT / "data" / "demo_metaworld"


@pytest.fixture(scope="session")
def demo_root() -> Path:
    return DEMO_DATASET


@pytest.fixture(scope="session")
def image_dataset(tmp_path_factory) -> Path:
    """A small image-feature (not video) dataset with three cameras, generated once."""
    from data.generate import GenerateConfig, generate
    from data.rollout import RolloutConfig

    out = tmp_path_factory.mktemp("image_ds") / "reach_images"
    config = GenerateConfig(
        out=out,
        tasks=("reach-v3",),
        successes=1,
        failures_per_kind=1,
        failure_kinds=("stall",),
        rollout=RolloutConfig(cameras=("corner2", "topview", "gripperPOV"), image_size=64),
        use_videos=False,
    )
    return generate(config, progress=False)

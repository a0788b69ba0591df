"""Read any LeRobot v3 dataset (hub id or local directory) episode by episode.

Labelers need whole episodes at chosen frames, not shuffled training samples, so this reads
LeRobot's metadata and decodes each (episode, camera) in a single batched call instead of
going through `LeRobotDataset.__getitem__` frame by frame.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from common.cli import DatasetError, error_line


@dataclass(frozen=True)
class EpisodeInfo:
    index: int
    length: int
    start: int  # global dataset index of the first frame
    fps: int
    tasks: tuple[str, ...]
    camera_keys: tuple[str, ...]
    state_shape: tuple[int, ...] | None
    action_shape: tuple[int, ...] | None

    @property
    def task(self) -> str:
        return self.tasks[0]


class EpisodeSource:
    """Episode-level access to one LeRobot dataset; open it with `EpisodeSource.open`."""

    def __init__(self, meta, repo_id: str):
        self.meta = meta
        self.repo_id = repo_id
        self.root = Path(meta.root)
        self.fps = int(meta.fps)
        self.camera_keys = tuple(meta.camera_keys)
        self._episodes = episode_table(meta)

    @classmethod
    def open(cls, source: str | Path) -> EpisodeSource:
        """A local directory holding `meta/info.json`, else a hub repo id (cached, or online)."""
        from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

        path = Path(source).expanduser()
        if path.is_dir():
            if not (path / "meta" / "info.json").is_file():
                raise DatasetError(f"{path} is not a LeRobot dataset (no meta/info.json)")
            repo_id = f"local/{path.resolve().name}"
            try:
                return cls(LeRobotDatasetMetadata(repo_id, root=path), repo_id)
            except Exception as err:  # corrupt metadata files
                raise DatasetError(f"{path} has unreadable LeRobot metadata: {error_line(err)}") from err
        if _looks_like_path(str(source)):
            raise DatasetError(f"dataset directory not found: {source}")
        repo_id = str(source)
        try:
            return cls(LeRobotDatasetMetadata(repo_id), repo_id)
        except Exception as err:
            offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
            why = "it is not in the local cache and HF_HUB_OFFLINE is set" if offline else error_line(err)
            raise DatasetError(
                f"cannot open hub dataset '{repo_id}': {why}; pass a local directory instead "
                f"(a folder containing meta/info.json)"
            ) from err

    @property
    def episode_indices(self) -> list[int]:
        return sorted(self._episodes)

    @property
    def state_shape(self) -> tuple[int, ...] | None:
        feature = self.meta.features.get("observation.state")
        return tuple(feature["shape"]) if feature else None

    @property
    def action_shape(self) -> tuple[int, ...] | None:
        feature = self.meta.features.get("action")
        return tuple(feature["shape"]) if feature else None

    def episode(self, index: int) -> EpisodeInfo:
        row = self._row(index)
        return EpisodeInfo(
            index=index,
            length=int(row["length"]),
            start=int(row["dataset_from_index"]),
            fps=self.fps,
            tasks=tuple(row["tasks"]),
            camera_keys=self.camera_keys,
            state_shape=self.state_shape,
            action_shape=self.action_shape,
        )

    def frame_indices(self, index: int, stride: int) -> list[int]:
        """Every `stride`-th frame of the episode, always ending on its last frame."""
        if stride < 1:
            raise DatasetError(f"stride must be >= 1, got {stride}")
        length = self.episode(index).length
        picked = list(range(0, length, stride))
        if picked[-1] != length - 1:
            picked.append(length - 1)
        return picked

    def frames(
        self,
        index: int,
        frame_indices: Sequence[int] | None = None,
        cameras: Sequence[str] | None = None,
        size: int | tuple[int, int] | None = None,
    ) -> dict[str, np.ndarray]:
        """uint8 frames (N, H, W, 3) per camera at `frame_indices` (default: all) of one episode.

        `size` resizes: an int is the longer side (aspect kept), a pair is (height, width).
        """
        info = self.episode(index)
        cameras = self.check_cameras(cameras)
        picked = list(range(info.length)) if frame_indices is None else [int(i) for i in frame_indices]
        bad = [i for i in picked if not 0 <= i < info.length]
        if bad:
            raise DatasetError(f"frame index {bad[0]} out of range for episode {index} ({info.length} frames)")
        return {camera: _resize(self._decode(index, camera, picked), size) for camera in cameras}

    def check_cameras(self, cameras: Sequence[str] | None) -> tuple[str, ...]:
        """The requested camera keys (default: all), accepting short names like 'topview'."""
        if not cameras:
            return self.camera_keys
        resolved = []
        for camera in cameras:
            key = camera if camera in self.camera_keys else f"observation.images.{camera}"
            if key not in self.camera_keys:
                raise DatasetError(f"unknown camera '{camera}' (dataset has: {', '.join(self.camera_keys) or 'none'})")
            resolved.append(key)
        return tuple(resolved)

    def _row(self, index: int) -> dict:
        if index not in self._episodes:
            last = max(self._episodes) if self._episodes else -1
            raise DatasetError(f"episode {index} out of range (dataset has episodes 0..{last})")
        return self._episodes[index]

    def _decode(self, index: int, camera: str, picked: list[int]) -> np.ndarray:
        if camera in self.meta.video_keys:
            return self._decode_video(index, camera, picked)
        return self._decode_images(index, camera, picked)

    def _decode_video(self, index: int, camera: str, picked: list[int]) -> np.ndarray:
        from lerobot.datasets.video_utils import decode_video_frames_torchcodec

        path = self.root / self.meta.get_video_file_path(index, camera)
        start = float(self._row(index)[f"videos/{camera}/from_timestamp"])
        timestamps = [start + i / self.fps for i in picked]
        try:
            frames = decode_video_frames_torchcodec(path, timestamps, tolerance_s=1e-4, return_uint8=True)
        except Exception as err:
            raise DatasetError(f"cannot decode video {path}: {error_line(err)}") from err
        return frames.permute(0, 2, 3, 1).numpy()

    def _decode_images(self, index: int, camera: str, picked: list[int]) -> np.ndarray:
        path = self.root / self.meta.get_data_file_path(index)
        try:
            table = pq.read_table(
                path, columns=[camera, "frame_index"], filters=[("episode_index", "==", index)]
            ).to_pydict()
            by_frame = dict(zip(table["frame_index"], table[camera], strict=True))
            images = [Image.open(io.BytesIO(by_frame[i]["bytes"])).convert("RGB") for i in picked]
        except Exception as err:
            raise DatasetError(f"cannot read images of {camera} from {path}: {error_line(err)}") from err
        return np.stack([np.asarray(image) for image in images])


def _resize(frames: np.ndarray, size: int | tuple[int, int] | None) -> np.ndarray:
    if size is None:
        return frames
    height, width = frames.shape[1:3]
    if isinstance(size, int):
        scale = size / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if tuple(size) == (height, width):
        return frames
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    resized = torch.nn.functional.interpolate(tensor, size=tuple(size), mode="bilinear", antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def episode_table(meta) -> dict[int, dict]:
    """The rows of a dataset's episode metadata (`meta/episodes`: length, dataset_from_index, tasks,
    ...) by episode index, from LeRobot's `LeRobotDatasetMetadata`."""
    return {int(row["episode_index"]): row for row in meta.episodes.to_list()}


def _looks_like_path(source: str) -> bool:
    """Hub ids are exactly `namespace/name`; anything else is meant as a directory."""
    return source.startswith((".", "/", "~")) or source.count("/") != 1

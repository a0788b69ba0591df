"""Read any LeRobot v3 dataset (hub id or local directory) episode by episode.

Labelers need whole episodes at chosen frames, not shuffled training samples, so this reads
LeRobot's metadata and decodes each (episode, camera) in a single batched call instead of
going through `LeRobotDataset.__getitem__` frame by frame.

A hub dataset is opened from its `meta/` alone; the data and video files an episode is read
from are downloaded when first needed, into LeRobot's hub cache at one commit, so a command
fetches only the files holding the episodes and cameras it reads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from PIL import Image

from common.cli import DatasetError, error_line


DECODE_CHUNK = 16  # frames decoded at full resolution at once when they are resized


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


@dataclass(frozen=True)
class HubSnapshot:
    """The hub repository and commit a dataset's files come from, and where they are cached."""

    repo_id: str
    revision: str  # as asked (branch, tag or commit), after LeRobot's version resolution
    root: Path  # the snapshot folder of one commit in LeRobot's hub cache

    @property
    def commit(self) -> str:
        return self.root.name

    def download(self, paths: Sequence[str]) -> None:
        """Fetch the files among `paths` (relative to the dataset root; a folder ends in '/')
        that are not cached yet, through huggingface_hub at this snapshot's commit."""
        from huggingface_hub import snapshot_download
        from lerobot.utils.constants import HF_LEROBOT_HUB_CACHE

        wanted = sorted({path for path in paths if path.endswith("/") or not (self.root / path).is_file()})
        if not wanted:
            return
        try:
            snapshot_download(self.repo_id, repo_type="dataset", revision=self.commit,
                              cache_dir=HF_LEROBOT_HUB_CACHE, allow_patterns=wanted)
        except Exception as err:
            raise DatasetError(f"{self}: cannot download {wanted[0]}: {_hub_reason(err)}") from err
        absent = [path for path in wanted if not path.endswith("/") and not (self.root / path).is_file()]
        if absent:
            raise DatasetError(f"{self} has no file {absent[0]}")

    def __str__(self) -> str:
        return f"hub dataset '{self.repo_id}' at revision '{self.revision}' (commit {self.commit[:12]})"


REVISION_HELP = "hub dataset: branch, tag or commit (default: LeRobot's codebase version tag)"


class EpisodeSource:
    """Episode-level access to one LeRobot dataset; open it with `EpisodeSource.open`."""

    def __init__(self, meta, repo_id: str, hub: HubSnapshot | None = None):
        self.meta = meta
        self.repo_id = repo_id
        self.root = Path(meta.root)
        self.hub = hub  # None for a local directory, whose files are all there
        self.fps = int(meta.fps)
        self.camera_keys = tuple(meta.camera_keys)
        self._episodes = episode_table(meta)

    @classmethod
    def open(cls, source: str | Path, revision: str | None = None) -> EpisodeSource:
        """A local directory holding `meta/info.json`, else a hub repo id at `revision` (default:
        LeRobot's codebase version tag), whose `meta/` is downloaded unless cached."""
        from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
        from lerobot.utils.constants import HF_LEROBOT_HOME

        path = Path(source).expanduser()
        if path.is_dir():
            if revision:
                raise DatasetError(f"--revision applies to hub datasets; {path} is a local directory")
            return cls._open_local(path, f"local/{path.resolve().name}")
        if _looks_like_path(str(source)):
            raise DatasetError(f"dataset directory not found: {source}")
        recorded = HF_LEROBOT_HOME / str(source)  # where lerobot-record keeps a dataset made here
        if revision is None and (recorded / "meta" / "info.json").is_file():
            return cls._open_local(recorded, str(source))
        hub = _hub_snapshot(str(source), revision)
        try:
            return cls(LeRobotDatasetMetadata(hub.repo_id, root=hub.root, revision=hub.revision), hub.repo_id, hub)
        except Exception as err:
            raise DatasetError(f"{hub} has unreadable LeRobot metadata: {error_line(err)}") from err

    @classmethod
    def _open_local(cls, path: Path, repo_id: str) -> EpisodeSource:
        from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

        if not (path / "meta" / "info.json").is_file():
            raise DatasetError(f"{path} is not a LeRobot dataset (no meta/info.json)")
        try:
            return cls(LeRobotDatasetMetadata(repo_id, root=path), repo_id)
        except Exception as err:  # corrupt metadata files
            raise DatasetError(f"{path} has unreadable LeRobot metadata: {error_line(err)}") from err

    def fetch(self, episodes: Sequence[int] | None = None, cameras: Sequence[str] | None = None,
              folders: Sequence[str] = ()) -> None:
        """Download what LeRobot's own readers (`LeRobotDataset`, lerobot-train) need to read
        `episodes` (default: all) from `root`: the data files holding them, the video files of
        `cameras` (default: all; `()`: none) holding them, and any extra `folders` of the repository (a
        sidecar). Nothing for a local dataset, or for files already cached."""
        if self.hub is None:
            return
        indices = self.episode_indices if episodes is None else list(episodes)
        cameras = self.camera_keys if cameras is None else self.check_cameras(cameras) if cameras else ()
        videos = [camera for camera in cameras if camera in self.meta.video_keys]
        paths = [str(self.meta.get_data_file_path(index)) for index in indices]
        paths += [str(self.meta.get_video_file_path(index, camera)) for index in indices for camera in videos]
        self.hub.download([*paths, *(folder.rstrip("/") + "/" for folder in folders)])

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
        return {camera: self._decode_at_size(index, camera, picked, size) for camera in cameras}

    def rows(self, index: int, columns: Sequence[str], frame_indices: Sequence[int] | None = None) -> pd.DataFrame:
        """`columns` of one episode's rows (default: all its frames; else those at `frame_indices`),
        in frame order, read from the one data file that holds it, without the other episodes'."""
        path = self._file(self.meta.get_data_file_path(index))
        filters = [("episode_index", "==", index)]
        if frame_indices is not None:
            filters.append(("frame_index", "in", [int(i) for i in frame_indices]))
        try:
            table = pq.read_table(path, columns=["frame_index", *columns], filters=filters)
        except Exception as err:
            raise DatasetError(f"cannot read {', '.join(columns)} of episode {index} from {path}: {error_line(err)}") from err
        return table.to_pandas().sort_values("frame_index").set_index("frame_index")

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

    def _file(self, relative: Path) -> Path:
        """A file of the dataset, downloaded first if it is a hub dataset's and not cached."""
        if self.hub is not None:
            self.hub.download([str(relative)])
        return self.root / relative

    def _decode_at_size(self, index: int, camera: str, picked: list[int], size) -> np.ndarray:
        """Frames that are shrunk are decoded a chunk at a time, each chunk resized before the
        next is decoded, so the full-resolution frames in memory are bounded by the chunk, not
        by the number of frames asked (at 480x640 one frame is 0.9 MB as uint8, 3.7 MB as the
        float the resize works in)."""
        if size is None:
            return self._decode(index, camera, picked)
        chunks = [picked[i : i + DECODE_CHUNK] for i in range(0, len(picked), DECODE_CHUNK)]
        return np.concatenate([_resize(self._decode(index, camera, chunk), size) for chunk in chunks])

    def _decode(self, index: int, camera: str, picked: list[int]) -> np.ndarray:
        if camera in self.meta.video_keys:
            return self._decode_video(index, camera, picked)
        return self._decode_images(index, camera, picked)

    def _decode_video(self, index: int, camera: str, picked: list[int]) -> np.ndarray:
        from lerobot.datasets.video_utils import decode_video_frames_torchcodec

        path = self._file(self.meta.get_video_file_path(index, camera))
        start = float(self._row(index)[f"videos/{camera}/from_timestamp"])
        timestamps = [start + i / self.fps for i in picked]
        try:
            frames = decode_video_frames_torchcodec(path, timestamps, tolerance_s=1e-4, return_uint8=True)
        except Exception as err:
            raise DatasetError(f"cannot decode video {path}: {error_line(err)}") from err
        return frames.permute(0, 2, 3, 1).numpy()

    def _decode_images(self, index: int, camera: str, picked: list[int]) -> np.ndarray:
        """Only the picked frames' encoded images leave Arrow memory, not the episode's whole column."""
        by_frame = self.rows(index, [camera], picked)[camera]
        try:
            images = [Image.open(io.BytesIO(by_frame[i]["bytes"])).convert("RGB") for i in picked]
        except Exception as err:
            path = self.root / self.meta.get_data_file_path(index)
            raise DatasetError(f"cannot read images of {camera} from {path}: {error_line(err)}") from err
        return np.stack([np.asarray(image) for image in images])


def _hub_snapshot(repo_id: str, revision: str | None) -> HubSnapshot:
    """Resolve `revision` as LeRobot does (a version tag becomes the newest compatible one;
    offline, the cached refs answer) and download the repository's `meta/` at that commit."""
    from huggingface_hub import is_offline_mode, snapshot_download
    from lerobot.datasets.dataset_metadata import CODEBASE_VERSION
    from lerobot.datasets.utils import get_safe_version, is_valid_version
    from lerobot.utils.constants import HF_LEROBOT_HUB_CACHE

    revision = revision or CODEBASE_VERSION
    try:
        if is_valid_version(revision) and not is_offline_mode():
            revision = get_safe_version(repo_id, revision)
        root = snapshot_download(repo_id, repo_type="dataset", revision=revision, cache_dir=HF_LEROBOT_HUB_CACHE,
                                 allow_patterns="meta/")
    except Exception as err:
        raise DatasetError(f"cannot open hub dataset '{repo_id}' at revision '{revision}': {_hub_reason(err)}; "
                           f"pass a local directory instead (a folder containing meta/info.json)") from err
    return HubSnapshot(repo_id, revision, Path(root))


def _hub_reason(err: Exception) -> str:
    from huggingface_hub import is_offline_mode

    if is_offline_mode() and isinstance(err, FileNotFoundError):
        return "it is not in the local cache and HF_HUB_OFFLINE is set"
    return error_line(err)


def _resize(frames: np.ndarray, size: int | tuple[int, int] | None) -> np.ndarray:
    if size is None:
        return frames
    height, width = frames.shape[1:3]
    if isinstance(size, int):
        scale = size / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if tuple(size) == (height, width):
        return frames
    # Resized as uint8, PyTorch's vectorised antialiased path (as PIL's bilinear filter, within a
    # level): at 480x640 three to four times as fast as resizing the frames as floats.
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(tensor, size=tuple(size), mode="bilinear", antialias=True)
    return np.ascontiguousarray(resized.permute(0, 2, 3, 1).numpy())


def episode_table(meta) -> dict[int, dict]:
    """The rows of a dataset's episode metadata (`meta/episodes`: length, dataset_from_index, tasks,
    ...) by episode index, from LeRobot's `LeRobotDatasetMetadata`."""
    return {int(row["episode_index"]): row for row in meta.episodes.to_list()}


def _looks_like_path(source: str) -> bool:
    """Hub ids are exactly `namespace/name`; anything else is meant as a directory."""
    return source.startswith((".", "/", "~")) or source.count("/") != 1

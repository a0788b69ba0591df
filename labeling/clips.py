"""Which frames and camera views a prompt shows, and the images that go with it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.dataset import EpisodeSource
from common.options import option

LAYOUTS = ("tile", "separate")


@dataclass(frozen=True)
class ClipSpec:
    cameras: tuple[str, ...] = option((), help="camera keys or short names in the prompt (default: all)")
    layout: str = option("tile", flag="--camera-layout", choices=LAYOUTS,
                         help="tile: views side by side in one image per moment; separate: one image per view")
    image_size: int | None = option(224, help="at most this many pixels on the longer side of each view "
                                              "(never upscaled)")

    def views_text(self) -> str:
        names = ", ".join(camera.removeprefix("observation.images.") for camera in self.cameras)
        if len(self.cameras) == 1:
            return f"Camera view: {names}."
        if self.layout == "tile":
            return f"Each image shows the camera views {names} side by side."
        return f"Each moment is shown as {len(self.cameras)} consecutive images, one per camera: {names}."

    def images_per_frame(self) -> int:
        return 1 if self.layout == "tile" else len(self.cameras)


def context_indices(end: int, count: int) -> tuple[int, ...]:
    """`count` frames spread evenly over [0, end], always including both ends."""
    if end <= 0:
        return (0,)
    count = max(2, min(count, end + 1))
    return tuple(sorted({int(round(x)) for x in np.linspace(0, end, count)}))


class ClipImages:
    """Decodes the frames of one episode that a set of prompts needs, in one pass."""

    def __init__(self, source: EpisodeSource, spec: ClipSpec, episode: int, frames: set[int]):
        self.spec = spec
        ordered = sorted(frames)
        recorded = {camera: tuple(source.meta.features[camera]["shape"][:2]) for camera in spec.cameras}
        sizes = view_sizes(recorded, spec.image_size, same_height=spec.layout == "tile")
        self._decoded = {camera: source.frames(episode, ordered, cameras=[camera], size=sizes[camera])[camera]
                         for camera in spec.cameras}
        self._position = {frame: i for i, frame in enumerate(ordered)}

    def images(self, frames: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        views = [[self._decoded[camera][self._position[f]] for camera in self.spec.cameras] for f in frames]
        if self.spec.layout == "tile":
            return tuple(np.concatenate(v, axis=1) for v in views)
        return tuple(image for v in views for image in v)


def view_sizes(recorded: dict[str, tuple[int, int]], image_size: int | None,
               same_height: bool) -> dict[str, tuple[int, int]]:
    """(height, width) of each view: its longer side capped at `image_size`, aspect kept; with
    `same_height` (views tiled side by side) every view is scaled to the shortest one's height.
    A view is only ever shrunk, never cropped or upscaled, so its whole field reaches the model."""
    scales = {camera: min(1.0, image_size / max(shape)) if image_size else 1.0 for camera, shape in recorded.items()}
    if same_height:
        height = min(shape[0] * scales[camera] for camera, shape in recorded.items())
        scales = {camera: height / shape[0] for camera, shape in recorded.items()}
    return {camera: (max(1, round(shape[0] * scales[camera])), max(1, round(shape[1] * scales[camera])))
            for camera, shape in recorded.items()}

"""Reward curves drawn for people: under a policy's camera frames as an MP4, and as a PNG plot
(`training.visualize` for recorded episodes, `training.rollout` for closed-loop rollouts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.evaluation.plots import pyplot

CURVE_COLOURS = {"prediction": (31, 119, 180), "label": (255, 127, 14), "ground truth": (44, 160, 44)}


def chart(curves: dict[str, np.ndarray], width: int, height: int) -> Image.Image:
    """The reward curves over the episode, 0 at the bottom and 1 at the top."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    pad = 6
    for level in (0.0, 0.5, 1.0):
        y = pad + (1 - level) * (height - 2 * pad)
        draw.line([(0, y), (width, y)], fill=(220, 220, 220))
    for name, values in curves.items():
        xs = np.linspace(0, width - 1, len(values))
        ys = pad + (1 - np.clip(values, 0, 1)) * (height - 2 * pad)
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=CURVE_COLOURS[name], width=2)
    for row, name in enumerate(curves):
        draw.text((4, 2 + 10 * row), name, fill=CURVE_COLOURS[name])
    return image


def write_video(path: Path, frames: dict[str, np.ndarray], curves: dict[str, np.ndarray], fps: int) -> None:
    import av

    tiles = np.concatenate(list(frames.values()), axis=2)  # (T, H, W * cameras, 3)
    length, height, width = tiles.shape[:3]
    width += width % 2
    chart_height = max(48, (height // 2) // 2 * 2)
    background = chart(curves, width, chart_height)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height + chart_height, "yuv420p"
        for t in range(length):
            canvas = Image.new("RGB", (width, height + chart_height))
            canvas.paste(Image.fromarray(tiles[t]), (0, 0))
            strip = background.copy()
            x = t / max(length - 1, 1) * (width - 1)
            ImageDraw.Draw(strip).line([(x, 0), (x, chart_height)], fill=(0, 0, 0))
            canvas.paste(strip, (0, height))
            container.mux(stream.encode(av.VideoFrame.from_image(canvas)))
        container.mux(stream.encode())


def write_plot(path: Path, curves: dict[str, np.ndarray], fps: int, title: str) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 3))
    for name, values in curves.items():
        ax.plot(np.arange(len(values)) / fps, values, label=name, color=np.array(CURVE_COLOURS[name]) / 255)
    ax.set(xlabel="time (s)", ylabel="reward", ylim=(-0.05, 1.05), title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

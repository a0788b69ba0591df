"""Does labeling stay cheap on recordings of realistic size? Time, memory and calls at scale.

    python bench/labeling_scale.py [--work outputs/scale_bench] [--model models/metaworld-reward-vlm] [--rows 3,4]

Generates (once, kept in `--work`) MetaWorld datasets with three cameras: 21 episodes of three
tasks (successes and every failure kind) at 40 fps and 480x480, their pick-place episodes again
at 80 fps (the same motions, more frames), one pick-place success by a slow operator at 20 fps
and 480x640, 10 and 20 seconds long, and the brief's size: 20 pick-place episodes of ~20 s at
20 fps, 480x640 (successes, detours and failures). Labels them end to end with `python -m labeling.run`
(progress stage, the small reward VLM, CPU), each run in a child process, and prints in one run:

- wall time split into the phases the run records in `labeling_summary.json` (`seconds`:
  decode, model, fill, write), its review page (built again here to time it) and the rest
  (start-up, model load);
- peak RSS of each run, and its ratio between the same episodes recorded longer (flat: ~1);
- model calls and image tokens per frame and per episode-second;
- the output's write time and share of the run, and whether its videos are hard links to the
  source's (bytes copied);
- decode throughput of one camera at the recorded resolution, through the decoder the pipeline
  uses (LeRobot's torchcodec reader), for every frame of an episode and for the frames labeling
  asks for.

The results are also written as JSON (`--json`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.dataset import EpisodeSource  # noqa: E402
from common.label_files import read_summary  # noqa: E402
from labeling.calls import PHASES  # noqa: E402
from labeling.clips import context_indices  # noqa: E402
from labeling.progress import ProgressConfig, initial_keyframes  # noqa: E402
from labeling.review_page import write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CAMERAS = ["--cameras", "corner2,topview,gripperPOV", "--seed", "300"]
MIXED = ["--successes", "3", "--failures-per-kind", "1", "--image-size", "480"]
ONE_SLOW = ["--tasks", "pick-place-v3", "--successes", "1", "--failures-per-kind", "0", "--resolution", "480x640",
            "--fps", "20"]
# "short": per task 3 successes and one of each failure kind, about a second each. "long": its
# pick-place episodes (the same seeds) at twice the frame rate. "10s" and "20s": one pick-place
# success by a slow operator (a tenth and a twentieth of the expert's speed) at 20 fps, 480x640.
DATASETS = {
    "short": [*MIXED, "--tasks", "pick-place-v3,push-v3,reach-v3", "--action-repeat", "2"],
    "long": [*MIXED, "--tasks", "pick-place-v3", "--action-repeat", "1"],
    "10s": [*ONE_SLOW, "--operator-speed", "0.1"],
    "20s": [*ONE_SLOW, "--operator-speed", "0.05"],
    # The brief's size: 20 pick-place episodes by an operator at a twentieth of the expert's speed
    # (~20 s each at 20 fps), 480x640, three cameras: 15 successes, one of each detour, a drop and a stall.
    "full": ["--tasks", "pick-place-v3", "--resolution", "480x640", "--fps", "20", "--operator-speed", "0.05",
             "--successes", "15", "--success-kinds", "hesitation,recovered_drop,corrected_misplacement",
             "--failure-kinds", "drop,stall", "--failures-per-kind", "1"],
}
SAME_EPISODES = "0-6"  # the pick-place episodes of "short", those of "long"
# (row, dataset, episodes labeled): the run at scale, then the same episodes at 1x and 2x frames,
# then one episode at 10 and 20 seconds.
RUNS = [("all, 40 fps", "short", None), ("pick-place, 40 fps", "short", SAME_EPISODES),
        ("pick-place, 80 fps", "long", None), ("one episode, 10 s", "10s", None), ("one episode, 20 s", "20s", None),
        ("20 episodes x ~20 s, 480x640", "full", None)]
RATIOS = [(1, 2), (3, 4)]  # (shorter, longer) rows of the same episodes


def generate(work: Path, name: str) -> Path:
    """The dataset, generated unless `work` already holds it."""
    out = work / name
    if not (out / "meta" / "info.json").is_file():
        subprocess.run([sys.executable, "-m", "data.generate", "--out", str(out), *CAMERAS, *DATASETS[name],
                        "--repo-id", f"local/scale_{name}"], check=True, cwd=REPO)
    return out


def label(dataset: Path, episodes: str | None, out: Path, model: str, image_size: int) -> tuple[float, int, dict]:
    """(wall s, peak RSS bytes, summary) of one `python -m labeling.run` in a child process."""
    command = [sys.executable, "-m", "labeling.run", "--dataset", str(dataset), "--out", str(out), "--model", model,
               "--device", "cpu", "--stages", "progress", "--image-size", str(image_size), "--quiet", "--overwrite",
               *(["--episodes", episodes] if episodes else [])]
    shutil.rmtree(out.with_name(out.name + ".cache"), ignore_errors=True)  # every answer asked, none cached
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage, peak RSS included
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"labeling.run failed on {dataset} (exit {os.waitstatus_to_exitcode(status)})")
    return wall, usage.ru_maxrss * 1024, read_summary(out)


def video_links(source: Path, out: Path) -> tuple[int, int, int]:
    """(video files, of them hard links to the source's, bytes of those that are copies)."""
    files = sorted((out / "videos").rglob("*.mp4"))
    linked = [f for f in files if os.path.samefile(f, source / f.relative_to(out))]
    return len(files), len(linked), sum(f.stat().st_size for f in files if f not in linked)


@cache
def decode_rate(dataset: Path) -> dict:
    """Frames/s of one camera of the longest episode at its recorded size: every frame in one
    call, and the frames the progress stage's first keyframes ask for."""
    source = EpisodeSource.open(dataset)
    episode = max(source.episode_indices, key=lambda e: source.episode(e).length)
    camera, length = source.camera_keys[0], source.episode(episode).length
    config = ProgressConfig()
    asked = sorted(set().union(*(context_indices(f, config.context_frames)
                                 for f in initial_keyframes(length, config.initial_keyframes))))
    source.frames(episode, [0], cameras=[camera])  # opens the decoder: not part of the rate
    rates = {}
    for name, frames in (("every frame", list(range(length))), ("keyframe contexts", asked)):
        start = time.perf_counter()
        decoded = source.frames(episode, frames, cameras=[camera])[camera]
        rates[name] = {"frames": len(frames), "frames_per_s": round(len(frames) / (time.perf_counter() - start), 1)}
    return {"camera": camera, "resolution": "x".join(map(str, decoded.shape[1:3])), **rates}


def measure(work: Path, run: int, name: str, episodes: str | None, model: str, image_size: int) -> dict:
    dataset = generate(work, name)
    source = EpisodeSource.open(dataset)
    out = work / f"labeled_{run}"
    wall, peak, summary = label(dataset, episodes, out, model, image_size)
    seconds = {phase: summary["seconds"][phase] for phase in PHASES}
    episode_seconds = summary["frames"] / source.fps
    files, linked, copied = video_links(dataset, out)
    start = time.perf_counter()
    write_report(out)  # the run's review page, built again here to time it (its frames are decoded anew)
    page = time.perf_counter() - start
    return {
        "episodes": summary["episodes"], "frames": summary["frames"], "fps": source.fps,
        "cameras": len(source.camera_keys), "episode_seconds": round(episode_seconds, 2),
        "wall_s": round(wall, 2), "run_s": summary["elapsed_s"], "seconds": seconds,
        "review_page_s": round(page, 2), "outside_phases_s": round(wall - sum(seconds.values()) - page, 2),
        "peak_rss_bytes": peak,
        "model_calls": summary["model_calls"], "image_tokens": summary["image_tokens"],
        "calls_per_frame": summary["model_calls"] / summary["frames"],
        "calls_per_episode_second": summary["model_calls"] / episode_seconds,
        "image_tokens_per_frame": summary["image_tokens"] / summary["frames"],
        "image_tokens_per_episode_second": summary["image_tokens"] / episode_seconds,
        "write_share": seconds["write"] / wall, "video_files": files, "video_files_linked": linked,
        "video_bytes_copied": copied, "decode": decode_rate(dataset),
    }


def report(rows: dict[str, dict]) -> None:
    names = list(rows)
    print(f"{'':34}" + "".join(f"{name:>20}" for name in names))
    lines = [
        ("episodes", lambda r: f"{r['episodes']}"),
        ("frames (fps)", lambda r: f"{r['frames']} ({r['fps']})"),
        ("episode-seconds", lambda r: f"{r['episode_seconds']:.1f}"),
        ("wall s", lambda r: f"{r['wall_s']:.1f}"),
        *[(f"  {phase} s (share)", lambda r, p=phase: f"{r['seconds'][p]:.1f} ({r['seconds'][p] / r['wall_s']:.0%})")
          for phase in PHASES],
        ("  review page s (share)", lambda r: f"{r['review_page_s']:.1f} ({r['review_page_s'] / r['wall_s']:.0%})"),
        ("  start-up, model load s", lambda r: f"{r['outside_phases_s']:.1f}"),
        ("peak RSS GB", lambda r: f"{r['peak_rss_bytes'] / 1e9:.2f}"),
        ("model calls", lambda r: f"{r['model_calls']}"),
        ("calls / frame", lambda r: f"{r['calls_per_frame']:.4f}"),
        ("calls / episode-second", lambda r: f"{r['calls_per_episode_second']:.3f}"),
        ("image tokens / frame", lambda r: f"{r['image_tokens_per_frame']:.1f}"),
        ("image tokens / episode-second", lambda r: f"{r['image_tokens_per_episode_second']:.1f}"),
        ("videos hard-linked", lambda r: f"{r['video_files_linked']}/{r['video_files']}"),
        ("video bytes copied", lambda r: f"{r['video_bytes_copied']}"),
        ("decode frames/s, every frame", lambda r: f"{r['decode']['every frame']['frames_per_s']:.0f}"),
        ("decode frames/s, keyframe ctx", lambda r: f"{r['decode']['keyframe contexts']['frames_per_s']:.0f}"),
    ]
    for title, cell in lines:
        print(f"{title:34}" + "".join(f"{cell(rows[name]):>20}" for name in names))
    for decode in {row["decode"]["resolution"]: row["decode"] for row in rows.values()}.values():
        print(f"decode at {decode['resolution']} ({decode['camera']}, LeRobot's torchcodec reader)")
    for shorter, longer in ((RUNS[a][0], RUNS[b][0]) for a, b in RATIOS):
        if shorter in rows and longer in rows:
            short, long = rows[shorter], rows[longer]
            print(f"ratio {longer} / {shorter}: frames {long['frames'] / short['frames']:.2f}x, "
                  f"peak RSS {long['peak_rss_bytes'] / short['peak_rss_bytes']:.2f}x, "
                  f"wall {long['wall_s'] / short['wall_s']:.2f}x, "
                  f"decode s {long['seconds']['decode'] / short['seconds']['decode']:.2f}x, "
                  f"model calls {long['model_calls'] / short['model_calls']:.2f}x")
    peak = max(row["peak_rss_bytes"] for row in rows.values()) / 1e9
    write = max(row["write_share"] for row in rows.values())
    print(f"targets: peak RSS {peak:.2f} GB (< 3), write share {write:.1%} (<= 10 %)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "scale_bench",
                        help="where the generated datasets are kept and the labels written")
    parser.add_argument("--model", default=str(REPO / "models" / "metaworld-reward-vlm"))
    parser.add_argument("--image-size", type=int, default=96, help="the model's view size, as it was trained")
    parser.add_argument("--rows", help="comma-separated indices into RUNS (default: every row)")
    parser.add_argument("--json", type=Path, default=REPO / "outputs" / "bench" / "labeling_scale.json")
    args = parser.parse_args()
    chosen = [int(i) for i in args.rows.split(",")] if args.rows else range(len(RUNS))
    rows = {RUNS[run][0]: measure(args.work, run, *RUNS[run][1:], args.model, args.image_size) for run in chosen}
    report(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

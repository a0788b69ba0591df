"""Does labeling scale with Ray replicas, and does the driver stay out of the way?

    python bench/ray_scaling.py [--dataset data/demo_metaworld] [--model models/metaworld-reward-vlm]
        [--replicas 1,2]

Labels the dataset (progress stage, fresh cache each time) in-process and with `--executor ray`
at each replica count, all in one run. Each executor runs twice, on the first `--warmup`
episodes and on all of them, so start-up (starting Ray, loading the model in every replica) is
measured apart from throughput: episodes/s is the marginal rate (extra episodes / extra wall
seconds). The driver's CPU share is its own CPU seconds over wall seconds of the full run, start-up
included (decoding and scoring happen in the replicas, so it should stay small).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.label_files import read_summary  # noqa: E402
from labeling.run import main as label  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def timed_run(argv: list[str]) -> tuple[float, float, dict]:
    """(wall seconds, driver CPU seconds, summary) of one labeling.run in this process."""
    driver = psutil.Process()
    cpu_before, start = sum(driver.cpu_times()[:2]), time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert label(argv) == 0
    wall, cpu = time.perf_counter() - start, sum(driver.cpu_times()[:2]) - cpu_before
    return wall, cpu, read_summary(argv[argv.index("--out") + 1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(REPO / "data" / "demo_metaworld"))
    parser.add_argument("--model", default=str(REPO / "models" / "metaworld-reward-vlm"))
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--warmup", type=int, default=2, help="episodes of the start-up run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--dataset", args.dataset, "--model", args.model, "--device", "cpu", "--stages", "progress",
                  "--image-size", "96", "--quiet"]
        runs = [("in-process", [])] + [(f"ray, {n} replica{'s' * (n > 1)}", ["--executor", "ray", "--replicas", str(n)])
                                       for n in map(int, args.replicas.split(","))]
        timed_run([*common, "--out", f"{tmp}/warm-up", "--episodes", "0"])  # imports paid once, not by a row
        for index, (name, extra) in enumerate(runs):
            short_wall, _, short = timed_run(
                [*common, "--out", f"{tmp}/short{index}", "--episodes", f"0-{args.warmup - 1}", *extra])
            wall, cpu, summary = timed_run([*common, "--out", f"{tmp}/all{index}", *extra])
            extra_wall = wall - short_wall
            rows.append((name, (summary["episodes"] - short["episodes"]) / extra_wall, short_wall, wall,
                         cpu / wall, summary["model_calls"], summary["episodes"]))
    base = rows[0][1]
    print(f"{'executor':<18} {'episodes/s':>10} {'x in-process':>12} {'start-up s':>10} {'wall s':>7} "
          f"{'driver CPU':>10} {'calls':>6}")
    for name, rate, short_wall, wall, share, calls, _episodes in rows:
        print(f"{name:<18} {rate:>10.2f} {rate / base:>12.2f} {short_wall:>10.1f} {wall:>7.1f} {share:>10.0%} "
              f"{calls:>6}")
    print(f"({rows[0][6]} episodes, {psutil.cpu_count()} CPUs; episodes/s excludes the start-up run "
          f"of {args.warmup} episodes; driver CPU = the driver process's CPU seconds / wall seconds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

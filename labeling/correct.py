"""Apply a reviewer's corrections (the review page's corrections.json) to a labeling.run output.

    python -m labeling.correct <output dir> corrections.json
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import run_cli
from common.options import option, parse_options
from labeling.corrections import correct_output


@dataclass(frozen=True)
class CorrectOptions:
    """Apply a reviewer's corrections (the review page's corrections.json) to a labeling.run output."""

    out: Path = option(help="the labeling.run output directory", positional=True)
    corrections: Path = option(help="corrections.json exported by the review page", positional=True)
    cache_dir: Path | None = option(None, help="the run's answer cache, where corrections are kept for later "
                                               "runs (default: <out>.cache)")


def main(argv: list[str] | None = None) -> int:
    options = parse_options(CorrectOptions, argv, prog="python -m labeling.correct")
    corrections = correct_output(options.out, options.corrections, options.cache_dir)
    print(f"applied {len(corrections.keyframes)} keyframe score(s), {len(corrections.verdicts)} verdict(s) and "
          f"{len(corrections.dropped)} dropped episode(s) to {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

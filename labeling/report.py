"""Build (or rebuild) the review page of a labeling run: `<out>/report/index.html`.

    python -m labeling.report <output dir>
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import ConfigError, run_cli
from common.options import option, parse_options
from labeling.review_page import THUMB_SIZE, write_report


@dataclass(frozen=True)
class ReportOptions:
    """Build (or rebuild) the review page of a labeling run: <out>/report/index.html."""

    out: Path = option(help="a labeling.run output directory", positional=True)
    cache_dir: Path | None = option(None, help="the run's answer cache, for the raw answers (default: <out>.cache)")
    thumb_size: int = option(THUMB_SIZE, help="longer side of the frame thumbnails, in pixels")

    def __post_init__(self):
        if self.thumb_size < 16:
            raise ConfigError(f"--thumb-size must be at least 16 pixels, got {self.thumb_size}")


def main(argv: list[str] | None = None) -> int:
    options = parse_options(ReportOptions, argv, prog="python -m labeling.report")
    page = write_report(options.out, options.cache_dir, options.thumb_size)
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

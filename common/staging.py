"""Build an output directory beside its final place and move it there only when complete.

A run killed half way then leaves `<out>.partial`, never a half-written `<out>` that a later
step would take for finished:

    staging = staging_dir(out)      # empty `<out>.partial`
    ...write everything under staging...
    publish(staging, out)           # replaces `out`

A single file is written the same way with `write_file(out, write)`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path


def staging_dir(out: Path, resume: bool = False) -> Path:
    """`<out>.partial`, emptied first unless `resume` (a killed run's checkpoints are reused)."""
    staging = out.with_name(out.name + ".partial")
    if not resume:
        shutil.rmtree(staging, ignore_errors=True)
    return staging


def publish(staging: Path, out: Path) -> Path:
    """Move the finished `staging` directory to `out`, replacing what was there."""
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def write_file(out: Path, write: Callable[[Path], object]) -> Path:
    """`write(partial)` into `<out>.partial`, then renamed over `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    write(partial)
    partial.replace(out)
    return out

"""Shared command-line plumbing: user errors become one line on stderr and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

USER_ERROR_EXIT = 2
RUN_FAILED_EXIT = 1


class UserError(Exception):
    """Base of every error the user can fix (dataset, labels, settings, model or server):
    one line on stderr and exit code 2, never a traceback."""


class DatasetError(UserError, ValueError):
    """A problem with the user's dataset or request."""


class ConfigError(UserError, ValueError):
    """Settings that cannot work together: exit 2, like any user error."""


class RunFailed(RuntimeError):
    """The job ran but its result would be meaningless (e.g. no readable answers): exit 1."""


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run `main`; a user-facing error (bad dataset or input, model or server unavailable)
    prints `error: ...` and returns 2; a run that failed for a stated reason returns 1."""
    try:
        return main(argv)
    except (UserError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return USER_ERROR_EXIT
    except RunFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return RUN_FAILED_EXIT


def parse_episodes(spec: str | None) -> list[int] | None:
    """'0,3,5-9' -> [0, 3, 5, 6, 7, 8, 9]; None or '' -> None (all episodes)."""
    if not spec:
        return None
    episodes: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                first, last = (int(x) for x in part.split("-", 1))
                if last < first:
                    raise ValueError
                episodes += range(first, last + 1)
            else:
                episodes.append(int(part))
        except ValueError:
            raise DatasetError(f"bad episode list '{spec}' (expected e.g. 0,3,5-9)") from None
    return sorted(set(episodes))


def parse_names(spec: str) -> tuple[str, ...]:
    """'a,b, c' -> ('a', 'b', 'c'): a comma-separated list of names."""
    return tuple(name.strip() for name in spec.split(",") if name.strip())


def parse_ints(spec: str) -> tuple[int, ...]:
    """'0,1' -> (0, 1): a comma-separated list of integers, in the order given."""
    try:
        return tuple(int(part) for part in parse_names(spec))
    except ValueError:
        raise ConfigError(f"bad list of integers '{spec}' (expected e.g. 0,1)") from None


def error_line(err: BaseException, last: bool = False) -> str:
    """One line of an error for an `error: ...` message: its first non-empty line (`last`: the
    last, where a wrapped remote error puts its cause), or the error's type when it says nothing."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else type(err).__name__

"""The one option mechanism every command uses (`common.options`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from common.cli import ConfigError, parse_episodes
from common.options import as_record, command_line, from_record, option, parse_options


@dataclass(frozen=True)
class Inner:
    model: str = option("small", help="which model")
    sizes: tuple[int, ...] = option((1, 2), help="sizes")


@dataclass(frozen=True)
class Options:
    """Do a thing.

    More words."""

    dataset: str = option(help="dataset")
    out: Path = option(Path("outputs/x"), help="where")
    steps: int = option(10, help="steps")
    fill: Literal["linear", "isotonic"] = option("linear", help="fill")
    episodes: list[int] | None = option(None, help="0,3,5-9", parse=parse_episodes)
    overwrite: bool = option(False, help="replace")
    inner: Inner = field(default_factory=Inner)
    derived: int = 0  # set by the command, not a flag

    def __post_init__(self):
        if self.steps < 1:
            raise ConfigError("steps must be >= 1")


def test_flags_types_defaults_and_nested_fields():
    options = parse_options(Options, ["--dataset", "d", "--steps", "3", "--episodes", "0,2-3", "--overwrite",
                                      "--model", "big", "--sizes", "4", "5", "--fill", "isotonic"])
    assert options == Options(dataset="d", steps=3, episodes=[0, 2, 3], overwrite=True, fill="isotonic",
                              inner=Inner(model="big", sizes=(4, 5)))
    assert parse_options(Options, ["--dataset", "d"]) == Options(dataset="d")


def test_record_is_the_whole_configuration_as_json():
    record = as_record(parse_options(Options, ["--dataset", "d"]))
    assert json.loads(json.dumps(record)) == record
    assert record["out"] == "outputs/x" and record["inner"] == {"model": "small", "sizes": [1, 2]}
    assert command_line("python -m thing", ["--dataset", "d"]) == "python -m thing --dataset d"


def test_a_record_reads_back_as_the_configuration():
    options = parse_options(Options, ["--dataset", "d", "--sizes", "4", "5"])
    assert from_record(Options, json.loads(json.dumps(as_record(options)))) == options
    assert from_record(Options, {"dataset": "d"}) == Options(dataset="d")  # an older record: defaults


def test_checks_and_parse_errors_reach_the_user_as_raised():
    with pytest.raises(ConfigError, match="steps must be"):
        parse_options(Options, ["--dataset", "d", "--steps", "0"])
    with pytest.raises(ValueError, match="bad episode list"):
        parse_options(Options, ["--dataset", "d", "--episodes", "3-1"])


def test_usage_errors_and_help(capsys):
    with pytest.raises(SystemExit):
        parse_options(Options, [])  # --dataset is required
    assert "--dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_options(Options, ["--dataset", "d", "--fill", "cubic"])
    with pytest.raises(SystemExit):
        parse_options(Options, ["--help"], prog="python -m thing")
    text = capsys.readouterr().out
    assert "Do a thing." in text and "More words" not in text and "(default: 10)" in text and "--derived" not in text
    assert "--model MODEL" in text and "INNER." not in text  # a nested field reads like any other


def test_a_flag_declared_twice_is_refused():
    @dataclass
    class Clash:
        model: str = option("a", help="again")
        inner: Inner = field(default_factory=Inner)

    with pytest.raises(TypeError, match="--model"):
        parse_options(Clash, [])


@dataclass(frozen=True)
class Repeated:
    source: tuple[str, ...] = option(help="one or more, repeatable")
    pair: tuple[tuple[str, str], ...] = option((), help="two names, repeatable")
    tags: tuple[str, ...] = option(("x",), help="defaults kept unless given")


def test_repeated_and_fixed_size_values():
    parsed = parse_options(Repeated, ["--source", "a", "b", "--source", "c", "--pair", "a", "b", "--pair", "c", "a"])
    assert parsed == Repeated(source=("a", "b", "c"), pair=(("a", "b"), ("c", "a")))
    assert parse_options(Repeated, ["--source", "a", "--tags", "y"]).tags == ("y",)
    assert parse_options(Repeated, ["--source", "a"]).tags == ("x",)

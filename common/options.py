"""One way to declare a command's options: a documented dataclass, turned into a command line.

Each field of the dataclass is an option, written once: its flag is the field's name with dashes
(`n_step` -> `--n-step`, or `flag=`), its type comes from the annotation, its default from the
field and its help from `option(help=...)`. A field whose type is itself a dataclass contributes
its own fields as flags of the same command (so a nested run configuration keeps flat flags), and
the parsed values are handed to the dataclasses' constructors, so `__post_init__` checks them as
it would any other caller's. `as_record` gives the whole parsed configuration back as JSON-ready
data for provenance.

    @dataclass(frozen=True)
    class AdvantageOptions:
        \"\"\"Per-frame advantages from a reward source.\"\"\"
        dataset: str = option(help="hub repo id or local LeRobot dataset directory")
        n_step: int = option(50, help="frames ahead the advantage looks")

    options = parse_options(AdvantageOptions, argv, prog="python -m training.advantage")
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")
_META = "command_option"


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None,
           default_factory: Callable[[], Any] | Any = dataclasses.MISSING, choices: tuple | None = None,
           parse: Callable[[str], Any] | None = None, positional: bool = False, metavar: str | tuple[str, ...] | None = None) -> Any:
    """A dataclass field that is also a command-line option. `parse` turns the raw text into the
    value after the command line is read (so its errors reach the user as they are); `choices`
    restricts the text; `positional` takes the value without a flag. A tuple or list field takes
    several values and may be repeated (`--source a b --source c`); one of fixed-size tuples takes
    that many values each time (`--pair A B --pair C D`)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={_META: {"help": help, "flag": flag, "choices": choices, "parse": parse,
                                               "positional": positional, "metavar": metavar}})


def parse_options(cls: type[T], argv: list[str] | None = None, *, prog: str | None = None) -> T:
    """Read `argv` (default: sys.argv[1:]) into an instance of the dataclass `cls`."""
    description = (cls.__doc__ or "").strip().split("\n\n")[0]
    parser = argparse.ArgumentParser(prog=prog, description=description)
    _add_fields(parser, cls, prefix="", seen={})
    return _build(cls, vars(parser.parse_args(argv)), prefix="")


def command_line(prog: str, argv: list[str] | None = None) -> str:
    """The command as it was run (`argv` default: sys.argv[1:]), for provenance beside `as_record`."""
    return " ".join([prog, *(sys.argv[1:] if argv is None else argv)])


def as_record(options: Any) -> dict:
    """The parsed options as JSON-ready data (paths as text), for provenance."""
    return _jsonable(dataclasses.asdict(options))



def from_record(cls: type[T], record: dict) -> T:
    """The dataclass `as_record` (or `dataclasses.asdict`) wrote: nested dataclasses rebuilt,
    lists back to tuples where the field is a tuple; fields the record lacks keep their defaults
    (a record written before they existed)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in record:
            continue
        kind, value = _without_none(hints[field.name]), record[field.name]
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            value = from_record(kind, value)
        elif typing.get_origin(kind) is tuple and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        elif kind is Path and value is not None:
            value = Path(value)
        kwargs[field.name] = value
    return cls(**kwargs)

def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def _add_fields(parser: argparse.ArgumentParser, cls: type, prefix: str, seen: dict[str, str]) -> None:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        dest = prefix + field.name
        if dataclasses.is_dataclass(kind):
            _add_fields(parser, kind, dest + ".", seen)
            continue
        meta = field.metadata.get(_META)
        if meta is None:
            continue  # not a command-line option: set by the command itself
        flag = meta["flag"] or "--" + field.name.replace("_", "-")
        if flag in seen:
            raise TypeError(f"{cls.__name__}.{field.name}: flag {flag} already used by {seen[flag]}")
        seen[flag] = dest
        parser_kwargs = _argparse_kwargs(kind, field, meta)
        if meta["positional"]:
            parser.add_argument(dest, metavar=field.name.upper(), **parser_kwargs)
        else:
            if "choices" not in parser_kwargs and parser_kwargs.get("action") is not argparse.BooleanOptionalAction:
                parser_kwargs.setdefault("metavar", field.name.upper())
            parser.add_argument(flag, dest=dest, **parser_kwargs)


def _argparse_kwargs(kind: Any, field: dataclasses.Field, meta: dict) -> dict:
    required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    default = None if required else (field.default if field.default is not dataclasses.MISSING
                                     else field.default_factory())
    kwargs: dict[str, Any] = {"help": meta["help"] + ("" if required or default in (None, False, (), [])
                                                        else f" (default: {_shown(default)})")}
    if not meta["positional"]:
        kwargs["required"] = required
    kwargs["default"] = default
    kind = _without_none(kind)
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    elif not meta["positional"] and kind is not bool and not meta["choices"] and typing.get_origin(kind) is not Literal:
        kwargs["metavar"] = field.name.upper()  # not the nested dest: `--model MODEL`, not `--model INNER.MODEL`
    if meta["parse"] is not None:
        return kwargs  # the raw text, parsed after reading
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        return kwargs
    if typing.get_origin(kind) in (tuple, list):
        # argparse would extend the default in place: start from None, the field's default after.
        kwargs["default"] = None
        kind = typing.get_args(kind)[0]
        if typing.get_origin(kind) is tuple:
            kwargs.update(nargs=len(typing.get_args(kind)), action="append")
            kind = typing.get_args(kind)[0]
        else:
            kwargs.update(nargs="+", action="extend")
    if typing.get_origin(kind) is Literal:
        kwargs["choices"] = typing.get_args(kind)
        kind = type(kwargs["choices"][0])
    if meta["choices"] is not None:
        kwargs["choices"] = meta["choices"]
    kwargs["type"] = kind
    return kwargs


def _without_none(kind: Any) -> Any:
    """`X | None` -> X."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def _shown(default: Any) -> str:
    return ",".join(map(str, default)) if isinstance(default, tuple | list) else str(default)


def _build(cls: type[T], values: dict[str, Any], prefix: str) -> T:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        dest = prefix + field.name
        if dataclasses.is_dataclass(hints[field.name]):
            kwargs[field.name] = _build(hints[field.name], values, dest + ".")
        elif field.metadata.get(_META) is not None:
            value = values[dest]
            meta = field.metadata[_META]
            kind = _without_none(hints[field.name])
            if meta["parse"] is not None and isinstance(value, str):
                value = meta["parse"](value)
            elif typing.get_origin(kind) in (tuple, list):
                if value is None:
                    continue  # the field's default
                value = typing.get_origin(kind)(tuple(v) if isinstance(v, list) else v for v in value)
            kwargs[field.name] = value
    return cls(**kwargs)

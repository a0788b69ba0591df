"""`common.cli`'s small parsers and the one line an error becomes."""

import pytest

from common.cli import ConfigError, error_line, parse_ints, parse_names


def test_comma_lists_keep_their_order():
    assert parse_names("corner2, topview,") == ("corner2", "topview")
    assert parse_ints("1,0") == (1, 0)
    with pytest.raises(ConfigError, match="bad list of integers '0,x'"):
        parse_ints("0,x")


def test_an_error_is_one_line_first_or_last():
    err = OSError("\nmodel.safetensors not found\n  more detail\n")
    assert error_line(err) == "model.safetensors not found"
    assert error_line(RuntimeError("Traceback ...\n  File x\nValueError: the cause\n"), last=True) == "ValueError: the cause"
    assert error_line(KeyError()) == "KeyError"

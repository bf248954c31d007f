"""Command-line options derived from configuration dataclasses (bayesym.cli.options)."""

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from bayesym.cli.compare import COMPARE_OPTIONS, config_from_args
from bayesym.cli.options import (
    RUN_OPTIONS,
    ConfigOption,
    add_config_options,
    option_values,
    run_config_from_args,
)
from bayesym.runs import RunConfig
from bayesym.selectors.compare import CompareConfig


@dataclass(frozen=True)
class _Inner:
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class _Toy:
    name: str
    count: int | None = None
    inner: _Inner = field(default_factory=lambda: _Inner(rate=0.25))


_TOY_OPTIONS = (
    ConfigOption("--name", "name", "a name", choices=lambda: ("x", "y")),
    ConfigOption("--count", "count", "how many", unset="as many as there are"),
    ConfigOption("--rate", "inner.rate", "a rate"),
    ConfigOption("--mode", "inner.mode", "a mode"),
)


def _toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_options(parser, _TOY_OPTIONS, _Toy)
    return parser


def test_types_defaults_choices_and_required_come_from_the_dataclass():
    parser = _toy_parser()
    args = parser.parse_args(["--name", "y"])
    # the nested default is the default_factory's instance, not the class's own default
    assert option_values(args, _TOY_OPTIONS) == {
        "name": "y", "count": None, "inner.rate": 0.25, "inner.mode": "a"
    }  # fmt: skip
    args = parser.parse_args(["--name", "x", "--count", "3", "--rate", "2", "--mode", "b"])
    assert option_values(args, _TOY_OPTIONS)["count"] == 3
    assert option_values(args, _TOY_OPTIONS)["inner.rate"] == 2.0
    for bad in (["--count", "3"], ["--name", "z"], ["--name", "x", "--mode", "c"]):
        with pytest.raises((argparse.ArgumentError, SystemExit)):
            parser.parse_args(bad)
    with pytest.raises(argparse.ArgumentError, match="positive finite"):
        parser.parse_args(["--name", "x", "--rate", "0"])
    text = parser.format_help()
    assert "a rate (default: 0.25)" in text and "a mode (default: a; one of: a, b)" in text
    assert "a name (one of: x, y)" in text and "how many (default: as many as there are)" in text


def _parse(options_of, argv):
    from bayesym.cli import build_parser

    return build_parser().parse_args([options_of, *argv])


def test_every_compare_option_defaults_to_the_compare_config_default():
    args = _parse(
        "compare", ["--task", "digits", "--space", "translation", "--selectors", "static",
                    "--out", "x"]
    )  # fmt: skip
    config = config_from_args(args)
    reference = CompareConfig(task="digits", space="translation", selectors=("static",))
    assert {o.path for o in COMPARE_OPTIONS} <= {f.name for f in dataclasses.fields(config)}
    for option in COMPARE_OPTIONS:
        assert getattr(config, option.path) == getattr(reference, option.path), option.flag


def test_every_run_option_defaults_to_the_run_config_default():
    args = _parse("fit", ["--out", "x"])
    assert run_config_from_args(args) == RunConfig()
    assert len({o.flag for o in RUN_OPTIONS}) == len(RUN_OPTIONS)

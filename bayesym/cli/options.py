"""The command-line options of a run, derived from one table over :class:`~bayesym.runs.RunConfig`.

Each :class:`RunOption` names a flag and the dotted path of the configuration field it sets;
its type, its choices (for ``Literal`` fields and layer kinds) and its default are read from
the configuration classes, so the CLI cannot drift from them. ``bayesym fit`` and
``bayesym demo`` add the same table (the demo without ``--task``/``--kind``, which it fixes).
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from bayesym.cli.errors import CliError
from bayesym.layers.registry import layer_kinds
from bayesym.runs import RunConfig

__all__ = ["RUN_OPTIONS", "RunOption", "add_run_options", "run_config_from_args"]


@dataclass(frozen=True)
class RunOption:
    """One command-line option that sets one field of :class:`~bayesym.runs.RunConfig`.

    Attributes:
        flag: the option, e.g. ``"--batch-size"``.
        path: dotted field path in the configuration, e.g. ``"training.batch_size"``.
        help: what it does (the default and the valid values are appended).
    """

    flag: str
    path: str
    help: str

    @property
    def dest(self) -> str:
        """The ``argparse`` destination."""
        return self.flag.lstrip("-").replace("-", "_")


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption("--task", "task", "task to learn (`bayesym data list` shows them)"),
    RunOption("--kind", "model.layer_kind", "layer kind of every block of the backbone"),
    RunOption("--width", "model.width", "width multiplier a of the backbone"),
    RunOption("--epochs", "training.epochs", "training epochs"),
    RunOption("--batch-size", "training.batch_size", "mini-batch size of the MAP steps"),
    RunOption("--lr", "training.lr", "learning rate of the parameters (Adam, cosine to 0)"),
    RunOption("--burn-in", "training.burn_in", "epochs before the first hyper step"),
    RunOption("--hyper-every", "training.hyper_every", "epochs between hyper steps"),
    RunOption(
        "--hyper-steps", "training.hyper_steps", "Adam steps on the precisions per hyper step"
    ),
    RunOption("--ggn", "training.kfac.ggn_type", "curvature: exact GGN, 1-sample MC or empirical"),
    RunOption("--approx", "training.kfac.approx", "KFAC approximation of shared weights"),
    RunOption("--marglik-subset", "training.marglik_subset", "compute the curvature on N images"),
    RunOption(
        "--marglik-batch-size",
        "training.marglik_batch_size",
        "batch size of the curvature pass (none: the training batch size on the CPU, at least "
        "512 on a GPU; the factors do not depend on it)",
    ),
    RunOption("--train-subset", "train_subset", "train on a seeded subset of N images"),
    RunOption("--seed", "training.seed", "seed of initialisation, task, shuffling and curvature"),
    RunOption("--root", "data_root", "Fashion-MNIST directory (none: $BAYESYM_DATA or Debian's)"),
)
"""The table: every run option of ``bayesym fit`` (and, but for task and kind, of the demo)."""


def _field(path: str) -> tuple[Any, Any]:
    """The resolved type and the default of the configuration field at ``path``."""
    owner: Any = RunConfig
    value: Any = RunConfig()
    for name in path.split("."):
        hints = typing.get_type_hints(owner)
        annotation = hints[name]
        value = getattr(value, name)
        owner = annotation
    return annotation, value


def _parser_and_choices(annotation: Any) -> tuple[Callable[[str], Any], tuple[Any, ...] | None]:
    """``argparse`` type and choices of a field annotation (``X | None`` parses as ``X``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return str, typing.get_args(annotation)
    return annotation, None


def add_run_options(parser: argparse.ArgumentParser, *, exclude: Collection[str] = ()) -> None:
    """Add every option of :data:`RUN_OPTIONS` to ``parser``, except the flags in ``exclude``."""
    for option in RUN_OPTIONS:
        if option.flag in exclude:
            continue
        annotation, default = _field(option.path)
        parse, choices = _parser_and_choices(annotation)
        if option.path == "model.layer_kind":
            choices = layer_kinds()
        shown = "none" if default is None else default
        valid = f"; one of: {', '.join(map(str, choices))}" if choices else ""
        parser.add_argument(
            option.flag,
            type=parse,
            default=default,
            choices=choices,
            metavar=option.dest.upper() if choices and len(choices) > 4 else None,
            help=f"{option.help} (default: {shown}{valid})",
        )


def run_config_from_args(
    args: argparse.Namespace,
    *,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """The :class:`~bayesym.runs.RunConfig` of parsed options (``overrides``: path -> value).

    Options not present in ``args`` keep their defaults. ``--map`` (if the parser has it)
    sets ``training.learn_prior=False``; ``--group`` sets ``model.layer_options["group"]``.

    Raises:
        CliError: for a value the configuration refuses (one line naming the field).
    """
    values: dict[str, Any] = {}
    for option in RUN_OPTIONS:
        if hasattr(args, option.dest):
            values[option.path] = getattr(args, option.dest)
    if getattr(args, "map", False):
        values["training.learn_prior"] = False
    if getattr(args, "group", None):
        values["model.layer_options"] = {"group": args.group}
    values.update(overrides or {})
    nested: dict[str, Any] = {}
    for path, value in values.items():
        *parents, name = path.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[name] = value
    try:
        return RunConfig.from_json(nested)
    except (ValueError, TypeError) as err:
        raise CliError(str(err)) from None

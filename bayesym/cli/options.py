"""Command-line options derived from one table over a configuration dataclass.

Each :class:`ConfigOption` names a flag and the dotted path of the configuration field it sets;
its type, its choices (for ``Literal`` fields, or the option's own) and its default are read
from the configuration classes, so the CLI cannot drift from them. ``bayesym fit`` and
``bayesym demo`` add :data:`RUN_OPTIONS` over :class:`~bayesym.runs.RunConfig` (the demo without
``--task``/``--kind``, which it fixes); ``bayesym compare`` adds its sizes and budget over
:class:`~bayesym.selectors.compare.CompareConfig` the same way.

The session options (:func:`add_session_options`: ``--quiet``, ``--device``, ``--threads``)
change how a run is shown or where it runs, never its result, so they never block a resume.
Every command that trains runs on :data:`DEFAULT_THREADS` torch thread unless ``--threads``
says otherwise: with one OpenMP thread per core, any other busy process on the machine stalls
every parallel region, and the networks of the demo are too small to gain from more threads
(measured in the docs' benchmarks, ``benchmarks/demo_threads.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bayesym.cli.errors import CliError
from bayesym.groups import D4_SUBGROUP_NAMES
from bayesym.layers.registry import layer_kind, layer_kinds
from bayesym.runs import RunConfig

__all__ = [
    "DEFAULT_THREADS",
    "RUN_OPTIONS",
    "ConfigOption",
    "add_config_options",
    "add_session_options",
    "check_run_config",
    "option_values",
    "run_config_from_args",
    "set_threads",
]

DEFAULT_THREADS = 1
"""Torch intra-op threads of a training command without ``--threads``."""


@dataclass(frozen=True)
class ConfigOption:
    """One command-line option that sets one field of a configuration dataclass.

    Attributes:
        flag: the option, e.g. ``"--batch-size"``.
        path: dotted field path in the configuration, e.g. ``"training.batch_size"``.
        help: what it does (the default and the valid values are appended).
        choices: the valid values, when the field's type does not list them (called when
            the option is added, so registrations made before then count).
        unset: what the field's default ``None`` means, shown as the default in ``--help``.
    """

    flag: str
    path: str
    help: str
    choices: Callable[[], Sequence[Any]] | None = None
    unset: str | None = None

    @property
    def dest(self) -> str:
        """The ``argparse`` destination."""
        return self.flag.lstrip("-").replace("-", "_")


RUN_OPTIONS: tuple[ConfigOption, ...] = (
    ConfigOption("--task", "task", "task to learn (`bayesym data list` shows them)"),
    ConfigOption(
        "--kind",
        "model.layer_kind",
        "layer kind of every block of the backbone",
        choices=layer_kinds,
    ),
    ConfigOption("--width", "model.width", "width multiplier a of the backbone"),
    ConfigOption("--epochs", "training.epochs", "training epochs"),
    ConfigOption("--batch-size", "training.batch_size", "mini-batch size of the MAP steps"),
    ConfigOption("--lr", "training.lr", "learning rate of the parameters (Adam, cosine to 0)"),
    ConfigOption("--burn-in", "training.burn_in", "epochs before the first hyper step"),
    ConfigOption("--hyper-every", "training.hyper_every", "epochs between hyper steps"),
    ConfigOption(
        "--hyper-steps", "training.hyper_steps", "Adam steps on the precisions per hyper step"
    ),
    ConfigOption(
        "--ggn", "training.kfac.ggn_type", "curvature: exact GGN, 1-sample MC or empirical"
    ),
    ConfigOption("--approx", "training.kfac.approx", "KFAC approximation of shared weights"),
    ConfigOption(
        "--marglik-subset",
        "training.marglik_subset",
        "compute the curvature on N images",
        unset="all training images",
    ),
    ConfigOption(
        "--marglik-batch-size",
        "training.marglik_batch_size",
        "batch size of the curvature pass (the factors do not depend on it)",
        unset="the training batch size on the CPU, at least 512 on a GPU",
    ),
    ConfigOption(
        "--train-subset",
        "train_subset",
        "train on a seeded subset of N images",
        unset="all training images",
    ),
    ConfigOption(
        "--seed", "training.seed", "seed of initialisation, task, shuffling and curvature"
    ),
    ConfigOption(
        "--root", "data_root", "Fashion-MNIST directory", unset="$BAYESYM_DATA or Debian's"
    ),
)
"""The table: every run option of ``bayesym fit`` (and, but for task and kind, of the demo)."""


def _field(config_type: type, path: str) -> tuple[Any, Any]:
    """The resolved type and the default of the field of ``config_type`` at ``path``."""
    first, *rest = path.split(".")
    (field,) = [f for f in dataclasses.fields(config_type) if f.name == first]
    default_factory: Any = field.default_factory
    value = field.default if default_factory is dataclasses.MISSING else default_factory()
    annotation = typing.get_type_hints(config_type)[first]
    for name in rest:
        annotation = typing.get_type_hints(annotation)[name]
        value = getattr(value, name)
    return annotation, value


def _positive_float(text: str) -> float:
    """A positive finite number (every float option is a rate or a scale)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _parser_and_choices(annotation: Any) -> tuple[Callable[[str], Any], tuple[Any, ...] | None]:
    """``argparse`` type and choices of a field annotation (``X | None`` parses as ``X``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return str, typing.get_args(annotation)
    if annotation is float:
        return _positive_float, None
    return annotation, None


def add_config_options(
    parser: argparse.ArgumentParser,
    options: Sequence[ConfigOption],
    config_type: type,
    *,
    exclude: Collection[str] = (),
) -> None:
    """Add every option of ``options`` (fields of ``config_type``) except the flags in ``exclude``.

    A field without a default makes a required option.
    """
    for option in options:
        if option.flag in exclude:
            continue
        annotation, default = _field(config_type, option.path)
        parse, choices = _parser_and_choices(annotation)
        if option.choices is not None:
            choices = tuple(option.choices())
        valid = f"; one of: {', '.join(map(str, choices))}" if choices else ""
        required = default is dataclasses.MISSING
        if required:
            shown = ""
        elif default is None:
            shown = f"default: {option.unset or 'none'}"
        else:
            shown = f"default: {default}"
        details = "; ".join(part for part in (shown, valid.removeprefix("; ")) if part)
        parser.add_argument(
            option.flag,
            type=parse,
            required=required,
            default=None if required else default,
            choices=choices,
            metavar=option.dest.upper() if choices and len(choices) > 4 else None,
            help=f"{option.help} ({details})" if details else option.help,
        )


def option_values(args: argparse.Namespace, options: Sequence[ConfigOption]) -> dict[str, Any]:
    """Field path -> parsed value of every option of ``options`` that ``args`` has."""
    return {o.path: getattr(args, o.dest) for o in options if hasattr(args, o.dest)}


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
    values = option_values(args, RUN_OPTIONS)
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


def add_session_options(
    parser: argparse.ArgumentParser, quiet_help: str = "no progress bar"
) -> None:
    """Add ``--quiet``, ``--device`` and ``--threads``: how a run is shown and where it runs."""
    parser.add_argument("--quiet", action="store_true", help=quiet_help)
    parser.add_argument(
        "--device", default="cpu", help="where to train: cpu (default), cuda or cuda:N"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch intra-op threads (default: {DEFAULT_THREADS}, fast on a machine whose "
        "cores other processes share; more can pay for wide networks on idle cores)",
    )


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads to ``threads`` (``None``: :data:`DEFAULT_THREADS`).

    Raises:
        CliError: if ``threads`` is below 1.
    """
    if threads is not None and threads < 1:
        raise CliError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(DEFAULT_THREADS if threads is None else threads)


def _first_hyper_epoch(config: RunConfig) -> int:
    training = config.training
    return next(
        e + 1
        for e in range(training.burn_in + training.hyper_every + 1)
        if training.is_hyper_epoch(e)
    )


def check_run_config(config: RunConfig, *, map_flag: bool = True) -> None:
    """Refuse what would run but not do what it says, before anything is written.

    A marglik run whose epochs end before the first hyper step would learn no prior (and
    report no effective parameters); ``--group`` only applies to the group kinds.

    Raises:
        CliError: one line naming the options and the fix.
    """
    training = config.training
    if training.learn_prior and not any(training.is_hyper_epoch(e) for e in range(training.epochs)):
        first = _first_hyper_epoch(config)
        alternative = ", or pass --map to train without it" if map_flag else ""
        raise CliError(
            f"--epochs {training.epochs} ends before the first marginal-likelihood step (after "
            f"epoch {first}: --burn-in {training.burn_in}, --hyper-every "
            f"{training.hyper_every}), so no prior would be learned; use --epochs {first} or "
            f"more, or a smaller --burn-in{alternative}"
        )
    group = config.model.layer_options.get("group")
    if group is not None and not layer_kind(config.model.layer_kind).group_axis:
        group_kinds = [k for k in layer_kinds() if layer_kind(k).group_axis]
        raise CliError(
            f"--group {group} applies only to the group kinds ({', '.join(group_kinds)}); "
            f"--kind {config.model.layer_kind} has no group axis"
        )


GROUP_CHOICES = D4_SUBGROUP_NAMES
"""Valid ``--group`` values: the named subgroups of D4."""

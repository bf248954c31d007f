"""The checks of the selectors' configuration dataclasses, one wording per kind of check.

Each check reads fields of a configuration (from its ``__post_init__``) and raises
``ValueError("<Class>.<field> <requirement>, got <value>")``, naming the configuration's own
class (a subclass's name for a subclass's instance), e.g.
``RPPConfig.neq_prior must be positive and finite, got 0.0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from bayesym.checks import is_positive_int
from bayesym.marglik import MarglikConfig

__all__ = [
    "check_fields",
    "check_non_negative",
    "check_one_of",
    "check_optional_positive_int",
    "check_positive",
    "check_positive_int",
    "check_training",
]


def check_fields(
    config: object, names: Iterable[str], valid: Callable[[Any], bool], requirement: str
) -> None:
    """Refuse the first field of ``names`` whose value is not ``valid``.

    Raises:
        ValueError: ``"<Class>.<field> <requirement>, got <value>"``.
    """
    for name in names:
        value = getattr(config, name)
        if not valid(value):
            raise ValueError(f"{type(config).__name__}.{name} {requirement}, got {value!r}")


def check_positive(config: object, *names: str) -> None:
    """Every field of ``names`` is a finite number ``> 0``."""
    check_fields(
        config,
        names,
        lambda v: not isinstance(v, bool) and math.isfinite(v) and v > 0,
        "must be positive and finite",
    )


def check_non_negative(config: object, *names: str) -> None:
    """Every field of ``names`` is a finite number ``>= 0``."""
    check_fields(
        config,
        names,
        lambda v: not isinstance(v, bool) and math.isfinite(v) and v >= 0,
        "must be >= 0 and finite",
    )


def check_positive_int(config: object, *names: str) -> None:
    """Every field of ``names`` is an ``int >= 1`` (:func:`is_positive_int`)."""
    check_fields(config, names, is_positive_int, "must be a positive int")


def check_optional_positive_int(config: object, *names: str) -> None:
    """Every field of ``names`` is ``None`` or an ``int >= 1`` (:func:`is_positive_int`)."""
    check_fields(
        config, names, lambda v: v is None or is_positive_int(v), "must be a positive int or None"
    )


def check_one_of(config: object, name: str, choices: tuple[Any, ...]) -> None:
    """The field ``name`` is one of ``choices``."""
    check_fields(config, (name,), lambda v: v in choices, f"must be one of {choices}")


def check_training(config: Any, *, learn_prior: bool, why: str) -> None:
    """``config.training`` is a :class:`~bayesym.marglik.MarglikConfig` with ``learn_prior``.

    Raises:
        ValueError: ``"<Class>.training must be a MarglikConfig with learn_prior=<learn_prior>
            (<why>)"``.
    """
    training = config.training
    if not isinstance(training, MarglikConfig) or training.learn_prior != learn_prior:
        raise ValueError(
            f"{type(config).__name__}.training must be a MarglikConfig with "
            f"learn_prior={learn_prior} ({why})"
        )

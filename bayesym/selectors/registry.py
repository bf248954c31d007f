"""The registries: selector name -> selector class, space name -> space class.

One explicit table each. Adding a selector is one class (a :class:`~bayesym.selectors.base.Selector`
subclass with its frozen config dataclass) and one entry in :data:`SELECTORS`; adding a search
space is one :class:`~bayesym.selectors.spaces.base.SearchSpace` dataclass and one entry in
:data:`SPACES`. Lookups of unknown names raise ``ValueError`` listing the valid ones.
"""

from __future__ import annotations

from typing import Any

from bayesym.selectors.ace import ACEEqualitySelector, ACEResilientSelector
from bayesym.selectors.base import Selector
from bayesym.selectors.equinas_d import EquiNASDSelector
from bayesym.selectors.equinas_e import EquiNASESelector
from bayesym.selectors.marglik import MarglikSelector
from bayesym.selectors.rpp import RPPSelector
from bayesym.selectors.spaces.base import SearchSpace
from bayesym.selectors.spaces.d4 import D4SubgroupSpace
from bayesym.selectors.spaces.translation import TranslationSpace
from bayesym.selectors.static import StaticSelector

__all__ = ["SELECTORS", "SPACES", "make_selector", "make_space", "selector_names", "space_names"]

SELECTORS: dict[str, type[Selector]] = {
    StaticSelector.name: StaticSelector,
    MarglikSelector.name: MarglikSelector,
    RPPSelector.name: RPPSelector,
    EquiNASDSelector.name: EquiNASDSelector,
    EquiNASESelector.name: EquiNASESelector,
    ACEEqualitySelector.name: ACEEqualitySelector,
    ACEResilientSelector.name: ACEResilientSelector,
}
"""Registered selectors by name (the ``--selectors`` values of ``bayesym compare``)."""

SPACES: dict[str, type[SearchSpace]] = {
    TranslationSpace.name: TranslationSpace,
    D4SubgroupSpace.name: D4SubgroupSpace,
}
"""Registered search spaces by name (the ``--space`` values of ``bayesym compare``)."""


def selector_names() -> tuple[str, ...]:
    """The registered selector names, in registration order."""
    return tuple(SELECTORS)


def space_names() -> tuple[str, ...]:
    """The registered space names, in registration order."""
    return tuple(SPACES)


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    """``table[name]``, or a ``ValueError`` naming ``what`` and listing the registered names."""
    try:
        return table[name]
    except (KeyError, TypeError):
        known = ", ".join(table) or "none"
        raise ValueError(f"unknown {what} {name!r}; registered {what}s: {known}") from None


def make_selector(name: str, config: Any = None) -> Selector:
    """The selector ``name`` with ``config`` (default: its default configuration).

    Raises:
        ValueError: for an unknown name (the message lists the registered selectors).
    """
    return _lookup(SELECTORS, name, "selector")(config)


def make_space(name: str, **options: Any) -> SearchSpace:
    """The search space ``name`` built with ``options``.

    Raises:
        ValueError: for an unknown name (the message lists the registered spaces).
    """
    return _lookup(SPACES, name, "search space")(**options)

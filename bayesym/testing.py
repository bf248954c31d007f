"""Public utilities to test equivariance: ``f(g.x) == g.f(x)`` for every group element.

One line per test (after e3nn's ``assert_equivariant``)::

    assert_equivariant(layer, c4, x, image_action(c4), regular_action(c4))

``elements`` is a group object (every element is checked) or an iterable of element
indices. An action is any callable ``act(x, element) -> tensor``; the ready-made ones
(:func:`image_action`, :func:`regular_action`, :func:`translation_action`,
:func:`trivial_action`) know their group. When ``elements`` is a group ``E`` and an action
belongs to a group ``A`` with ``E <= A`` (same root), each element of ``E`` is mapped to
its index in ``A``, so ``assert_equivariant(f, c4, x, image_action(d4), ...)`` checks the
four rotations.

Tolerance: element ``g`` passes if ``max|f(g.x) - g.f(x)| <= atol + rtol · max|g.f(x)|``.
Defaults depend on the dtype of ``f(x)``: float64 ``atol = rtol = 1e-10``, float32
``1e-4``, float16/bfloat16 ``1e-2``. :func:`assert_not_equivariant` requires the error to
exceed ``margin`` times that tolerance (default ``margin = 100``) for at least one element
(``require="any"``) or for every element (``require="all"``).

Example:
    >>> import torch
    >>> from bayesym.groups import d4_subgroup
    >>> c4, d4 = d4_subgroup("C4"), d4_subgroup("D4")
    >>> x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    >>> assert_equivariant(torch.relu, d4, x, image_action(d4), image_action(d4))
    >>> upper = lambda t: t.triu()  # commutes with nothing but the identity
    >>> assert_not_equivariant(upper, [1, 2, 3], x, image_action(c4), image_action(c4))
    >>> equivariance_errors(torch.relu, c4, x, image_action(d4), image_action(d4))
    [0.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, Protocol

import torch
from torch import Tensor

from bayesym.groups.actions import ImageAction, RegularAction, TranslationAction, TrivialAction
from bayesym.groups.finite import FiniteGroup, inclusion, is_subgroup

__all__ = [
    "assert_equivariant",
    "assert_not_equivariant",
    "default_tolerances",
    "equivariance_errors",
    "image_action",
    "regular_action",
    "translation_action",
    "trivial_action",
]


class Action(Protocol):
    """``act(x, element) -> g.x``; optional attribute ``group`` (a ``FiniteGroup``)."""

    def __call__(self, x: Tensor, element: int) -> Tensor: ...


_TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (1e-2, 1e-2),
}


def default_tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """``(atol, rtol)`` for ``dtype`` (float64 1e-10, float32 1e-4, half types 1e-2).

    Raises:
        TypeError: For a non-floating dtype.
    """
    if dtype not in _TOLERANCES:
        raise TypeError(
            f"equivariance tests need a floating dtype (float16/bfloat16/float32/float64), "
            f"got {dtype}"
        )
    return _TOLERANCES[dtype]


def image_action(group: FiniteGroup) -> ImageAction:
    """Rotations/flips of ``G <= D4`` on images ``[..., H, H]``."""
    return ImageAction(group)


def regular_action(group: FiniteGroup) -> RegularAction:
    """Regular action of ``G <= D4`` on group feature maps ``[..., |G|, H, H]``."""
    return RegularAction(group)


def translation_action(group: FiniteGroup) -> TranslationAction:
    """Cyclic shifts (``torch.roll`` on dims -2, -1) of a translation group or subgroup."""
    return TranslationAction(group)


def trivial_action(group: FiniteGroup | None = None) -> TrivialAction:
    """``g.x = x``: the output action of an invariant function."""
    return TrivialAction(group)


def _action_group(act: Callable) -> FiniteGroup | None:
    group = getattr(act, "group", None)
    return group if isinstance(group, FiniteGroup) else None


def _element_indices(elements: FiniteGroup | Iterable[int], act: Callable, role: str) -> list:
    """Indices to pass to ``act`` for each element of ``elements``."""
    if not isinstance(elements, FiniteGroup):
        return [int(e) for e in elements]
    target = _action_group(act)
    if target is None or target is elements:
        return list(range(elements.order))
    if elements.root is not target.root or not is_subgroup(elements, target):
        raise ValueError(
            f"{role} acts with group {target.name!r}, which does not contain the tested "
            f"group {elements.name!r}"
        )
    return inclusion(elements, target).tolist()


def _element_label(elements, act_in: Callable, position: int, index: int) -> str:
    group = elements if isinstance(elements, FiniteGroup) else _action_group(act_in)
    if group is None:
        return f"element {index}"
    if isinstance(elements, FiniteGroup):
        return f"element {group.element_name(position)!r} of {group.name} (index {position})"
    return f"element {group.element_name(index)!r} of {group.name} (index {index})"


def _evaluate(
    fn: Callable[[Tensor], Tensor],
    elements: FiniteGroup | Iterable[int],
    x: Tensor,
    act_in: Action,
    act_out: Action,
) -> list[tuple[str, float, float]]:
    """``[(label, max abs error, max abs of g.f(x))]`` per element."""
    in_index = _element_indices(elements, act_in, "act_in")
    out_index = _element_indices(elements, act_out, "act_out")
    if len(in_index) != len(out_index):  # pragma: no cover - both come from `elements`
        raise RuntimeError("act_in and act_out received different numbers of elements")
    if not in_index:
        raise ValueError("equivariance test: no group elements given")
    results = []
    with torch.no_grad():
        fx = fn(x)
        if not isinstance(fx, Tensor):
            raise TypeError(f"equivariance test: fn must return a Tensor, got {type(fx)}")
        for position, (gi, go) in enumerate(zip(in_index, out_index, strict=True)):
            lhs = fn(act_in(x, gi))
            rhs = act_out(fx, go)
            if lhs.shape != rhs.shape:
                raise ValueError(
                    f"equivariance test: f(g.x) has shape {tuple(lhs.shape)} but g.f(x) has "
                    f"{tuple(rhs.shape)} for {_element_label(elements, act_in, position, gi)}"
                )
            if not (torch.isfinite(lhs).all() and torch.isfinite(rhs).all()):
                raise ValueError(
                    "equivariance test: non-finite values (NaN/inf) in the outputs for "
                    f"{_element_label(elements, act_in, position, gi)}"
                )
            error = (lhs - rhs).abs().max().item() if lhs.numel() else 0.0
            scale = rhs.abs().max().item() if rhs.numel() else 0.0
            results.append((_element_label(elements, act_in, position, gi), error, scale))
    return results


def equivariance_errors(
    fn: Callable[[Tensor], Tensor],
    elements: FiniteGroup | Iterable[int],
    x: Tensor,
    act_in: Action,
    act_out: Action,
) -> list[float]:
    """Max absolute error ``max|f(g.x) - g.f(x)|`` for each element, in order.

    Args:
        fn: The function (e.g. an ``nn.Module``) to test; called under ``torch.no_grad``.
        elements: A group (all its elements) or element indices.
        x: Input tensor.
        act_in: Action on inputs.
        act_out: Action on outputs.
    """
    return [error for _, error, _ in _evaluate(fn, elements, x, act_in, act_out)]


def _tolerances(x: Tensor, atol: float | None, rtol: float | None) -> tuple[float, float]:
    default_atol, default_rtol = default_tolerances(x.dtype)
    return (default_atol if atol is None else atol, default_rtol if rtol is None else rtol)


def assert_equivariant(
    fn: Callable[[Tensor], Tensor],
    elements: FiniteGroup | Iterable[int],
    x: Tensor,
    act_in: Action,
    act_out: Action,
    *,
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Assert ``f(g.x) == g.f(x)`` within tolerance for EVERY given element.

    Args:
        fn: Function under test, called under ``torch.no_grad``.
        elements: A group object (all its elements) or an iterable of element indices.
        x: Input, e.g. ``[N, C, H, W]``; its dtype picks the default tolerances.
        act_in: Action on inputs, ``act_in(x, element)``.
        act_out: Action on outputs (``trivial_action()`` for invariance).
        atol: Absolute tolerance (default: dtype-dependent, module docstring).
        rtol: Tolerance relative to ``max|g.f(x)|`` (default: dtype-dependent).

    Raises:
        AssertionError: Naming the first failing element, its error and the tolerance, and
            listing every failing element.
        ValueError: Shape mismatch between ``f(g.x)`` and ``g.f(x)``, non-finite outputs,
            or an action whose group does not contain the tested group.
    """
    atol, rtol = _tolerances(x, atol, rtol)
    failures = []
    for label, error, scale in _evaluate(fn, elements, x, act_in, act_out):
        tolerance = atol + rtol * scale
        if not error <= tolerance:
            failures.append(f"{label}: max error {error:.3e} > tolerance {tolerance:.3e}")
    if failures:
        raise AssertionError(
            f"not equivariant for {len(failures)} element(s) (dtype {x.dtype}); "
            + "; ".join(failures)
        )


def assert_not_equivariant(
    fn: Callable[[Tensor], Tensor],
    elements: FiniteGroup | Iterable[int],
    x: Tensor,
    act_in: Action,
    act_out: Action,
    *,
    require: Literal["any", "all"] = "any",
    margin: float = 100.0,
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Assert that equivariance is *clearly* broken.

    An element "clearly breaks" equivariance if its error exceeds
    ``margin · (atol + rtol · max|g.f(x)|)``.

    Args:
        fn: Function under test.
        elements: A group object or element indices.
        x: Input.
        act_in: Action on inputs.
        act_out: Action on outputs.
        require: ``"any"``: at least one element must clearly break equivariance;
            ``"all"``: every element must.
        margin: Factor above the equivariance tolerance (default 100).
        atol: Absolute tolerance (default dtype-dependent).
        rtol: Relative tolerance (default dtype-dependent).

    Raises:
        AssertionError: If the requirement is not met (names the elements that look
            equivariant and their errors).
        ValueError: Bad ``require`` or ``margin``.
    """
    if require not in ("any", "all"):
        raise ValueError(f"assert_not_equivariant: require must be 'any' or 'all', got {require!r}")
    if not margin >= 1:
        raise ValueError(f"assert_not_equivariant: margin must be >= 1, got {margin!r}")
    atol, rtol = _tolerances(x, atol, rtol)
    results = _evaluate(fn, elements, x, act_in, act_out)
    broken = [error > margin * (atol + rtol * scale) for _, error, scale in results]
    ok = any(broken) if require == "any" else all(broken)
    if not ok:
        looks_equivariant = [
            f"{label}: max error {error:.3e}"
            for (label, error, _), b in zip(results, broken, strict=True)
            if not b
        ]
        raise AssertionError(
            f"expected equivariance to be clearly broken (require={require!r}, margin "
            f"{margin:g} x tolerance) but these elements look equivariant: "
            + "; ".join(looks_equivariant)
        )

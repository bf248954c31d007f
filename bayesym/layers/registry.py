"""Layer-kind registry: one explicit table ``kind -> factory`` with one signature.

Every factory is called as ``factory(in_channels, out_channels, spatial=(H, W),
kernel_size=S, **options)`` and returns a module mapping ``[N, C_in, H, W]`` to
``[N, C_out, H, W]``. Adding a layer kind is one entry in :data:`LAYER_KINDS` (or one call
to :func:`register_layer_kind`). Options a kind does not know raise ``TypeError`` naming
the kind.

Kinds:

* ``"fc"``: :class:`~bayesym.layers.dense.SpatialLinear` (``kernel_size`` unused);
* ``"conv"``: :class:`~bayesym.layers.conv.SpatialConv2d`;
* ``"ffc"``: :class:`~bayesym.layers.factored.FactoredLinear` (``kernel_size`` unused);
* ``"sfc"``: :class:`~bayesym.layers.sparse.SparseFactoredLinear` (``kernel_size`` unused);
* ``"sconv"``: :class:`~bayesym.layers.sparse.SparseConv2d`;
* ``"fc+conv"``, ``"ffc+conv"``, ``"sfc+sconv"``: relaxed :class:`~bayesym.layers.paths.PathSum`
  layers from :mod:`bayesym.layers.paths`; ``"conv+fc"``: CONV + FC with a per-unit FC bias
  (residual pathway priors);
* ``"homotopic-conv-ffc"``: ACE's ``conv(x) + γ ffc(x)``
  (:class:`~bayesym.layers.homotopic.HomotopicLayer`, paths ``"eq"`` and ``"neq"``);
* group kinds (``group_axis=True``), mapping group feature maps ``[N, C_in, |G|, H, W]`` to
  ``[N, C_out, |G|, H, W]`` (images ``[N, C_in, H, W]`` with the option ``lifting=True``)
  and accepting ``group`` (a D4 subgroup or its name, default ``"C4"``):
  ``"gconv"`` (:class:`~bayesym.layers.group_conv.GroupConv2d` /
  :class:`~bayesym.layers.group_conv.LiftingConv2d`), ``"conv+gconv"`` and
  ``"ffc+conv+gconv"`` from :mod:`bayesym.layers.group_paths`; and with the layer-wise
  paper's own GCONV (one convolution shared over the rotated copies,
  :class:`~bayesym.layers.pointwise_group_conv.PointwiseGroupConv2d`) ``"pgconv"``,
  ``"conv+pgconv"`` and ``"ffc+conv+pgconv"``, whose networks max-pool over the group axis
  before the head as the paper's model does (``group_pooling="max"``); ACE's
  ``"homotopic-gconv-conv"`` and ``"homotopic-pgconv-conv"`` (GCONV, or the paper's GCONV,
  + γ CONV on the merged axes, :func:`~bayesym.layers.homotopic.homotopic_gconv_conv`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

from torch import nn

from bayesym.layers.conv import SpatialConv2d
from bayesym.layers.dense import SpatialLinear
from bayesym.layers.factored import FactoredLinear
from bayesym.layers.group_paths import (
    conv_plus_gconv,
    conv_plus_pgconv,
    ffc_plus_conv_plus_gconv,
    ffc_plus_conv_plus_pgconv,
    group_conv_layer,
)
from bayesym.layers.homotopic import homotopic_conv_ffc, homotopic_gconv_conv
from bayesym.layers.paths import conv_plus_fc, fc_plus_conv, ffc_plus_conv, sfc_plus_sconv
from bayesym.layers.sparse import SparseConv2d, SparseFactoredLinear

__all__ = [
    "GROUP_POOLINGS",
    "LAYER_KINDS",
    "LayerFactory",
    "LayerKind",
    "layer_kind",
    "layer_kinds",
    "make_layer",
    "register_layer_kind",
]


class LayerFactory(Protocol):
    """``(in_channels, out_channels, *, spatial, kernel_size, **options) -> nn.Module``."""

    def __call__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial: tuple[int, int],
        kernel_size: int,
        **options: Any,
    ) -> nn.Module:
        """Build the layer."""
        ...


def _sized(build: Callable[..., nn.Module]) -> LayerFactory:
    """The factory of a kind built for one ``spatial`` size (FC kinds: ``kernel_size`` unused)."""

    def factory(in_channels, out_channels, *, spatial, kernel_size, **options):
        return build(in_channels, out_channels, spatial=spatial, **options)

    return factory


def _any_size(build: Callable[..., nn.Module], **fixed: Any) -> LayerFactory:
    """The factory of a convolutional kind, which takes maps of any size (``spatial`` unused).

    ``fixed`` are options of the kind itself, passed before the caller's (repeating one is a
    ``TypeError``).
    """

    def factory(in_channels, out_channels, *, spatial, kernel_size, **options):
        return build(in_channels, out_channels, kernel_size=kernel_size, **fixed, **options)

    return factory


GroupPooling = Literal["mean", "max"]
GROUP_POOLINGS: tuple[str, ...] = ("mean", "max")
"""How a network of a group kind pools its last feature maps over the group axis."""


@dataclass(frozen=True)
class LayerKind:
    """One registry entry.

    Attributes:
        factory: builds the layer (:class:`LayerFactory` signature).
        group_axis: the layer maps group feature maps ``[N, C, |G|, H, W]`` (``C`` channels
            per group element); its factory accepts ``group`` and ``lifting`` (``True`` for the
            first layer of a network, whose input is an image).
        group_pooling: how a network of this kind pools over the group axis before its head
            by default (``"mean"``, or ``"max"`` as the layer-wise paper's model); only
            meaningful with ``group_axis``.
    """

    factory: LayerFactory
    group_axis: bool = False
    group_pooling: GroupPooling = "mean"

    def __post_init__(self) -> None:
        if not callable(self.factory):
            raise TypeError(f"LayerKind: factory must be callable, got {self.factory!r}")
        if not isinstance(self.group_axis, bool):
            raise TypeError(f"LayerKind: group_axis must be a bool, got {self.group_axis!r}")
        if self.group_pooling not in GROUP_POOLINGS:
            raise ValueError(
                f"LayerKind: group_pooling must be one of {GROUP_POOLINGS}, "
                f"got {self.group_pooling!r}"
            )


LAYER_KINDS: dict[str, LayerKind] = {
    "fc": LayerKind(_sized(SpatialLinear)),
    "conv": LayerKind(_any_size(SpatialConv2d)),
    "ffc": LayerKind(_sized(FactoredLinear)),
    "sfc": LayerKind(_sized(SparseFactoredLinear)),
    "sconv": LayerKind(_any_size(SparseConv2d)),
    "fc+conv": LayerKind(fc_plus_conv),
    "ffc+conv": LayerKind(ffc_plus_conv),
    "sfc+sconv": LayerKind(sfc_plus_sconv),
    "conv+fc": LayerKind(conv_plus_fc),
    "homotopic-conv-ffc": LayerKind(homotopic_conv_ffc),
    "gconv": LayerKind(_any_size(group_conv_layer), group_axis=True),
    "conv+gconv": LayerKind(conv_plus_gconv, group_axis=True),
    "ffc+conv+gconv": LayerKind(ffc_plus_conv_plus_gconv, group_axis=True),
    "pgconv": LayerKind(
        _any_size(group_conv_layer, pointwise=True), group_axis=True, group_pooling="max"
    ),
    "conv+pgconv": LayerKind(conv_plus_pgconv, group_axis=True, group_pooling="max"),
    "ffc+conv+pgconv": LayerKind(ffc_plus_conv_plus_pgconv, group_axis=True, group_pooling="max"),
    "homotopic-gconv-conv": LayerKind(homotopic_gconv_conv, group_axis=True),
    "homotopic-pgconv-conv": LayerKind(
        partial(homotopic_gconv_conv, group_path="pgconv"), group_axis=True, group_pooling="max"
    ),
}
"""The registry: layer kind -> :class:`LayerKind` (factory and feature-map layout)."""


def layer_kinds() -> tuple[str, ...]:
    """The registered kinds, in registration order."""
    return tuple(LAYER_KINDS)


def layer_kind(kind: str) -> LayerKind:
    """The registry entry of ``kind``.

    Raises:
        ValueError: for an unknown kind (the message lists the known ones).
    """
    try:
        return LAYER_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown layer kind {kind!r}; known kinds: {list(LAYER_KINDS)}") from None


def register_layer_kind(
    kind: str,
    factory: LayerFactory,
    *,
    group_axis: bool = False,
    replace: bool = False,
    group_pooling: GroupPooling = "mean",
) -> None:
    """Add ``kind`` to :data:`LAYER_KINDS`.

    Args:
        kind: the new kind's name.
        factory: callable with the :class:`LayerFactory` signature.
        group_axis: see :class:`LayerKind`.
        replace: allow overwriting an existing kind.
        group_pooling: see :class:`LayerKind`.

    Raises:
        ValueError: if ``kind`` exists and ``replace`` is False, or is not a non-empty string.
        TypeError: if ``factory`` is not callable.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"register_layer_kind: kind must be a non-empty string, got {kind!r}")
    if not callable(factory):
        raise TypeError(f"register_layer_kind: factory for {kind!r} is not callable")
    if kind in LAYER_KINDS and not replace:
        raise ValueError(f"register_layer_kind: kind {kind!r} already exists (pass replace=True)")
    LAYER_KINDS[kind] = LayerKind(factory, group_axis=group_axis, group_pooling=group_pooling)


def make_layer(
    kind: str,
    in_channels: int,
    out_channels: int,
    *,
    spatial: tuple[int, int],
    kernel_size: int = 3,
    **options: Any,
) -> nn.Module:
    """Build a layer of a registered kind.

    Args:
        kind: a key of :data:`LAYER_KINDS`.
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        spatial: ``(H, W)`` of input and output.
        kernel_size: filter size of convolutional kinds (ignored by FC kinds).
        **options: forwarded to the factory (e.g. ``bias``, ``padding_mode``, ``num_anchors``).

    Returns:
        The layer, mapping ``[N, C_in, H, W] -> [N, C_out, H, W]``.

    Raises:
        ValueError: for an unknown kind (the message lists the known ones).
        TypeError: for an option the kind does not accept.

    Example:
        >>> layer = make_layer("ffc+conv", 2, 4, spatial=(8, 8))
        >>> list(layer.paths)
        ['ffc', 'conv']
    """
    try:
        factory = layer_kind(kind).factory
    except ValueError as err:
        raise ValueError(f"make_layer: {err}") from None
    try:
        return factory(
            in_channels, out_channels, spatial=spatial, kernel_size=kernel_size, **options
        )
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            raise TypeError(f"make_layer: layer kind {kind!r} does not accept {err}") from err
        raise

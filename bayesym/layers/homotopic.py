r"""ACE homotopic layers: ``f(x) = f_eq(x) + gamma * f_neq(x)`` (Manolache, Chamon & Niepert).

The homotopy parameter ``gamma`` (one per layer, initialised at 1) interpolates between the
exactly equivariant map ``f_eq`` (``gamma = 0``) and the least constrained one (``gamma = 1``).
ACE trains ``gamma`` under the equality constraint ``gamma = 0`` (dual ascent) or a resilient
relaxation ``|gamma| <= u``; :func:`homotopy_parameters` finds every ``gamma`` of a model for
such optimisers.

Kinds (registered in :mod:`bayesym.layers.registry`):

* :func:`homotopic_conv_ffc` (``"homotopic-conv-ffc"``): CONV + γ F-FC on ``[N, C, H, W]``,
  translation-equivariant at ``gamma = 0``;
* :func:`homotopic_gconv_conv` (``"homotopic-gconv-conv"``) and ``"homotopic-pgconv-conv"``:
  a group convolution over ``G <= D4`` (full, or the layer-wise paper's pointwise one) + γ a
  plain convolution on the merged channel and group axes, on group feature maps
  ``[N, C, |G|, H, W]`` (images as the lifting first layer); equivariant to ``G`` and the
  cyclic shifts at ``gamma = 0``, to the cyclic shifts only otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from bayesym.layers._checks import check_finite_float
from bayesym.layers.group_paths import group_path_sum
from bayesym.layers.paths import PathSum, path_sum, path_symmetry
from bayesym.layers.symmetry import LayerSymmetry

__all__ = [
    "HOMOTOPY_PARAMETER_NAME",
    "HomotopicLayer",
    "equivariant_projection",
    "homotopic_conv_ffc",
    "homotopic_from_paths",
    "homotopic_gconv_conv",
    "homotopy_parameters",
]

HOMOTOPY_PARAMETER_NAME = "homotopy_gamma"
"""Attribute name of the homotopy parameter in every :class:`HomotopicLayer`."""


class HomotopicLayer(PathSum):
    r"""``f(x) = f_eq(x) + gamma * f_neq(x)`` with a learnable scalar ``gamma`` (ACE).

    The two maps are the paths ``"eq"`` and ``"neq"`` of :class:`PathSum` (same layouts,
    including group axes), so priors and reports can address them like any relaxed layer.
    At ``gamma = 0`` the layer is exactly as equivariant as ``f_eq``; the equivariance error
    grows at most linearly in ``|gamma|``.

    Args:
        equivariant: ``f_eq``.
        non_equivariant: ``f_neq``.
        gamma_init: initial ``gamma`` (ACE starts at 1).
        group_paths: subset of ``{"eq", "neq"}`` taking group feature maps (see
            :class:`PathSum`).
        in_group_size: see :class:`PathSum`.
        out_group_size: see :class:`PathSum`.

    Attributes:
        homotopy_gamma: ``[]`` parameter ``gamma``.

    Example:
        >>> from bayesym.layers.conv import SpatialConv2d
        >>> from bayesym.layers.factored import FactoredLinear
        >>> _ = torch.manual_seed(0)
        >>> layer = HomotopicLayer(SpatialConv2d(2, 2), FactoredLinear(2, 2, spatial=(4, 4)))
        >>> layer.homotopy_gamma.item(), layer.equivariant_symmetry.describe()
        (1.0, 'translations')
    """

    def __init__(
        self,
        equivariant: nn.Module,
        non_equivariant: nn.Module,
        *,
        gamma_init: float = 1.0,
        group_paths: tuple[str, ...] = (),
        in_group_size: int | None = None,
        out_group_size: int | None = None,
    ) -> None:
        super().__init__(
            {"eq": equivariant, "neq": non_equivariant},
            group_paths=group_paths,
            in_group_size=in_group_size,
            out_group_size=out_group_size,
        )
        gamma = check_finite_float(gamma_init, name="gamma_init", owner=type(self).__name__)
        self.homotopy_gamma = nn.Parameter(torch.tensor(gamma))

    @property
    def equivariant_symmetry(self) -> LayerSymmetry:
        """Symmetry of ``f_eq``: what the layer obeys exactly at ``gamma = 0``."""
        return path_symmetry(self.paths["eq"])

    def strict_symmetry(self) -> LayerSymmetry:
        """Symmetry of ``f_eq`` if ``gamma == 0`` or ``f_neq`` is zero, else of the whole layer."""
        if bool(self.homotopy_gamma.detach() == 0) or "neq" not in self.active_paths():
            return self.equivariant_symmetry
        return self.symmetry

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f_eq(x) + gamma * f_neq(x)`` in the layout of :class:`PathSum`."""
        outputs = self.path_outputs(x)
        return outputs["eq"] + self.homotopy_gamma * outputs["neq"]


def homotopy_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every homotopy parameter ``gamma`` of ``model``, keyed by its qualified name.

    Args:
        model: any module tree.

    Returns:
        ``{"<module path>.homotopy_gamma": parameter}`` in module order.

    Example:
        >>> from bayesym.layers.conv import SpatialConv2d
        >>> net = nn.Sequential(HomotopicLayer(SpatialConv2d(1, 1), SpatialConv2d(1, 1, 1)))
        >>> list(homotopy_parameters(net))
        ['0.homotopy_gamma']
    """
    found: dict[str, nn.Parameter] = {}
    for name, module in model.named_modules():
        if isinstance(module, HomotopicLayer):
            prefix = f"{name}." if name else ""
            found[prefix + HOMOTOPY_PARAMETER_NAME] = module.homotopy_gamma
    return found


@contextmanager
def equivariant_projection(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every ``gamma`` of ``model`` is 0 (ACE's ``f_eq`` evaluation).

    The values are restored on exit, also after an exception.

    Example:
        >>> from bayesym.layers.conv import SpatialConv2d
        >>> net = nn.Sequential(HomotopicLayer(SpatialConv2d(1, 1), SpatialConv2d(1, 1, 1)))
        >>> with equivariant_projection(net):
        ...     net[0].homotopy_gamma.item()
        0.0
        >>> net[0].homotopy_gamma.item()
        1.0
    """
    gammas = list(homotopy_parameters(model).values())
    saved = [g.detach().clone() for g in gammas]
    try:
        with torch.no_grad():
            for g in gammas:
                g.zero_()
        yield model
    finally:
        with torch.no_grad():
            for g, value in zip(gammas, saved, strict=True):
                g.copy_(value)


def homotopic_conv_ffc(
    in_channels: int,
    out_channels: int,
    *,
    spatial: tuple[int, int],
    gamma_init: float = 1.0,
    **options: Any,
) -> HomotopicLayer:
    """ACE's homotopic CONV / F-FC layer ``conv(x) + γ ffc(x)`` on ``[N, C, H, W]`` maps.

    The paths are those of :func:`~bayesym.layers.paths.path_sum` with kinds
    ``("conv", "ffc")``: ``"eq"`` the convolution (with the per-channel bias), ``"neq"`` the
    bias-free F-FC. Exactly translation-equivariant (circular padding) at ``γ = 0``.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        spatial: ``(H, W)``.
        gamma_init: initial ``γ``.
        **options: ``kernel_size``, ``padding_mode``, ``bias`` of
            :func:`~bayesym.layers.paths.path_sum`.
    """
    relaxed = path_sum(("conv", "ffc"), in_channels, out_channels, spatial=spatial, **options)
    return homotopic_from_paths(relaxed, "conv", "ffc", gamma_init=gamma_init)


def homotopic_from_paths(
    layer: PathSum, eq: str, neq: str, *, gamma_init: float = 1.0
) -> HomotopicLayer:
    """The homotopic layer ``layer.paths[eq] + γ layer.paths[neq]`` of a two-path layer.

    The path modules are reused (not copied) with their layouts: a path that takes group
    feature maps in ``layer`` does so in the result.

    Raises:
        ValueError: unless ``layer`` has exactly the paths ``eq`` and ``neq``.
    """
    if set(layer.paths) != {eq, neq} or eq == neq:
        raise ValueError(
            f"homotopic_from_paths: needs a layer with exactly the paths {eq!r} and {neq!r}, "
            f"got {list(layer.paths)}"
        )
    roles = {eq: "eq", neq: "neq"}
    return HomotopicLayer(
        layer.paths[eq],
        layer.paths[neq],
        gamma_init=gamma_init,
        group_paths=tuple(roles[name] for name in layer.group_paths),
        in_group_size=layer.in_group_size,
        out_group_size=layer.out_group_size,
    )


def homotopic_gconv_conv(
    in_channels: int,
    out_channels: int,
    *,
    spatial: tuple[int, int],
    kernel_size: int = 3,
    group_path: str = "gconv",
    gamma_init: float = 1.0,
    **options: Any,
) -> HomotopicLayer:
    """ACE's homotopic GCONV / CONV layer ``gconv(x) + γ conv(x)`` on group feature maps.

    The paths are those of :func:`~bayesym.layers.group_paths.group_path_sum` with kinds
    ``(group_path, "conv")``: ``"eq"`` the group convolution over ``group`` (with the
    per-channel bias; ``group_path="pgconv"``: the pointwise one), ``"neq"`` a bias-free
    convolution on the merged channel/group axes ``[N, C_in |G|, H, W] -> [N, C_out |G|, H, W]``.
    Exactly equivariant to ``group`` and the cyclic shifts at ``γ = 0``.

    Args:
        in_channels: ``C_in`` per group element (image channels when ``lifting``).
        out_channels: ``C_out`` per group element.
        spatial: ``(H, W)``.
        kernel_size: filter size of both paths.
        group_path: ``"gconv"`` or ``"pgconv"``.
        gamma_init: initial ``γ``.
        **options: ``group``, ``lifting``, ``padding_mode``, ``bias`` of
            :func:`~bayesym.layers.group_paths.group_path_sum`.

    Example:
        >>> layer = homotopic_gconv_conv(2, 3, spatial=(4, 4), group="D4")
        >>> layer(torch.randn(1, 2, 8, 4, 4)).shape, layer.equivariant_symmetry.describe()
        (torch.Size([1, 3, 8, 4, 4]), 'translations x D4')
    """
    if group_path not in ("gconv", "pgconv"):
        raise ValueError(
            f"homotopic_gconv_conv: group_path must be 'gconv' or 'pgconv', got {group_path!r}"
        )
    relaxed = group_path_sum(
        (group_path, "conv"), in_channels, out_channels, spatial=spatial,
        kernel_size=kernel_size, **options,
    )  # fmt: skip
    return homotopic_from_paths(relaxed, group_path, "conv", gamma_init=gamma_init)

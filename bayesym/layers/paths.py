r"""Relaxed layers as sums of named paths (Eq. (4), Eq. (10), Eq. (11) of the layer-wise paper).

A relaxed layer is ``y = sum_k f_k(x)`` where each path ``f_k`` is a leaf layer with its own
parameters (FC, F-FC, S-FC, CONV, S-CONV, GCONV, ...). Every path is a submodule of the
``nn.ModuleDict`` named ``paths``, keyed by the path's kind (``"fc"``, ``"conv"``, ...), so a
prior can be attached per (layer, path) — e.g. ``N(0, sigma^2 I)`` on the non-equivariant
path, whose zero-variance limit gives strict equivariance (Eq. (8)).

Feature-map layouts. Without a group axis every path maps ``[N, C_in, H, W]`` to
``[N, C_out, H, W]``. With a group axis (relaxations of group convolutions, App. A/B) the
layer maps ``[N, C_in, G_in, H, W]`` to ``[N, C_out, G_out, H, W]`` (``G_in`` omitted for a
lifting layer, whose input is a plain image): *group paths* (e.g. GCONV) see these tensors
as they are, while *plain paths* (FC, F-FC, CONV, ...) see the channel and group axes merged,
``[N, C_in * G_in, H, W] -> [N, C_out * G_out, H, W]``, with merged channel index
``c * G + g``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from bayesym.checks import check_positive_int
from bayesym.layers._checks import check_input_shape
from bayesym.layers.conv import PaddingMode, SpatialConv2d
from bayesym.layers.dense import SpatialLinear
from bayesym.layers.factored import FactoredLinear
from bayesym.layers.sparse import SparseConv2d, SparseFactoredLinear
from bayesym.layers.symmetry import TRIVIAL_SYMMETRY, LayerSymmetry, meet_symmetries

__all__ = [
    "PLAIN_PATH_KINDS",
    "PathSum",
    "conv_plus_fc",
    "fc_plus_conv",
    "ffc_plus_conv",
    "path_sum",
    "path_symmetry",
    "plain_path",
    "sfc_plus_sconv",
]


def path_symmetry(module: nn.Module) -> LayerSymmetry:
    """The ``symmetry`` attribute of ``module``, or trivial if it does not declare one.

    Args:
        module: any layer.

    Returns:
        Its :class:`LayerSymmetry`.

    Raises:
        TypeError: if ``module.symmetry`` exists but is not a :class:`LayerSymmetry`.
    """
    symmetry = getattr(module, "symmetry", None)
    if symmetry is None:
        return TRIVIAL_SYMMETRY
    if not isinstance(symmetry, LayerSymmetry):
        raise TypeError(
            f"{type(module).__name__}.symmetry must be a LayerSymmetry, "
            f"got {type(symmetry).__name__}"
        )
    return symmetry


class PathSum(nn.Module):
    r"""A relaxed layer: the sum of named parallel paths, ``y = sum_k paths[k](x)``.

    The sum is exactly equivariant to whatever *all* paths are equivariant to
    (:attr:`symmetry`); setting the parameters of the non-equivariant paths to zero leaves a
    layer with the symmetry of the remaining paths. See the module docstring for the
    feature-map layouts with a group axis.

    Args:
        paths: name -> layer, at least one. Names become keys of ``self.paths``.
        group_paths: names of paths that take/return group feature maps as they are.
        in_group_size: ``G_in`` if the input has a group axis ``[N, C, G_in, H, W]``.
        out_group_size: ``G_out`` if the output has a group axis ``[N, C', G_out, H, W]``.

    Raises:
        ValueError: on no paths, a bad name, unknown group path names, or group paths without
            group sizes.

    Attributes:
        paths: ``nn.ModuleDict`` of the paths.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = ffc_plus_conv(2, 3, spatial=(4, 4))
        >>> list(layer.paths), layer.symmetry.describe()
        (['ffc', 'conv'], 'none')
        >>> with torch.no_grad():
        ...     for p in layer.paths["ffc"].parameters():
        ...         _ = p.zero_()
        >>> layer.strict_symmetry().describe()
        'translations'
    """

    def __init__(
        self,
        paths: Mapping[str, nn.Module],
        *,
        group_paths: Collection[str] = (),
        in_group_size: int | None = None,
        out_group_size: int | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if not isinstance(paths, Mapping) or len(paths) == 0:
            raise ValueError(f"{owner}: paths must be a non-empty mapping name -> module")
        for name, module in paths.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"{owner}: path names must be identifiers, got {name!r}")
            if not isinstance(module, nn.Module):
                raise TypeError(
                    f"{owner}: path {name!r} must be an nn.Module, got {type(module).__name__}"
                )
        unknown = set(group_paths) - set(paths)
        if unknown:
            raise ValueError(
                f"{owner}: group_paths {sorted(unknown)} are not among the paths {list(paths)}"
            )
        if group_paths and out_group_size is None:
            raise ValueError(f"{owner}: group paths {sorted(group_paths)} need out_group_size")
        if in_group_size is not None:
            check_positive_int(in_group_size, name="in_group_size", owner=owner)
        if out_group_size is not None:
            check_positive_int(out_group_size, name="out_group_size", owner=owner)
        self.paths = nn.ModuleDict(dict(paths))
        self.group_paths: tuple[str, ...] = tuple(
            name for name in paths if name in set(group_paths)
        )
        self.in_group_size = in_group_size
        self.out_group_size = out_group_size

    @property
    def path_symmetries(self) -> dict[str, LayerSymmetry]:
        """Name -> symmetry of each path."""
        return {name: path_symmetry(module) for name, module in self.paths.items()}

    @property
    def symmetry(self) -> LayerSymmetry:
        """What every path is equivariant to: the symmetry of the layer as a whole."""
        return meet_symmetries(self.path_symmetries.values())

    def active_paths(self) -> list[str]:
        """Names of paths with at least one non-zero parameter (paths without parameters count)."""
        active = []
        for name, module in self.paths.items():
            params = list(module.parameters())
            if not params or any(bool(p.detach().ne(0).any()) for p in params):
                active.append(name)
        return active

    def strict_symmetry(self) -> LayerSymmetry:
        """The symmetry of the paths that are currently switched on (non-zero parameters).

        A path whose parameters are all zero contributes nothing, so the layer is exactly
        equivariant to what the remaining paths share.
        """
        active = self.active_paths()
        if not active:
            return self.symmetry
        symmetries = self.path_symmetries
        return meet_symmetries(symmetries[name] for name in active)

    def _flatten_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_group_size is None:
            return x
        check_input_shape(
            x,
            ("N", "C", self.in_group_size, "H", "W"),
            owner=type(self).__name__,
            what="a group feature map",
        )
        return x.flatten(1, 2)

    def path_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each path's output, all in the layer's output layout.

        Args:
            x: ``[N, C_in, H, W]`` or ``[N, C_in, G_in, H, W]``.

        Returns:
            name -> ``[N, C_out, H, W]`` or ``[N, C_out, G_out, H, W]``.

        Raises:
            ValueError: if the paths disagree on the output shape (names both paths).
        """
        flat = self._flatten_input(x)
        outputs: dict[str, torch.Tensor] = {}
        for name, module in self.paths.items():
            if name in self.group_paths:
                y = module(x)
            else:
                y = module(flat)
                if self.out_group_size is not None:
                    if y.dim() != 4 or y.shape[1] % self.out_group_size:
                        raise ValueError(
                            f"{type(self).__name__}: plain path {name!r} returned "
                            f"{list(y.shape)}, whose channel count is not a multiple of "
                            f"out_group_size={self.out_group_size}"
                        )
                    y = y.unflatten(1, (-1, self.out_group_size))
            outputs[name] = y
        names = list(outputs)
        first = outputs[names[0]]
        for name in names[1:]:
            if outputs[name].shape != first.shape:
                raise ValueError(
                    f"{type(self).__name__}: path {name!r} returned {list(outputs[name].shape)}"
                    f" but path {names[0]!r} returned {list(first.shape)}"
                )
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of the paths' outputs (see :meth:`path_outputs` for shapes)."""
        outputs = iter(self.path_outputs(x).values())
        y = next(outputs)
        for other in outputs:
            y = y + other
        return y

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        if self.out_group_size is None:
            return ""
        return (
            f"group_paths={self.group_paths}, in_group_size={self.in_group_size}, "
            f"out_group_size={self.out_group_size}"
        )


PLAIN_PATH_KINDS: tuple[str, ...] = ("fc", "ffc", "sfc", "conv", "sconv")
"""Path kinds without a group axis; ``conv`` and ``sconv`` are translation-equivariant."""

_EQUIVARIANT_KINDS = ("conv", "sconv")


def plain_path(
    kind: str,
    in_channels: int,
    out_channels: int,
    *,
    spatial: tuple[int, int],
    kernel_size: int = 3,
    padding_mode: PaddingMode = "circular",
    bias: bool | Literal["unit"] = False,
    num_anchors_fc: int | None = None,
    num_anchors_conv: int | None = None,
    omega: float = 1.0,
    learnable_anchors: bool = False,
    learnable_omega: bool = False,
) -> nn.Module:
    """One path of kind ``kind`` (:data:`PLAIN_PATH_KINDS`) on ``[N, C, H, W]`` feature maps.

    ``bias``: ``True`` for a per-output-channel bias, ``"unit"`` (``"fc"`` only) for one per
    output unit. The anchor options apply to ``"sfc"`` (``num_anchors_fc``) and ``"sconv"``
    (``num_anchors_conv``); ``padding_mode`` and ``kernel_size`` to the convolutions.

    Raises:
        ValueError: for an unknown kind (listing :data:`PLAIN_PATH_KINDS`).
    """
    anchors: dict[str, Any] = dict(
        omega=omega, learnable_anchors=learnable_anchors, learnable_omega=learnable_omega
    )
    if kind == "fc":
        return SpatialLinear(in_channels, out_channels, spatial=spatial, bias=bias)
    if kind == "ffc":
        return FactoredLinear(in_channels, out_channels, spatial=spatial, bias=bool(bias))
    if kind == "sfc":
        return SparseFactoredLinear(
            in_channels, out_channels, spatial=spatial, num_anchors=num_anchors_fc,
            bias=bool(bias), **anchors,
        )  # fmt: skip
    if kind == "conv":
        return SpatialConv2d(
            in_channels, out_channels, kernel_size, padding_mode=padding_mode, bias=bool(bias)
        )
    if kind == "sconv":
        return SparseConv2d(
            in_channels, out_channels, kernel_size, num_anchors=num_anchors_conv,
            padding_mode=padding_mode, bias=bool(bias), **anchors,
        )  # fmt: skip
    raise ValueError(f"unknown path kind {kind!r}; plain path kinds: {list(PLAIN_PATH_KINDS)}")


def path_sum(
    paths: Sequence[str],
    in_channels: int,
    out_channels: int,
    *,
    spatial: tuple[int, int],
    bias: bool = True,
    fc_bias: Literal["none", "unit"] = "none",
    **options: Any,
) -> PathSum:
    r"""A relaxed layer ``Σ_k f_k(x)`` from path kinds (Eq. (4), (10) of the layer-wise paper).

    The per-output-channel bias (``bias=True``) sits in the first translation-equivariant
    path (``"conv"``/``"sconv"``; the first path if there is none), so that the layer is
    exactly as equivariant as its remaining paths when the others are zero. ``fc_bias="unit"``
    gives an ``"fc"`` path its own per-unit bias (``C_out H W``), as residual pathway priors
    use it: the unconstrained path's prior then also covers a position-dependent offset.

    Weights per path for ``C`` in, ``C'`` out channels on an ``X x Y`` map with ``S x S``
    filters: FC ``C'C X^2 Y^2``, F-FC ``2 C'C XY``, CONV ``C'C S^2``; S-FC and S-CONV
    interpolate their weights from anchors.

    Args:
        paths: distinct kinds of :data:`PLAIN_PATH_KINDS`; the keys of ``layer.paths``.
        in_channels: ``C``.
        out_channels: ``C'``.
        spatial: ``(X, Y)``.
        bias: per-output-channel bias (see above).
        fc_bias: ``"unit"``: the ``"fc"`` path's own per-unit bias.
        **options: :func:`plain_path` options (``kernel_size``, ``padding_mode``, anchors).

    Raises:
        ValueError: for unknown or repeated kinds.

    Example:
        >>> layer = path_sum(("ffc", "conv"), 2, 3, spatial=(4, 4))
        >>> list(layer.paths), layer.paths["conv"].bias is not None
        (['ffc', 'conv'], True)
    """
    unknown = [p for p in paths if p not in PLAIN_PATH_KINDS]
    if unknown or not paths or len(set(paths)) != len(paths):
        raise ValueError(
            f"path_sum: paths must be distinct kinds of {list(PLAIN_PATH_KINDS)}, got {list(paths)}"
        )
    carrier = next((p for p in paths if p in _EQUIVARIANT_KINDS), paths[0])

    def path_bias(kind: str) -> bool | Literal["unit"]:
        if kind == "fc" and fc_bias == "unit":
            return "unit" if bias else False
        return bias and kind == carrier

    return PathSum(
        {
            kind: plain_path(
                kind, in_channels, out_channels, spatial=spatial, bias=path_bias(kind), **options
            )
            for kind in paths
        }
    )


def fc_plus_conv(in_channels: int, out_channels: int, **options: Any) -> PathSum:
    """FC + CONV residual pathways (Eq. (4)): :func:`path_sum` of ``"fc"`` and ``"conv"``."""
    return path_sum(("fc", "conv"), in_channels, out_channels, **options)


def conv_plus_fc(in_channels: int, out_channels: int, **options: Any) -> PathSum:
    """CONV + FC as residual pathway priors (Finzi et al., 2021) use it.

    :func:`path_sum` of ``"conv"`` and ``"fc"`` with the FC path's own per-unit bias.
    """
    return path_sum(("conv", "fc"), in_channels, out_channels, fc_bias="unit", **options)


def ffc_plus_conv(in_channels: int, out_channels: int, **options: Any) -> PathSum:
    """F-FC + CONV, the paper's proposed relaxation: :func:`path_sum` of ``"ffc"``, ``"conv"``."""
    return path_sum(("ffc", "conv"), in_channels, out_channels, **options)


def sfc_plus_sconv(in_channels: int, out_channels: int, **options: Any) -> PathSum:
    """S-FC + S-CONV: :func:`path_sum` of ``"sfc"`` and ``"sconv"`` (anchor options there)."""
    return path_sum(("sfc", "sconv"), in_channels, out_channels, **options)

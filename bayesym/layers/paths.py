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

from collections.abc import Collection, Mapping

import torch
from torch import nn

from bayesym.layers._checks import check_positive_int
from bayesym.layers.conv import PaddingMode, SpatialConv2d
from bayesym.layers.dense import SpatialLinear
from bayesym.layers.factored import FactoredLinear
from bayesym.layers.sparse import SparseConv2d, SparseFactoredLinear
from bayesym.layers.symmetry import TRIVIAL_SYMMETRY, LayerSymmetry, meet_symmetries

__all__ = [
    "PathSum",
    "conv_plus_fc",
    "fc_plus_conv",
    "ffc_plus_conv",
    "path_symmetry",
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
        if x.dim() != 5 or x.shape[2] != self.in_group_size:
            raise ValueError(
                f"{type(self).__name__}: expected a group feature map "
                f"[N, C, {self.in_group_size}, H, W], got {list(x.shape)}"
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


def fc_plus_conv(
    in_channels: int,
    out_channels: int,
    *,
    spatial: tuple[int, int],
    kernel_size: int = 3,
    padding_mode: PaddingMode = "circular",
    bias: bool = True,
) -> PathSum:
    """FC + CONV residual pathways (Eq. (4)): paths ``"fc"`` (bias-free) and ``"conv"``.

    ``C'C X^2 Y^2 + C'C S^2`` weights; the per-channel bias sits in the CONV path, so the
    layer is exactly translation-equivariant when the FC path is zero.
    """
    return PathSum(
        {
            "fc": SpatialLinear(in_channels, out_channels, spatial=spatial, bias=False),
            "conv": SpatialConv2d(
                in_channels, out_channels, kernel_size, padding_mode=padding_mode, bias=bias
            ),
        }
    )


def conv_plus_fc(
    in_channels: int,
    out_channels: int,
    *,
    spatial: tuple[int, int],
    kernel_size: int = 3,
    padding_mode: PaddingMode = "circular",
    bias: bool = True,
) -> PathSum:
    """CONV + FC as residual pathway priors (Finzi et al., 2021) use it: paths ``"conv"``, ``"fc"``.

    Unlike :func:`fc_plus_conv`, the FC path is a complete ``nn.Linear`` on the flattened map,
    *with its own per-unit bias* (``C_out H W``), so the non-equivariant path's prior also
    covers a position-dependent offset; the CONV path keeps a per-channel bias.
    """
    return PathSum(
        {
            "conv": SpatialConv2d(
                in_channels, out_channels, kernel_size, padding_mode=padding_mode, bias=bias
            ),
            "fc": SpatialLinear(
                in_channels, out_channels, spatial=spatial, bias="unit" if bias else False
            ),
        }
    )


def ffc_plus_conv(
    in_channels: int,
    out_channels: int,
    *,
    spatial: tuple[int, int],
    kernel_size: int = 3,
    padding_mode: PaddingMode = "circular",
    bias: bool = True,
) -> PathSum:
    """F-FC + CONV (the paper's proposed relaxation): paths ``"ffc"`` (bias-free), ``"conv"``.

    ``2 C'C XY + C'C S^2`` weights.
    """
    return PathSum(
        {
            "ffc": FactoredLinear(in_channels, out_channels, spatial=spatial, bias=False),
            "conv": SpatialConv2d(
                in_channels, out_channels, kernel_size, padding_mode=padding_mode, bias=bias
            ),
        }
    )


def sfc_plus_sconv(
    in_channels: int,
    out_channels: int,
    *,
    spatial: tuple[int, int],
    kernel_size: int = 3,
    padding_mode: PaddingMode = "circular",
    bias: bool = True,
    num_anchors_fc: int | None = None,
    num_anchors_conv: int | None = None,
    omega: float = 1.0,
    learnable_anchors: bool = False,
    learnable_omega: bool = False,
) -> PathSum:
    """S-FC + S-CONV: paths ``"sfc"`` (bias-free) and ``"sconv"``.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        spatial: ``(H, W)``.
        kernel_size: S-CONV filter size.
        padding_mode: S-CONV padding.
        bias: per-channel bias (in the S-CONV path).
        num_anchors_fc: anchors per S-FC factor (default ``ceil(H W / 2)``).
        num_anchors_conv: S-CONV anchors (default ``ceil(S^2 / 2)``).
        omega: initial inverse lengthscale of every basis.
        learnable_anchors: learn anchor locations in both paths.
        learnable_omega: learn ``omega`` in both paths.
    """
    shared: dict[str, object] = {
        "omega": omega,
        "learnable_anchors": learnable_anchors,
        "learnable_omega": learnable_omega,
    }
    return PathSum(
        {
            "sfc": SparseFactoredLinear(
                in_channels,
                out_channels,
                spatial=spatial,
                num_anchors=num_anchors_fc,
                bias=False,
                **shared,
            ),
            "sconv": SparseConv2d(
                in_channels,
                out_channels,
                kernel_size,
                num_anchors=num_anchors_conv,
                padding_mode=padding_mode,
                bias=bias,
                **shared,
            ),
        }
    )

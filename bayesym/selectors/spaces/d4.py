r"""The D4-subgroup space: which subgroup of D4 every block of the EquiNAS network is over.

Networks are :class:`~bayesym.backbones.equinas.EquiNASNet`\ s (a lifting and ``depth - 1``
group convolutions, one subgroup ``G_b`` of D4 per block, non-increasing with depth, group
pooling and a two-layer head; the EquiNAS paper's App. B, widths scaled). Selectable layers
are the blocks' convolutions ``blocks.b.conv``. The subgroups (:data:`SUBGROUP_WORDS`):

=====  ==========================================
C1     no rotation or flip (translations only)
D1     one mirror flip
C2     rotation by 180°
D2     rotation by 180° and two mirror flips
C4     rotations by multiples of 90°
D4     rotations by multiples of 90° and flips
=====  ==========================================

**Normalisation** (``norm``): ``"group_batch"`` is the paper's backbone (group batch norm
after every convolution, batch norm in the head); ``"none"`` (default) has no normalisation,
biased convolutions and a unit-moment initialisation. Priors need the norm-free backbone
(batch norm makes the scale of the weights before it unidentifiable and has no curvature), so
the relaxed and residual networks exist only with ``norm="none"``, and every selector of one
comparison then runs on, and is compared with static baselines of, the same backbone.

* **Static baselines**: every block over the same group, ``"C1"`` ... ``"D4"``
  (:meth:`D4SubgroupSpace.build_baseline`), and optionally the paper's "prior" baselines
  ``"H-prior-G"`` (``prior_baselines``, e.g. ``"C1-prior-D4"``): the all-``G`` network, freshly
  initialised, with every block relaxed to ``H`` by the relaxation morphism, so an
  ``H``-network that starts as the ``G``-network's function.
* **Per-block groups** (EquiNAS_E): :meth:`D4SubgroupSpace.network` with one group per block.
* **Mixed network** (EquiNAS_D): :meth:`D4SubgroupSpace.mixed_network`, every block a
  [G]-mixed layer over the named subgroups.
* **Relaxed network** (marglik): :class:`~bayesym.backbones.equinas_paths.EquiNASPathNet` with
  one group-convolution path per subgroup in every block (``blocks.b.layer.<K>``), so the
  marginal likelihood learns a prior per subgroup path and picks C1 ... D4 per block.
* **Residual network** (RPP): the same with a D4 path and an unconstrained C1 path.
* **Homotopic network** (ACE): the residual network with every block ``D4 + γ C1``
  (:class:`~bayesym.layers.HomotopicLayer`), exactly D4-invariant at ``γ = 0``.

Example:
    >>> space = D4SubgroupSpace(width=1, depth=4)
    >>> net = space.network(["D4", "D4", "C4", "C1"], DataShape(1, 8, 8, 10))
    >>> [(c.choice, c.symmetry) for c in space.describe(net)][2:]
    [('C4', 'translations x C4'), ('C1', 'translations x C1')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, cast

from torch import nn

from bayesym.backbones.equinas import NORMS, EquiNASBlock, EquiNASConfig, EquiNASNet
from bayesym.backbones.equinas_paths import EquiNASPathBlock, EquiNASPathNet
from bayesym.checks import check_positive_int
from bayesym.groups.d4 import D4_SUBGROUP_NAMES, d4_subgroup
from bayesym.groups.finite import is_subgroup
from bayesym.layers.homotopic import homotopic_from_paths
from bayesym.layers.mixed import MixedGroupConv2d, MixedLiftingConv2d
from bayesym.layers.paths import PathSum
from bayesym.selectors.base import LayerChoice
from bayesym.selectors.spaces.base import DataShape, SearchSpace

__all__ = ["SUBGROUP_ORDER", "SUBGROUP_WORDS", "D4SubgroupSpace"]

SUBGROUP_ORDER: tuple[str, ...] = ("C1", "D1", "C2", "D2", "C4", "D4")
"""The named subgroups of D4, from the smallest to the largest (EquiNAS's [G])."""

SUBGROUP_WORDS: dict[str, str] = {
    "C1": "no rotation or flip",
    "D1": "one mirror flip",
    "C2": "rotation by 180°",
    "D2": "rotation by 180° and two mirror flips",
    "C4": "rotations by multiples of 90°",
    "D4": "rotations by multiples of 90° and flips",
}
"""What each subgroup's rotations and flips are, in words."""


def _check_names(names: Sequence[str], what: str) -> None:
    if isinstance(names, str) or not names or len(set(names)) != len(names):
        raise ValueError(f"D4SubgroupSpace: {what} must be distinct subgroup names, got {names!r}")
    unknown = [n for n in names if n not in D4_SUBGROUP_NAMES]
    if unknown:
        raise ValueError(
            f"D4SubgroupSpace: unknown subgroup(s) {unknown} in {what}; "
            f"valid: {', '.join(SUBGROUP_ORDER)}"
        )


@dataclass(frozen=True)
class D4SubgroupSpace(SearchSpace):
    """Per-block subgroups of the EquiNAS network (see the module docstring).

    Attributes:
        width: D4-channels of the first half of the blocks (``2·width`` after; paper 16).
        depth: number of blocks (paper 8).
        kernel_size: odd filter size.
        pool_every: stride-2 pooling after every ``pool_every``-th block but the last.
        norm: ``"none"`` (default) or ``"group_batch"`` (the paper's).
        static_groups: the static baselines (one group for every block), in display order.
        relaxed_subgroups: the subgroups with a path in every block of the relaxed network.
        residual_paths: ``(equivariant, unconstrained)`` subgroups of the residual network.
        prior_baselines: extra static baselines ``"H-prior-G"`` (module docstring).
    """

    name: ClassVar[str] = "d4"

    width: int = 2
    depth: int = 8
    kernel_size: int = 3
    pool_every: int = 2
    norm: Literal["group_batch", "none"] = "none"
    static_groups: tuple[str, ...] = SUBGROUP_ORDER
    relaxed_subgroups: tuple[str, ...] = SUBGROUP_ORDER
    residual_paths: tuple[str, str] = ("D4", "C1")
    prior_baselines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in ("width", "depth", "kernel_size"):
            check_positive_int(getattr(self, field), name=field, owner="D4SubgroupSpace")
        if self.norm not in NORMS:
            raise ValueError(
                f"D4SubgroupSpace: norm must be one of {', '.join(map(repr, NORMS))}, "
                f"got {self.norm!r}"
            )
        _check_names(self.static_groups, "static_groups")
        _check_names(self.relaxed_subgroups, "relaxed_subgroups")
        _check_names(self.residual_paths, "residual_paths")
        if len(self.residual_paths) != 2:
            raise ValueError(
                f"D4SubgroupSpace: residual_paths must be two subgroups, got {self.residual_paths}"
            )
        for name in self.prior_baselines:
            _prior_groups(name)
        self.equinas_config(DataShape(1, 8, 8, 2))  # checks depth, kernel size, pooling

    def equinas_config(
        self, shape: DataShape, layer_type: Literal["fixed", "mixed"] = "fixed"
    ) -> EquiNASConfig:
        """The :class:`~bayesym.backbones.equinas.EquiNASConfig` for data of ``shape``.

        Raises:
            ValueError: for non-square images (D4 acts on square grids only).
        """
        if shape.height != shape.width:
            raise ValueError(
                f"D4SubgroupSpace: images must be square for D4 to act on them, got "
                f"{shape.height}x{shape.width}; resize the task (e.g. --resize 16)"
            )
        return EquiNASConfig(
            in_channels=shape.channels,
            num_classes=shape.num_classes,
            width=self.width,
            depth=self.depth,
            kernel_size=self.kernel_size,
            pool_every=self.pool_every,
            layer_type=layer_type,
            norm=self.norm,
        )

    def network(self, groups: str | Sequence[str], shape: DataShape) -> EquiNASNet:
        """The EquiNAS network with group ``groups[b]`` in block ``b`` (or one for all).

        Raises:
            ValueError: for groups that increase with depth, or the wrong number of them.
        """
        return EquiNASNet(self.equinas_config(shape), groups)

    def mixed_network(
        self, shape: DataShape, components: Sequence[str] | None = None
    ) -> EquiNASNet:
        """The EquiNAS network of [D4]-mixed blocks over ``components`` (default all six)."""
        return EquiNASNet(
            self.equinas_config(shape, "mixed"), "D4", components=list(components or SUBGROUP_ORDER)
        )

    def baselines(self) -> tuple[str, ...]:
        """The static groups, then the prior baselines."""
        return (*self.static_groups, *self.prior_baselines)

    def build_baseline(self, name: str, shape: DataShape) -> nn.Module:
        """The network whose blocks are all over the group ``name`` (or ``"H-prior-G"``)."""
        self.check_baseline(name)
        if name in self.prior_baselines:
            sub, group = _prior_groups(name)
            net = self.network(group, shape)
            for block in reversed(range(self.depth)):
                net = net.relax_layer(block, sub)
            return net
        return self.network(name, shape)

    def _check_norm_free(self, what: str) -> None:
        if self.norm != "none":
            raise ValueError(
                f"the {what} of the 'd4' space carries priors and exists only norm-free; build "
                f"the space with norm='none' (got norm={self.norm!r}) so that its static "
                "baselines share that backbone"
            )

    def relaxed_network(self, shape: DataShape) -> nn.Module:
        """The norm-free network with one path per :attr:`relaxed_subgroups` in every block.

        Raises:
            ValueError: unless ``norm="none"``.
        """
        self._check_norm_free("relaxed network")
        return EquiNASPathNet(self.equinas_config(shape), self.relaxed_subgroups)

    def residual_network(self, shape: DataShape) -> tuple[EquiNASPathNet, str, str]:
        """The norm-free network with the :attr:`residual_paths` in every block.

        Raises:
            ValueError: unless ``norm="none"``.
        """
        self._check_norm_free("residual network")
        eq, neq = self.residual_paths
        return EquiNASPathNet(self.equinas_config(shape), (eq, neq)), eq, neq

    def homotopic_network(self, shape: DataShape) -> nn.Module:
        """The residual network with every block ``f_eq + γ f_neq`` over the residual paths.

        Raises:
            ValueError: unless ``norm="none"``.
        """
        self._check_norm_free("homotopic network")
        net, eq, neq = self.residual_network(shape)
        for block in _path_blocks(net):
            block.layer = homotopic_from_paths(block.layer, eq, neq)
        return net

    def describe(self, model: nn.Module) -> tuple[LayerChoice, ...]:
        """Per block: its group (or paths / mixture) and the symmetry it obeys.

        For fixed blocks the choice is the group and the symmetry
        ``LayerSymmetry.describe()`` of the convolution (``"translations x C4"``); for mixed
        blocks the component with the largest mixture weight, scored by every weight ``z``;
        for path sums the paths joined by ``+`` and the symmetry of the paths switched on.

        Raises:
            TypeError: if ``model`` is not a network of this space.
        """
        if isinstance(model, EquiNASPathNet):
            return tuple(
                _path_choice(f"blocks.{b}.layer", block.layer)
                for b, block in enumerate(_path_blocks(model))
            )
        if not isinstance(model, EquiNASNet):
            raise TypeError(
                f"D4SubgroupSpace.describe needs an EquiNASNet or EquiNASPathNet, got "
                f"{type(model).__name__}"
            )
        choices = []
        for b, block in enumerate(cast("list[EquiNASBlock]", list(model.blocks))):
            conv, layer = block.conv, f"blocks.{b}.conv"
            if isinstance(conv, (MixedLiftingConv2d, MixedGroupConv2d)):
                z = conv.architecture_weights().detach().tolist()
                scores = {k.name: float(w) for k, w in zip(conv.components, z, strict=True)}
                best = max(scores, key=lambda k: (scores[k], k))
                symmetry = f"translations x {best}" if conv.padding_mode == "circular" else best
                choices.append(LayerChoice(layer, best, symmetry, scores))
            else:
                choices.append(LayerChoice(layer, conv.group.name, conv.symmetry.describe()))
        return tuple(choices)


def _prior_groups(name: str) -> tuple[str, str]:
    """``"H-prior-G"`` -> ``(H, G)``; refuses other forms and ``H`` not below ``G``."""
    parts = name.split("-prior-") if isinstance(name, str) else []
    if len(parts) != 2 or any(p not in D4_SUBGROUP_NAMES for p in parts):
        raise ValueError(
            f"D4SubgroupSpace: a prior baseline is named 'H-prior-G' with H, G in "
            f"{', '.join(SUBGROUP_ORDER)}, got {name!r}"
        )
    sub, group = parts
    if not is_subgroup(d4_subgroup(sub), d4_subgroup(group)):
        raise ValueError(f"D4SubgroupSpace: {sub} is not a subgroup of {group} in {name!r}")
    return sub, group


def _path_blocks(net: EquiNASPathNet) -> list[EquiNASPathBlock]:
    """The blocks of ``net`` as what they are (``nn.ModuleList`` yields plain modules)."""
    return cast("list[EquiNASPathBlock]", list(net.blocks))


def _path_choice(name: str, layer: PathSum) -> LayerChoice:
    return LayerChoice(name, "+".join(layer.paths), layer.strict_symmetry().describe())

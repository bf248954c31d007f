r"""Gaussian priors over named parameter groups, parametrised by log precisions.

The prior is :math:`p(\theta) = \prod_g \mathcal{N}(\theta_g \mid 0, \delta_g^{-1} I)` with one
precision :math:`\delta_g = \exp(\rho_g)` per parameter group :math:`g` (paper Sec. 3.2). The
group *structure* decides what can be learned:

* ``"path"`` (default) — one group per (layer, path): each path of a relaxed layer
  (:class:`~bayesym.layers.PathSum`, e.g. ``blocks.3.layer.ffc`` and ``blocks.3.layer.conv``)
  and each other parametrised module. A path whose precision grows to infinity is switched
  off: the layer becomes as equivariant as its remaining paths (Eq. 8).
* ``"layer"`` — one group per relaxed layer (all its paths) or parametrised module.
* ``"tensor"`` — one group per parameter tensor (laplace-torch's per-tensor prior).
* ``"scalar"`` — one group for the whole model.

Anchor-point layers (S-FC, S-CONV) carry the symmetry-controlling prior on their anchor values
by default (``sparse_prior="anchor_values"``); with ``"lengthscales"`` the RBF lengthscales
``omega`` get their own group (``<path>.omega``), whose precision then controls the symmetry
(``omega -> 0`` makes the filter constant in position), as the paper's second placement.

No prior ever falls on the architecture parameters of a network by default: the mixing logits
``α`` of mixed layers (:func:`~bayesym.layers.mixed.architecture_parameters`) and ACE's
homotopy coefficients ``γ`` (:func:`~bayesym.layers.homotopic.homotopy_parameters`) choose
*between* symmetries, so a Gaussian on them would bias the choice itself
(:func:`prior_free_parameters`). They are point estimates, left out of the curvature too.

Fixed precisions per group (e.g. residual pathway priors: a weak prior on the equivariant
path, a strong one on the unconstrained path) are set with ``precisions={group: δ}`` or
:meth:`GaussianPrior.set_precisions`; a weight decay ``wd·‖θ‖²`` added to the *mean* loss over
``N`` data equals the prior term ``½δ‖θ‖²/N`` with ``δ = 2·wd·N``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    >>> prior = GaussianPrior(model)
    >>> [g.name for g in prior.groups], prior.precisions.tolist()
    (['0', '2'], [1.0, 1.0])
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import torch
from torch import Tensor, nn

from bayesym.layers.homotopic import homotopy_parameters
from bayesym.layers.mixed import architecture_parameters
from bayesym.layers.paths import PathSum

if TYPE_CHECKING:  # pragma: no cover
    from curvature import KFAC

__all__ = [
    "GaussianPrior",
    "ParameterGroup",
    "PriorStructure",
    "SparsePriorPlacement",
    "parameter_groups",
    "prior_free_parameters",
]

PriorStructure = Literal["path", "layer", "tensor", "scalar"]
"""Granularity of the prior precisions; see the module docstring."""

SparsePriorPlacement = Literal["anchor_values", "lengthscales"]
"""Which parameters of anchor-point layers carry the symmetry-controlling prior."""

_LENGTHSCALE_PARAMETERS = ("omega",)


@dataclass(frozen=True)
class ParameterGroup:
    """Parameters sharing one prior precision.

    Attributes:
        name: unique group name, ``"<layer>.<path>"`` for a path of a relaxed layer.
        layer: qualified name of the layer the group belongs to (the relaxed layer, or the
            module itself); groups of one layer are compared by the inspection tools.
        path: the path's name within its layer (``"ffc"``, ``"conv"``, ...), or the module's
            class name for layers without paths.
        parameters: qualified names of the parameters.
        numel: number of scalar parameters ``P_g``.
    """

    name: str
    layer: str
    path: str
    parameters: tuple[str, ...]
    numel: int


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def prior_free_parameters(model: nn.Module) -> tuple[str, ...]:
    """Qualified names of the parameters that choose between symmetries (no prior by default).

    The mixing logits ``α`` of every mixed layer and the homotopy coefficient ``γ`` of every
    homotopic layer, in parameter order.

    Example:
        >>> from bayesym.layers.homotopic import homotopic_conv_ffc
        >>> prior_free_parameters(nn.Sequential(homotopic_conv_ffc(1, 1, spatial=(4, 4))))
        ('0.homotopy_gamma',)
    """
    chosen = {id(p) for p in architecture_parameters(model)}
    chosen |= {id(p) for p in homotopy_parameters(model).values()}
    return tuple(name for name, p in model.named_parameters() if id(p) in chosen)


def _prior_parameters(
    model: nn.Module, exclude: Collection[str], prior_on_architecture: bool
) -> dict[str, nn.Parameter]:
    """The trainable parameters that get a prior (in parameter order).

    Raises:
        ValueError: on excluded names that are not trainable parameters, or none left.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    unknown = sorted(set(exclude) - set(params))
    if unknown:
        raise ValueError(f"excluded parameters {unknown} are not trainable parameters of the model")
    excluded = set(exclude)
    if not prior_on_architecture:
        excluded |= set(prior_free_parameters(model))
    params = {n: p for n, p in params.items() if n not in excluded}
    if not params:
        raise ValueError("the model has no trainable parameters to put a prior on")
    return params


def parameter_groups(
    model: nn.Module,
    structure: PriorStructure = "path",
    *,
    sparse_prior: SparsePriorPlacement = "anchor_values",
    exclude: Collection[str] = (),
    prior_on_architecture: bool = False,
) -> tuple[ParameterGroup, ...]:
    """Partition the trainable parameters of ``model`` into prior groups.

    Args:
        model: the network.
        structure: ``"path"``, ``"layer"``, ``"tensor"`` or ``"scalar"``.
        sparse_prior: prior placement for anchor-point layers (see module docstring).
        exclude: further qualified parameter names without a prior.
        prior_on_architecture: also put a prior on the mixing logits and homotopy
            coefficients (:func:`prior_free_parameters`); by default they have none.

    Returns:
        The groups, in parameter order of first appearance.

    Raises:
        ValueError: on an unknown structure/placement, unknown excluded names, or a model
            without trainable parameters.
    """
    if structure not in ("path", "layer", "tensor", "scalar"):
        raise ValueError(
            f"prior structure must be 'path', 'layer', 'tensor' or 'scalar', got {structure!r}"
        )
    if sparse_prior not in ("anchor_values", "lengthscales"):
        raise ValueError(
            f"sparse_prior must be 'anchor_values' or 'lengthscales', got {sparse_prior!r}"
        )
    params = _prior_parameters(model, exclude, prior_on_architecture)
    owner = _parameter_owners(model)
    groups: dict[str, list[str]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for name in params:
        group, layer, path = _group_key(name, owner[name], structure, sparse_prior)
        groups.setdefault(group, []).append(name)
        meta[group] = (layer, path)
    return tuple(
        ParameterGroup(
            g, meta[g][0], meta[g][1], tuple(names), sum(params[n].numel() for n in names)
        )
        for g, names in groups.items()
    )


def _parameter_owners(model: nn.Module) -> dict[str, tuple[str, str, str]]:
    """Parameter -> (layer, path, path-group name).

    A parameter of a relaxed layer's path belongs to that path; any other to its module.
    """
    owner: dict[str, tuple[str, str, str]] = {}
    for mname, module in model.named_modules():
        if isinstance(module, PathSum):
            for key, path in module.paths.items():
                for pname, _ in path.named_parameters():
                    qualified = _join(_join(_join(mname, "paths"), key), pname)
                    owner.setdefault(qualified, (mname, key, _join(mname, key)))
    for mname, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            owner.setdefault(_join(mname, pname), (mname, type(module).__name__, mname or "model"))
    return owner


def _group_key(
    name: str,
    owner: tuple[str, str, str],
    structure: PriorStructure,
    sparse_prior: SparsePriorPlacement,
) -> tuple[str, str, str]:
    """(group name, layer, path) of the parameter ``name`` owned by ``owner``."""
    layer, path, path_group = owner
    if structure == "scalar":
        return ("all", "", "all")
    if structure == "tensor":
        return (name, layer, path)
    if structure == "layer":
        return (layer or "model", layer, "all")
    attr = name.rsplit(".", 1)[-1]
    if sparse_prior == "lengthscales" and attr in _LENGTHSCALE_PARAMETERS:
        return (f"{path_group}.{attr}", layer, f"{path}.{attr}")
    return (path_group, layer, path)


def _check_precision(value: float, what: str) -> None:
    if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be positive and finite, got {value}")


class GaussianPrior(nn.Module):
    r"""Zero-mean Gaussian prior with one learnable log precision per parameter group.

    .. math::
        \log p(\theta) = \sum_g \Big[\tfrac{P_g}{2} \log \delta_g
        - \tfrac{\delta_g}{2} \lVert\theta_g\rVert^2\Big] - \tfrac{P}{2} \log 2\pi

    Args:
        model: the network whose trainable parameters get the prior.
        structure: group granularity (:data:`PriorStructure`).
        init_precision: initial :math:`\delta_g` for every group (the paper uses 1).
        sparse_prior: placement for anchor-point layers (:data:`SparsePriorPlacement`).
        exclude: further parameter names without a prior.
        precisions: initial :math:`\delta_g` of named groups (group name -> precision),
            overriding ``init_precision`` for those groups.
        prior_on_architecture: also put a prior on mixing logits and homotopy coefficients
            (default: never, see :func:`prior_free_parameters`).

    Attributes:
        groups: the :class:`ParameterGroup` s.
        log_precision: ``[G]`` learnable :math:`\rho_g = \log \delta_g`.
        excluded: trainable parameters without a prior (the mixing logits and homotopy
            coefficients, and ``exclude``), in parameter order.

    Example:
        >>> from bayesym.layers import conv_plus_fc
        >>> layer = nn.Sequential(conv_plus_fc(1, 1, spatial=(4, 4)))
        >>> prior = GaussianPrior(layer, precisions={"0.fc": 100.0})
        >>> prior.as_dict()
        {'0.conv': 1.0, '0.fc': 100.0}
    """

    def __init__(
        self,
        model: nn.Module,
        structure: PriorStructure = "path",
        *,
        init_precision: float = 1.0,
        sparse_prior: SparsePriorPlacement = "anchor_values",
        exclude: Collection[str] = (),
        precisions: Mapping[str, float] | None = None,
        prior_on_architecture: bool = False,
    ) -> None:
        super().__init__()
        _check_precision(init_precision, "init_precision")
        self.structure = structure
        self.groups = parameter_groups(
            model,
            structure,
            sparse_prior=sparse_prior,
            exclude=exclude,
            prior_on_architecture=prior_on_architecture,
        )
        self.group_index = {p: i for i, g in enumerate(self.groups) for p in g.parameters}
        self.excluded: tuple[str, ...] = tuple(
            n for n, p in model.named_parameters() if p.requires_grad and n not in self.group_index
        )
        ref = next(p for p in model.parameters() if p.requires_grad)
        self.log_precision = nn.Parameter(
            torch.full(
                (len(self.groups),), math.log(init_precision), dtype=ref.dtype, device=ref.device
            )
        )
        if precisions:
            self.set_precisions(precisions)

    def set_precisions(self, precisions: Mapping[str, float]) -> None:
        r"""Set :math:`\delta_g` of the named groups (the others keep theirs).

        Raises:
            ValueError: for an unknown group (the message lists the groups) or a precision
                that is not positive and finite.
        """
        index = {g.name: i for i, g in enumerate(self.groups)}
        unknown = sorted(set(precisions) - set(index))
        if unknown:
            raise ValueError(f"no prior groups {unknown}; groups are {self.names}")
        with torch.no_grad():
            for name, value in precisions.items():
                _check_precision(value, f"precision of {name!r}")
                self.log_precision[index[name]] = math.log(value)

    @property
    def names(self) -> list[str]:
        """Group names in order."""
        return [g.name for g in self.groups]

    @property
    def precisions(self) -> Tensor:
        r"""``[G]`` precisions :math:`\delta_g = \exp(\rho_g)`."""
        return self.log_precision.exp()

    @property
    def numels(self) -> Tensor:
        """``[G]`` numbers of parameters per group."""
        return torch.tensor(
            [g.numel for g in self.groups],
            dtype=self.log_precision.dtype,
            device=self.log_precision.device,
        )

    def group(self, name: str) -> ParameterGroup:
        """The group called ``name``."""
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no prior group {name!r}; groups are {self.names}")

    def squared_norms(self, model: nn.Module) -> Tensor:
        r"""``[G]`` :math:`\lVert\theta_g\rVert^2` of the model's current parameters."""
        params = dict(model.named_parameters())
        missing = [p for p in self.group_index if p not in params]
        if missing:
            raise ValueError(f"the model lacks the prior's parameters {missing[:5]}")
        return torch.stack(
            [cast(Tensor, sum(params[p].square().sum() for p in g.parameters)) for g in self.groups]
        )

    def penalty(self, model: nn.Module) -> Tensor:
        r""":math:`\tfrac12 \sum_g \delta_g \lVert\theta_g\rVert^2` with precisions held fixed.

        The MAP objective's prior term (differentiable in the parameters only).
        """
        return 0.5 * (self.precisions.detach() * self.squared_norms(model)).sum()

    def log_prob(self, model: nn.Module) -> Tensor:
        r""":math:`\log p(\theta)`, differentiable in the log precisions and parameters."""
        numels = self.numels
        return (
            0.5 * (numels * self.log_precision).sum()
            - 0.5 * (self.precisions * self.squared_norms(model)).sum()
            - 0.5 * numels.sum() * math.log(2 * math.pi)
        )

    def block_groups(self, kfac: KFAC) -> list[int]:
        """Index of the group of every curvature block, in block order.

        Raises:
            ValueError: if a block covers parameters of several groups, or a parameter that
                has no prior.
        """
        out = []
        for block in kfac.blocks:
            indices = set()
            for piece in block.params:
                if piece.name not in self.group_index:
                    raise ValueError(
                        f"curvature block {block.name!r} covers {piece.name!r}, which has no prior"
                    )
                indices.add(self.group_index[piece.name])
            if len(indices) != 1:
                names = sorted(self.groups[i].name for i in indices)
                raise ValueError(
                    f"curvature block {block.name!r} spans prior groups {names}; one block needs "
                    "one precision"
                )
            out.append(indices.pop())
        return out

    def block_precisions(self, kfac: KFAC) -> dict[str, Tensor]:
        """Map every curvature block to its group's precision (differentiable).

        Raises:
            ValueError: as :meth:`block_groups`.
        """
        precisions = self.precisions
        return {
            block.name: precisions[g]
            for block, g in zip(kfac.blocks, self.block_groups(kfac), strict=True)
        }

    def as_dict(self) -> Mapping[str, float]:
        """Group name -> current precision (plain floats, for logs and reports)."""
        return dict(zip(self.names, self.precisions.detach().cpu().tolist(), strict=True))

"""The extension point: how a module type's parameters get Kronecker-factored GGN blocks.

Supporting a new layer = one :class:`ModuleAdapter` subclass + one registry entry
(:mod:`curvature.registry`). The engine captures every registered module's inputs and
output during the forward pass and back-propagates ``S`` output directions to the module's
output (see :mod:`curvature.likelihoods`); the adapter turns these into per-block statistics.

The maths every adapter expresses (paper Sec. 5, App. C; Eschenhagen et al. 2023): a parameter
enters the layer as a linear map ``s_r = W a_r`` applied at ``R`` weight-sharing positions ``r``
(conv positions, group elements, the channel copies of a factored layer), so its Jacobian is
``J_nᵀ = Σ_r a_{n,r} ⊗ g_{n,r}`` with ``g_{n,r} = ∂f/∂s_{n,r}`` and the GGN block is approximated by

* ``"expand"``: ``A = Σ_{n,r} a aᵀ / (N R)``, ``B = Σ_{s,n,r} g gᵀ`` (shared dims act like batch);
* ``"reduce"``: ``A = Σ_n ā_n ā_nᵀ / N`` with ``ā_n = mean_r a_{n,r}``, ``B = Σ_{s,n} ĝ ĝᵀ`` with
  ``ĝ_{s,n} = Σ_r g_{s,n,r}``.

Both are exact for one datum without sharing (``N = R = 1``). The adapter returns the sums and
the count it normalises ``A`` by; the engine accumulates them over the data. Structures the
method needs are first-class:

* block-diagonal input factors (factored layers: input copies ``e_c ⊗ x_c`` at sharing position
  ``c``) — return a :class:`~curvature.factors.BlockDiagonalFactor`, never ``C`` dense copies;
* weights that are a fixed basis projection of free parameters (anchor points, ``W = U Ψ``):
  project the statistics, ``A_u = Ψ A Ψᵀ`` (:func:`project_rows`);
* small parameters whose exact GGN is cheap (``structure="dense"``): return ``Σ_{s,n} j jᵀ`` of the
  per-sample, per-direction gradients ``j = J_nᵀ v_{s,n}``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from curvature.factors import DenseFactor, Factor

__all__ = [
    "Approx",
    "BlockSpec",
    "BlockStructure",
    "ForwardResult",
    "InputStatistic",
    "ModuleAdapter",
    "StatisticsRequest",
    "bias_blocks",
    "covariance",
    "if_bias",
    "parameter_tangents",
    "patch_covariance",
    "project_rows",
    "tangent_ggn",
]

Approx = Literal["expand", "reduce"]
"""Weight-sharing approximation: ``"expand"`` (shared dims as batch) or ``"reduce"`` (sum them)."""

BlockStructure = Literal["kronecker", "dense"]
"""How a block stores its curvature: Kronecker factors ``B ⊗ A`` or one dense matrix."""


@dataclass(frozen=True)
class BlockSpec:
    """One curvature block a module contributes.

    Attributes:
        name: suffix of the block name (the engine prefixes the module's qualified name), e.g.
            ``"weight"``, ``"bias"``, ``"weight.group1"``.
        params: ``(attribute, start, stop)`` entries of the module's parameters, flat
            row-major ranges, concatenated in this order. Dotted attributes (``"basis.omega"``)
            name parameters of descendants, which then need no adapter of their own.
        structure: ``"kronecker"`` (input factor ``A`` and output factor ``B``) or ``"dense"``
            (one PSD matrix over the covered entries).
        order: for ``"kronecker"``, whether the covered entries are ordered ``(output, input)``
            (dense block ``B ⊗ A``, e.g. ``Linear.weight [out, in]``) or ``(input, output)``
            (``A ⊗ B``).
        input_dim: side of ``A`` (Kronecker) — for block-diagonal ``A`` the total ``K b``.
        input_blocks: number ``K`` of diagonal blocks of ``A`` (1 = dense ``A``).
        output_dim: side of ``B`` (Kronecker) or of the dense matrix.
    """

    name: str
    params: tuple[tuple[str, int, int], ...]
    structure: BlockStructure
    output_dim: int
    input_dim: int = 0
    input_blocks: int = 1
    order: Literal["output_input", "input_output"] = "output_input"

    def __post_init__(self) -> None:
        if self.structure not in ("kronecker", "dense"):
            raise ValueError(
                f"block {self.name!r}: unknown structure {self.structure!r}; expected "
                "'kronecker' or 'dense'"
            )
        covered = sum(stop - start for _, start, stop in self.params)
        expected = self.output_dim * (self.input_dim if self.structure == "kronecker" else 1)
        if covered != expected:
            raise ValueError(
                f"block {self.name!r}: {self.structure} factors of sizes ({self.output_dim}, "
                f"{self.input_dim}) describe {expected} entries but params cover {covered}"
            )
        if self.structure == "kronecker" and self.input_dim % self.input_blocks:
            raise ValueError(
                f"block {self.name!r}: input_dim {self.input_dim} is not divisible into "
                f"{self.input_blocks} blocks"
            )

    @classmethod
    def dense_parameter(cls, module: nn.Module, attr: str) -> BlockSpec:
        """A dense block over the whole parameter ``attr`` (dotted names allowed)."""
        numel = module.get_parameter(attr).numel()
        return cls(attr, ((attr, 0, numel),), "dense", numel)

    @classmethod
    def kronecker_parameter(
        cls,
        module: nn.Module,
        attr: str,
        output_dim: int,
        *,
        input_blocks: int = 1,
        order: Literal["output_input", "input_output"] = "output_input",
    ) -> BlockSpec:
        """A Kronecker block over the whole parameter ``attr`` with ``B`` of side ``output_dim``."""
        numel = module.get_parameter(attr).numel()
        return cls(
            attr,
            ((attr, 0, numel),),
            "kronecker",
            output_dim,
            input_dim=numel // output_dim,
            input_blocks=input_blocks,
            order=order,
        )

    def factor_bytes(self, element_size: int) -> dict[str, int]:
        """Bytes of each factor this block will store, for the memory check."""
        out = {"output factor": self.output_dim**2 * element_size}
        if self.structure == "kronecker":
            block = self.input_dim // self.input_blocks
            out["input factor"] = self.input_blocks * block**2 * element_size
        return out


@dataclass(frozen=True)
class InputStatistic:
    """Un-normalised input factor of one batch: ``A_sum = Σ a aᵀ`` and its divisor ``count``.

    Give either ``total`` (any :class:`~curvature.factors.Factor`) or, for a dense factor that
    is a plain Gram matrix, its ``rows`` ``[M, d]`` (``A_sum = rowsᵀ rows``, see
    :meth:`from_rows`): the engine then multiplies them into its running sum in place
    (:func:`curvature.gram.gram_update_`: ``addmm`` with ``out=``, or a symmetric BLAS product
    for wide factors on the CPU), which saves a ``[d, d]`` temporary and one pass over it per
    batch.
    """

    total: Factor | None
    count: int
    rows: Tensor | None = None

    def __post_init__(self) -> None:
        if (self.total is None) == (self.rows is None):
            raise ValueError("InputStatistic needs exactly one of total and rows")
        if self.rows is not None and self.rows.ndim != 2:
            raise ValueError(f"InputStatistic rows must be [M, d], got {tuple(self.rows.shape)}")

    @classmethod
    def from_rows(cls, rows: Tensor, count: int) -> InputStatistic:
        """The dense Gram statistic ``rowsᵀ rows`` of ``rows [M, d]``, formed by the engine."""
        return cls(None, count, rows)

    def materialise(self) -> Factor:
        """``total``, or the dense factor ``rowsᵀ rows``."""
        if self.total is not None:
            return self.total
        if self.rows is None:  # excluded by __post_init__
            raise ValueError("InputStatistic needs exactly one of total and rows")
        return DenseFactor(covariance(self.rows))


@dataclass(frozen=True)
class ForwardResult:
    """What an adapter computes during the forward pass.

    Attributes:
        inputs: one :class:`InputStatistic` per Kronecker block (``None`` for dense blocks), in
            the order of :meth:`ModuleAdapter.blocks`.
        state: anything the backward statistics need (e.g. an intermediate activation).
    """

    inputs: tuple[InputStatistic | None, ...]
    state: Any = None


@dataclass(frozen=True)
class StatisticsRequest:
    """What the engine asks of an adapter's statistics calls for one module.

    Attributes:
        approx: the weight-sharing approximation, ``"expand"`` or ``"reduce"``.
        active: names (:attr:`BlockSpec.name`) of the module's blocks that are kept, or ``None``
            for all of them. The others are excluded from the curvature and the engine discards
            whatever is returned for them, so an adapter may skip their expensive statistics.
    """

    approx: Approx = "expand"
    active: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.approx not in ("expand", "reduce"):
            raise ValueError(f"approx must be 'expand' or 'reduce', got {self.approx!r}")

    def keeps(self, block: str) -> bool:
        """Whether the block called ``block`` (:attr:`BlockSpec.name`) is kept."""
        return self.active is None or block in self.active


class ModuleAdapter(ABC):
    """Kronecker-factored GGN statistics of one module type. Stateless; one instance per type."""

    @abstractmethod
    def blocks(self, module: nn.Module) -> tuple[BlockSpec, ...]:
        """The blocks of ``module``; raises ``UnsupportedModuleError`` for unsupported settings."""

    @abstractmethod
    def forward_statistics(
        self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor, request: StatisticsRequest
    ) -> ForwardResult:
        """Input factors from the module's forward inputs (called under ``torch.no_grad``).

        Args:
            module: the module.
            inputs: its forward inputs.
            output: its forward output.
            request: the weight-sharing approximation and which blocks are kept.
        """

    @abstractmethod
    def backward_statistics(
        self, module: nn.Module, state: Any, output_grads: Tensor, request: StatisticsRequest
    ) -> tuple[Tensor, ...]:
        """Per block, ``Σ g gᵀ`` (Kronecker) or ``Σ j jᵀ`` (dense).

        Args:
            module: the module.
            state: :attr:`ForwardResult.state` of the same call.
            output_grads: ``[S, *output.shape]``, gradients of the ``S`` output directions.
            request: as for :meth:`forward_statistics`.
        """


def if_bias(module: nn.Module, *items: Any, attr: str = "bias") -> tuple[Any, ...]:
    """``items`` if ``module`` has a bias parameter ``attr``, else ``()``.

    The bias slot of an adapter's results: e.g. ``ForwardResult((stat, *if_bias(module, None)))``
    or ``(b, *if_bias(module, b))`` for a bias whose output factor is the weight's.
    """
    return items if getattr(module, attr, None) is not None else ()


def bias_blocks(module: nn.Module, attr: str = "bias") -> tuple[BlockSpec, ...]:
    """The dense block of the bias parameter ``attr`` (``()`` when the module has none)."""
    if getattr(module, attr, None) is None:
        return ()
    return (BlockSpec.dense_parameter(module, attr),)


def covariance(rows: Tensor) -> Tensor:
    """``rowsᵀ rows`` for ``rows: [M, d]`` → ``[d, d]`` (batched over leading dims)."""
    return rows.transpose(-1, -2) @ rows


def patch_covariance(x: Tensor) -> Tensor:
    """``Σ_b X_b X_bᵀ`` for ``x: [B, D, T]`` → ``[D, D]`` (conv patches, spatial gradients).

    One GEMM on the transposed rows ``[B T, D]`` (a copy), except for small ``D`` with many
    positions, where a batched product summed in chunks (bounded ``[chunk, D, D]`` workspace)
    avoids the copy. The batched product writes ``B D²`` partial sums against the copy's
    ``B T D`` entries, so it only pays when ``T`` is large (the thresholds are the measured
    crossover, docs/benchmarks.md, "Design choices of the curvature engine").
    """
    b, d, t = x.shape
    if d > 256 or t < 64:
        rows = x.transpose(1, 2).reshape(b * t, d)
        return rows.transpose(0, 1) @ rows
    out = x.new_zeros(d, d)
    step = max(1, (1 << 22) // (d * d))
    for start in range(0, b, step):
        chunk = x[start : start + step]
        out += torch.bmm(chunk, chunk.transpose(1, 2)).sum(0)
    return out


def project_rows(rows: Tensor, basis: Tensor) -> Tensor:
    """Express rows in a basis: ``rows @ basisᵀ`` for ``basis: [M, d]`` (``Ψ``), ``rows: [..., d]``.

    If ``W = U Ψ`` with free parameters ``U [out, M]``, then ``∂f/∂U = (∂f/∂W) Ψᵀ`` and the input
    factor of ``U`` is ``Ψ A Ψᵀ`` (paper App. C.2) — computed from projected rows ``a Ψᵀ``.
    """
    return rows @ basis.transpose(-1, -2)


def check_tensor_input(
    module: nn.Module, inputs: Sequence[Any], min_ndim: int, what: str
) -> Tensor:
    """The first forward input as a tensor with at least ``min_ndim`` dims, or a clear error."""
    from curvature.errors import UnsupportedModuleError

    if not inputs or not isinstance(inputs[0], Tensor):
        raise UnsupportedModuleError(
            f"{type(module).__name__}: expected a tensor as first forward input, got "
            f"{type(inputs[0]).__name__ if inputs else 'nothing'}"
        )
    x = inputs[0]
    if x.ndim < min_ndim:
        raise UnsupportedModuleError(
            f"{type(module).__name__}: expected a batched input {what}, got shape {tuple(x.shape)}"
        )
    return x


def rows_for(x: Tensor) -> tuple[Tensor, int, int]:
    """View ``x: [N, ..., d]`` as rows ``[N, R, d]``; returns (rows, N, R)."""
    n, d = x.shape[0], x.shape[-1]
    rows = x.reshape(n, -1, d)
    return rows, n, rows.shape[1]


def parameter_tangents(module: nn.Module, inputs: tuple[Any, ...], names: Sequence[str]) -> Tensor:
    """Exact output derivatives ``∂y / ∂θ_k`` for every entry ``k`` of a few small parameters.

    Forward-mode AD (``torch.func.jvp``) through the module's own forward, one tangent per
    scalar entry, so the cost is ``Σ numel`` forward passes: meant for a handful of scalars
    (a homotopy coefficient, RBF lengthscales), whose exact GGN block is then
    :func:`tangent_ggn`. Runs inside an adapter call, so the engine does not capture it.

    Args:
        module: the module.
        inputs: its forward inputs.
        names: attribute names of the parameters (flattened and concatenated in this order).

    Returns:
        ``[N, K, *y.shape[1:]]`` with ``K = Σ numel``.
    """
    from torch.func import functional_call, jvp

    primals: dict[str, Tensor] = {n: module.get_parameter(n).detach() for n in names}
    total = sum(p.numel() for p in primals.values())

    def call(params: dict[str, Tensor]) -> Tensor:
        return functional_call(module, params, inputs)

    tangents = []
    for k in range(total):
        ref = next(iter(primals.values()))
        flat = torch.zeros(total, dtype=ref.dtype, device=ref.device)
        flat[k] = 1.0
        direction, offset = {}, 0
        for n, p in primals.items():
            direction[n] = flat[offset : offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
        tangents.append(jvp(call, (primals,), (direction,))[1])  # (output, tangent)
    return torch.stack(tangents, dim=1)


def tangent_ggn(tangents: Tensor, output_grads: Tensor) -> Tensor:
    """Exact GGN block ``Σ_{s,n} j jᵀ`` with ``j_{s,n,k} = <∂f/∂y_n (v_s), ∂y_n/∂θ_k>``.

    Args:
        tangents: ``[N, K, *y.shape[1:]]`` from :func:`parameter_tangents`.
        output_grads: ``[S, N, *y.shape[1:]]``.

    Returns:
        ``[K, K]``.
    """
    n, k = tangents.shape[:2]
    j = torch.einsum(
        "nkd,snd->snk",
        tangents.reshape(n, k, -1),
        output_grads.reshape(output_grads.shape[0], n, -1),
    )
    return covariance(j.reshape(-1, k))

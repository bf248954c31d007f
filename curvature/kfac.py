"""The result of a KFAC fit: blocks of a block-diagonal GGN plus what was fitted.

With ``H ≈ blockdiag(H_1, ..., H_L)`` and a Gaussian prior with one precision ``δ_b`` per block,

* ``log det(H + P) = Σ_b log det(H_b + δ_b I)``,
* ``γ = Σ_b Σ_{λ ∈ spec(H_b)} λ / (λ + δ_b)`` (effective number of parameters, App. D.2),

both differentiable w.r.t. the precisions (and hence their logs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from curvature.blocks import CurvatureBlock
from curvature.likelihoods import Likelihood
from curvature.spectra import BlockSpectra

if TYPE_CHECKING:  # pragma: no cover
    from curvature.engine import KFACConfig

__all__ = ["KFAC", "PriorPrecision"]

PriorPrecision = float | Tensor | Mapping[str, float | Tensor]
"""One shared precision (float / 0-dim tensor) or a mapping block name -> precision."""


@dataclass(eq=False)
class KFAC:
    """Kronecker-factored GGN of a model on a data set.

    Attributes:
        blocks: the curvature blocks, in module / parameter order.
        num_data: number of data points ``N`` summed over.
        log_likelihood: ``Σ_n log p(y_n | f(x_n))`` at the fitted parameters (0-dim, detached).
        likelihood: the likelihood the GGN belongs to.
        config: the :class:`~curvature.engine.KFACConfig` used.
        output_dim: number of model outputs per datum (classes ``C`` or regression ``D``).
    """

    blocks: tuple[CurvatureBlock, ...]
    num_data: int
    log_likelihood: Tensor
    likelihood: Likelihood
    config: KFACConfig
    output_dim: int = 0
    _spectra: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {b.name: b for b in self.blocks}
        if len(self._by_name) != len(self.blocks):
            raise ValueError("block names must be unique")

    def __getitem__(self, name: str) -> CurvatureBlock:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no block {name!r}; blocks are {list(self._by_name)}") from None

    def __iter__(self):
        return iter(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    @property
    def names(self) -> list[str]:
        """Block names in order."""
        return [b.name for b in self.blocks]

    @property
    def numel(self) -> int:
        """Number of parameter entries covered by all blocks."""
        return sum(b.numel for b in self.blocks)

    def blocks_of_parameter(self) -> dict[str, list[str]]:
        """Qualified parameter name -> names of the blocks covering (parts of) it."""
        out: dict[str, list[str]] = {}
        for block in self.blocks:
            for piece in block.params:
                out.setdefault(piece.name, []).append(block.name)
        return out

    def _precisions(self, prior_precision: PriorPrecision) -> list[Tensor]:
        if isinstance(prior_precision, Mapping):
            missing = [n for n in self.names if n not in prior_precision]
            extra = [n for n in prior_precision if n not in self._by_name]
            if missing or extra:
                raise ValueError(
                    f"prior precisions must be given for exactly the blocks {self.names}; "
                    f"missing {missing}, unknown {extra}"
                )
            return [torch.as_tensor(prior_precision[n]) for n in self.names]
        shared = torch.as_tensor(prior_precision)
        return [shared] * len(self.blocks)

    def spectra(self, dtype: torch.dtype | None = None) -> BlockSpectra:
        """The blocks' product spectra, packed once (cached per eigendecomposition dtype)."""
        if dtype not in self._spectra:
            self._spectra[dtype] = BlockSpectra([b.eigenvalues(dtype) for b in self.blocks])
        return self._spectra[dtype]

    def block_logdets(self, deltas: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """``[B]`` ``log det(H_b + δ_b I)`` for ``deltas [B]`` in block order (differentiable).

        The repeated evaluation of a marglik optimisation: a few tensor operations and one
        host sync for all blocks (:class:`~curvature.spectra.BlockSpectra`).
        """
        return self.spectra(dtype).logdets(deltas)

    def block_effective_parameters(
        self, deltas: Tensor, dtype: torch.dtype | None = None
    ) -> Tensor:
        """``[B]`` ``γ_b = Σ λ / (λ + δ_b)`` for ``deltas [B]`` in block order."""
        return self.spectra(dtype).effective_parameters(deltas)

    def logdet(self, prior_precision: PriorPrecision, dtype: torch.dtype | None = None) -> Tensor:
        """``log det(H + P)`` with ``P`` one precision per block (or one shared).

        Args:
            prior_precision: shared precision or mapping block name -> precision (``> 0``).
            dtype: eigendecompose the factors in this dtype (e.g. ``torch.float64``).
        """
        return self.block_logdets(self._precision_vector(prior_precision), dtype).sum()

    def effective_parameters(
        self, prior_precision: PriorPrecision, dtype: torch.dtype | None = None
    ) -> dict[str, Tensor]:
        """Per-block effective number of parameters ``γ_b = Σ λ / (λ + δ_b)``."""
        gammas = self.block_effective_parameters(self._precision_vector(prior_precision), dtype)
        return dict(zip(self.names, gammas.unbind(), strict=True))

    def _precision_vector(self, prior_precision: PriorPrecision) -> Tensor:
        deltas = self._precisions(prior_precision)
        if not deltas:
            return torch.zeros(0)
        for name, d in zip(self.names, deltas, strict=True):
            if d.numel() != 1:
                raise ValueError(
                    f"one prior precision per block expected, got shape {tuple(d.shape)} for "
                    f"block {name!r}"
                )
        common = deltas[0].dtype
        for d in deltas[1:]:
            common = torch.promote_types(common, d.dtype)
        if not common.is_floating_point:
            common = torch.get_default_dtype()
        device = self.blocks[0].factors[0].device if self.blocks else None
        return torch.stack([d.to(device=device, dtype=common).reshape(()) for d in deltas])

    def to_dense(self, parameters: Sequence[tuple[str, int]]) -> Tensor:
        """The block-diagonal GGN approximation as a dense matrix (tests, tiny models).

        Args:
            parameters: ``(qualified name, numel)`` of the parameters in the order of the
                desired flattening, e.g. ``[(n, p.numel()) for n, p in model.named_parameters()]``;
                entries not covered by any block get zero rows and columns.

        Returns:
            ``[P, P]`` with ``P = Σ numel``.
        """
        offsets, total = {}, 0
        for name, numel in parameters:
            offsets[name] = total
            total += numel
        ref = self.blocks[0].factors[0].data if self.blocks else torch.zeros(())
        dense = torch.zeros(total, total, dtype=ref.dtype, device=ref.device)
        for block in self.blocks:
            index = torch.cat(
                [
                    torch.arange(offsets[p.name] + p.start, offsets[p.name] + p.stop)
                    for p in block.params
                ]
            ).to(ref.device)
            dense[index[:, None], index[None, :]] += block.to_dense()
        return dense

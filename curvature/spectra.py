r"""The product spectra of many Kronecker blocks, packed once: all log-determinants in a few ops.

The marginal likelihood is maximised by many small Adam steps on the prior precisions at fixed
curvature, each evaluating ``Σ_b log det(H_b + δ_b I)`` over all blocks ``b``. Per block that is
a handful of tensor operations (:func:`curvature.linalg.kron_logdet`), so a model of 40 blocks
spends ~40x more kernel launches (and, with a per-block check of ``δ_b``, host syncs) than
arithmetic on a GPU. :class:`BlockSpectra` materialises the product spectra of the blocks once,
concatenated into one vector ``λ [P]`` (``P = Σ_b numel_b``, the number of covered
parameters), and evaluates all blocks together:

.. math::
    \text{logdet}_b = \sum_{i \in b} \log(\lambda_i + \delta_b), \qquad
    \gamma_b = \sum_{i \in b} \frac{\lambda_i}{\lambda_i + \delta_b},

in float64, one sum per block over a split of the vector (about ``2 B + 10`` operations
instead of ~40 per block), with ``∂/∂δ_b`` computed in the same pass. Blocks whose spectrum
exceeds ``max_block`` entries (or that would push the packed vector past ``max_entries``) stay
on the chunked per-block path, which never stores their spectrum.

Example:
    >>> import torch
    >>> spectra = BlockSpectra([(torch.tensor([1.0, 2.0]), torch.tensor([3.0])),
    ...                         (torch.tensor([0.5]),)])
    >>> spectra.logdets(torch.tensor([1.0, 2.0]))  # [log 4 + log 7, log 2.5]
    tensor([3.3322, 0.9163])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from curvature.linalg import (
    SpectrumPiece,
    SpectrumQuantity,
    SpectrumSums,
    kron_effective_parameters,
    kron_eigenvalues,
    kron_logdet,
)

__all__ = ["BlockSpectra"]

MAX_BLOCK = 1 << 22
"""Largest block spectrum that is packed (larger ones are summed in chunks, never stored)."""
MAX_ENTRIES = 1 << 25
"""Most entries of the packed vector (256 MiB in float64)."""


class BlockSpectra:
    """Product spectra of ``B`` blocks for repeated log-determinants at changing precisions.

    Args:
        eigenvalues: per block, one ``[d_i]`` tensor of non-negative eigenvalues per factor
            (e.g. ``[b.eigenvalues() for b in kfac.blocks]``), all on one device.
        max_block: blocks with more product eigenvalues stay on the chunked per-block path.
        max_entries: at most this many entries are packed (blocks in order, first come).

    Attributes:
        numels: ``(B,)`` the blocks' parameter counts ``Π d_i``.
        packed: indices of the packed blocks; the others are evaluated one by one.
    """

    def __init__(
        self,
        eigenvalues: Sequence[Sequence[Tensor]],
        max_block: int = MAX_BLOCK,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.eigenvalues = [tuple(v.detach() for v in block) for block in eigenvalues]
        self.numels = tuple(math.prod(v.numel() for v in block) for block in self.eigenvalues)
        packed, total = [], 0
        for i, numel in enumerate(self.numels):
            if numel <= max_block and total + numel <= max_entries:
                packed.append(i)
                total += numel
        self.packed = tuple(packed)
        chosen = set(packed)
        self.loose = tuple(i for i in range(len(self.numels)) if i not in chosen)
        device = self.eigenvalues[0][0].device if self.eigenvalues else None
        if packed:
            self.values = torch.cat(
                [kron_eigenvalues(self.eigenvalues[i]).to(torch.float64) for i in packed]
            )
            self.sizes = [self.numels[i] for i in packed]
            self._blocks = torch.arange(len(packed), device=device)
            self._lengths = torch.tensor(self.sizes, device=device)
            # which precisions the packed blocks take (None: all, in order)
            self._packed_index = torch.tensor(packed, device=device) if self.loose else None
        order = list(self.packed) + list(self.loose)
        self._inverse = torch.empty(len(order), dtype=torch.long)
        self._inverse[order] = torch.arange(len(order))
        self._inverse = self._inverse.to(device)
        self._identity = order == list(range(len(order)))

    def __len__(self) -> int:
        return len(self.numels)

    def logdets(self, deltas: Tensor) -> Tensor:
        """``[B]`` ``log det(H_b + δ_b I)``, differentiable in ``deltas [B]`` (each ``> 0``)."""
        return self._evaluate("logdet", deltas)

    def effective_parameters(self, deltas: Tensor) -> Tensor:
        """``[B]`` ``γ_b = Σ λ / (λ + δ_b)``, differentiable in ``deltas [B]`` (each ``> 0``)."""
        return self._evaluate("effective_parameters", deltas)

    def _evaluate(self, quantity: SpectrumQuantity, deltas: Tensor) -> Tensor:
        deltas = torch.as_tensor(deltas)
        if deltas.shape != (len(self),):
            raise ValueError(
                f"one prior precision per block expected: shape ({len(self)},), "
                f"got {tuple(deltas.shape)}"
            )
        bad = ~(torch.isfinite(deltas) & (deltas > 0))
        if bool(bad.any()):  # the only host sync of an evaluation
            index = bad.nonzero().flatten()[:5].tolist()
            raise ValueError(
                f"prior precision must be finite and positive, got "
                f"{deltas.detach()[index].tolist()} for blocks {index}"
            )
        if len(self) == 0:
            return deltas.new_zeros(0)
        parts = []
        if self.packed:
            packed_index = self._packed_index
            packed_deltas = (
                deltas if packed_index is None else deltas[packed_index.to(deltas.device)]
            )
            piece = SpectrumPiece(self.values, self.sizes, self._blocks, self._lengths)
            parts.append(SpectrumSums.apply(quantity, packed_deltas, (piece,)))
        single = kron_logdet if quantity == "logdet" else kron_effective_parameters
        parts.extend(single(self.eigenvalues[i], deltas[i]).reshape(1) for i in self.loose)
        out = torch.cat(parts) if len(parts) > 1 else parts[0]
        return out if self._identity else out[self._inverse]

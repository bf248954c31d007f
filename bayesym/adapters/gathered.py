r"""KFAC for convolutions whose kernel is a gather of a parameter (CONV, lifting, GCONV, mixed).

Every convolution of the layer zoo is ``y = conv(pad(x), W)`` with an expanded kernel
``W [R_exp, D]`` (rows: output channels, flattened over the group axis; columns: the unfolded
patch feature ``(c, [h,] i, j)``) whose every row is a *permuted copy* of a row of the
parameter ``ψ [R, D]``:

.. math::
    W[o, e] = \psi[\rho(o), \pi_o(e)], \qquad
    y_{o,t} = \sum_e W[o, e]\, p_{e,t} = \sum_d \psi[\rho(o), d]\, p_{\pi_o^{-1}(d), t}.

For a group convolution the ``m = |G|`` copies of a row are the group elements
(:mod:`bayesym.groups.expansion`), for a mixed component the ``|K|`` elements of the component,
for a plain convolution ``m = 1``. So ``ψ`` is a linear map shared over (copy ``j``, position
``t``) with inputs ``a_{j,t} = Π_j p_t`` (App. A; Sec. 5), and

* expand: ``A = (1/m) Σ_j Π_j C Π_jᵀ`` with ``C = Σ_{n,t} p pᵀ / (N T)`` (one patch covariance,
  ``m`` cheap gathers), ``B = Σ_{s,n,j,t} g gᵀ`` over the output gradients of the copies;
* reduce: ``ā_n = mean_{j,t} a``, ``ĝ = Σ_{j,t} g``.

The structure (``ρ``, the ``m`` permutations, which expanded row is copy ``j`` of row ``r``) is
read off by *probing* the layer's own expansion with ``ψ = arange`` — the adapter cannot drift
from the layer's index maps. A structure whose rows do not share one set of permutations is
refused (it would not be Kronecker).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from curvature import CurvatureError
from curvature.adapters import Approx, conv_patch_covariance, covariance, patch_covariance

if TYPE_CHECKING:  # pragma: no cover
    from bayesym.layers.conv import PaddingMode

__all__ = [
    "GatherStructure",
    "SamePatches",
    "cached_structure",
    "gather_structure",
    "same_patches",
]

_STRUCTURES: dict[tuple, GatherStructure] = {}


@dataclass(frozen=True)
class GatherStructure:
    """How an expanded kernel ``[R_exp, D]`` is gathered from a parameter ``[R, D]``.

    Attributes:
        inverse: ``[m, D]`` — ``a_j = p[inverse[j]]`` is the input of copy ``j``.
        copy_rows: ``[R, m]`` — expanded row that is copy ``j`` of parameter row ``r``.
    """

    inverse: Tensor
    copy_rows: Tensor

    @property
    def copies(self) -> int:
        """Number ``m`` of copies of every parameter row."""
        return self.inverse.shape[0]

    def input_statistic(self, patches: SamePatches, approx: Approx) -> tuple[Tensor, int]:
        """``(Σ a aᵀ, count)`` from the input's patches."""
        m = self.copies
        if approx == "expand":
            c = patches.covariance()
            inverse = self.inverse.to(c.device)  # [m, D]: one gather for all copies
            total = c[inverse[:, :, None], inverse[:, None, :]].sum(0)
            return total, patches.num_data * patches.positions * m
        mean = patches.mean()  # [N, D]
        abar = mean[:, self.inverse.to(mean.device)].sum(1) / m  # [N, m, D] -> [N, D]
        return covariance(abar), patches.num_data

    def output_statistic(self, grads: Tensor, approx: Approx) -> Tensor:
        """``Σ g gᵀ`` over the parameter rows from output gradients ``[S, N, R_exp, T]``."""
        s, n, r_exp, t = grads.shape
        rows, m = self.copy_rows.shape
        identity = (
            m == 1 and rows == r_exp and bool((self.copy_rows[:, 0] == torch.arange(rows)).all())
        )
        if identity:  # no copies: the parameter rows are the kernel rows themselves
            g = grads.reshape(s * n, rows, t)
        else:
            g = grads[:, :, self.copy_rows.to(grads.device)].reshape(s * n, rows, m * t)
        if approx == "reduce":
            g = g.sum(-1, keepdim=True)
        return patch_covariance(g)


def gather_structure(
    expand: Callable[[Tensor], Tensor], shape: torch.Size, owner: str
) -> GatherStructure:
    """Probe ``expand`` (parameter -> kernel ``[R_exp, C, k, k]``) with ``arange`` values.

    Args:
        expand: the layer's own expansion of a parameter-shaped tensor.
        shape: the parameter's shape ``[R, ...]``.
        owner: name for error messages.

    Raises:
        CurvatureError: if kernel rows are not permuted copies of parameter rows sharing one
            set of permutations.
    """
    numel = int(torch.Size(shape).numel())
    probe = torch.arange(numel, dtype=torch.float64).reshape(shape)
    index = expand(probe).reshape(-1).round().long()
    rows_param = shape[0]
    width = numel // rows_param
    index = index.reshape(-1, width)
    if index.shape[1] != width:
        raise CurvatureError(
            f"{owner}: expanded kernel rows have {index.shape[1]} entries, expected {width}"
        )
    source = index // width
    cols = index % width
    if not bool((source == source[:, :1]).all()):
        raise CurvatureError(f"{owner}: an expanded kernel row mixes several parameter rows")
    source = source[:, 0]
    if not bool((cols.sort(dim=1).values == torch.arange(width)).all()):
        raise CurvatureError(
            f"{owner}: an expanded kernel row is not a permutation of a parameter row"
        )
    distinct, which = torch.unique(cols, dim=0, return_inverse=True)
    m = distinct.shape[0]
    copy_rows = torch.full((rows_param, m), -1, dtype=torch.long)
    copy_rows[source, which] = torch.arange(index.shape[0])
    counts = torch.bincount(source, minlength=rows_param)
    if not bool((counts == m).all()) or bool((copy_rows < 0).any()):
        raise CurvatureError(
            f"{owner}: parameter rows are not all expanded with the same {m} permutations; "
            "the layer has no Kronecker-factored curvature of this form"
        )
    return GatherStructure(inverse=distinct.argsort(dim=1), copy_rows=copy_rows)


def cached_structure(key: tuple, build: Callable[[], GatherStructure]) -> GatherStructure:
    """Memoise structures by a key that determines the expansion (layer type, groups, shape).

    The structure depends only on the layer's configuration, never on its parameter values,
    so probing once per configuration suffices.
    """
    if key not in _STRUCTURES:
        _STRUCTURES[key] = build()
    return _STRUCTURES[key]


@dataclass(eq=False)
class SamePatches:
    """The stride-1 'same' patches ``p_{n,t} [C k²]`` of one input, never unfolded for expand.

    Expand needs only ``Σ_{n,t} p pᵀ``, computed from shifted pixel products without the
    ``[N, C k², T]`` copy (:func:`curvature.conv_patch_covariance`) and cached, so the
    components of a mixed layer share it; reduce needs the per-datum mean patch.

    Attributes:
        padded: ``[N, C, Hp, Wp]``, the input padded as ``same_conv2d`` pads it.
        kernel_size: ``k``.
    """

    padded: Tensor
    kernel_size: int
    _covariance: Tensor | None = None

    @property
    def num_data(self) -> int:
        """``N``."""
        return self.padded.shape[0]

    @property
    def positions(self) -> int:
        """Number ``T`` of output positions."""
        k = self.kernel_size
        return (self.padded.shape[-2] - k + 1) * (self.padded.shape[-1] - k + 1)

    def covariance(self) -> Tensor:
        """``Σ_{n,t} p pᵀ`` ``[C k², C k²]`` (cached)."""
        if self._covariance is None:
            k = self.kernel_size
            self._covariance = conv_patch_covariance(self.padded, (k, k))
        return self._covariance

    def mean(self) -> Tensor:
        """``mean_t p_{n,t}`` ``[N, C k²]``."""
        return torch.nn.functional.unfold(self.padded, self.kernel_size).mean(-1)


_SHARED: dict[tuple, tuple[weakref.ref, int, SamePatches]] = {}


def _forget(key: tuple, _owner: weakref.ref) -> None:
    """Drop the patches remembered under ``key`` (their input was freed)."""
    _SHARED.pop(key, None)


"""Patches of live inputs, keyed by the tensor owning the memory and the view's geometry."""


def same_patches(x: Tensor, kernel_size: int, padding_mode: PaddingMode) -> SamePatches:
    """The patches of a stride-1 'same' convolution of ``x``, padded as ``same_conv2d`` pads.

    ``x`` is ``[N, C, H, W]`` or ``[N, C, |G|, H, W]`` (group axis folded into the channels).
    The paths of a relaxed layer (:mod:`bayesym.layers.paths`) see the same input, the plain
    ones as a flattened view of what the group ones get, so the patches and their covariance
    are shared: they are remembered while the tensor that owns the memory (the view's base) is
    alive and unmodified (same object, same version counter, which views share with their
    base) for the same view geometry (offset, shape, strides), and dropped when it is freed. A
    result that would keep the input alive (no padding: the patches are a view of it) is not
    remembered.
    """
    from bayesym.layers.conv import pad_same

    flat = x.flatten(1, 2) if x.dim() == 5 else x
    owner = flat if flat._base is None else flat._base
    key = (
        id(owner), flat.storage_offset(), tuple(flat.shape), flat.stride(), kernel_size,
        padding_mode,
    )  # fmt: skip
    hit = _SHARED.get(key)
    if hit is not None and hit[0]() is owner and hit[1] == owner._version:
        return hit[2]
    patches = SamePatches(pad_same(flat, kernel_size // 2, padding_mode), kernel_size)
    if patches.padded.untyped_storage().data_ptr() != flat.untyped_storage().data_ptr():
        alive = weakref.ref(owner, partial(_forget, key))
        _SHARED[key] = (alive, owner._version, patches)
    return patches

r"""Input factor of a stride-1 convolution without unfolding its patches.

For a padded input ``x [N, C, Hp, Wp]``, a kernel ``kh x kw`` with dilation ``(dh, dw)`` and
stride 1, the expand input factor sums over the ``T = Ho Wo`` output positions
(``Ho = Hp - dh (kh - 1)``, ``Wo = Wp - dw (kw - 1)``):

.. math::
    A[(c,i,j), (c',i',j')] = \sum_n \sum_{y<Ho,\, x<Wo}
        x_{n,c,\,y + dh\,i,\,x + dw\,j}\; x_{n,c',\,y + dh\,i',\,x + dw\,j'}.

Every pixel sits in ``kh kw`` patches, so the unfold-and-multiply route (``im2col`` copy, then
``(C kh kw)^2 N T`` multiply-adds) recomputes each product of two pixels up to ``kh kw``
times. Substituting ``u = y + dh i``, each entry is a *window sum* of a product map that only
depends on the offset ``δ = (dh (i' - i), dw (j' - j))``:

.. math::
    M_δ[c, c', u] = \sum_n x_{n,c,u}\, x_{n,c',u+δ}, \qquad
    A[(c,i,j),(c',i',j')] = \sum_{u \in [dh\,i, dh\,i + Ho) \times [dw\,j, dw\,j + Wo)} M_δ[c,c',u].

There are ``(2 kh - 1)(2 kw - 1)`` offsets, all but ``δ = 0`` in pairs related by a transpose
(``M_{-δ}[c, c', u] = M_δ[c', c, u - δ]``), so ``K = ((2 kh - 1)(2 kw - 1) + 1) / 2`` maps
cost ``K C^2 N Hp Wp`` multiply-adds (3x3 kernel: 13 instead of 81 per ``C^2 N`` and
position) plus window sums, which do not grow with ``N``.
Windows never reach a pixel pair outside the padded input, so the flat-index shift used for
``u + δ`` (which wraps around rows) only fills map entries that no window reads.

The products are batched over the ``Hp Wp`` positions with the batch ``N`` as the inner
dimension; for few channels these ``[C, N] x [N, C]`` products are too small to run at GEMM
speed, so without horizontal dilation the ``2 kw - 1`` column offsets of one row offset
``a`` share one product ``[C, N] x [N, (2 kw - 1) C]``: the pixels at flat positions
``u + a Wp - (kw - 1) .. u + a Wp + kw - 1`` are adjacent in a ``[positions, C, N]`` layout.

Few operations per call (each is a kernel launch on a GPU, where a curvature pass of a small
model is launch-bound): the window sums of all maps are two reductions of one table (rows
route) or go straight into a preallocated table (offsets route), and the index tensors that
assemble the factor are built once per kernel size, route and device. A 3x3 factor takes 39
aten operations on the rows route and 161 on the offsets route.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from curvature.adapters.base import patch_covariance

__all__ = ["conv_patch_covariance"]


@lru_cache(maxsize=64)
def _offset_plan(
    kh: int, kw: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int, int, bool]]]:
    """Offsets ``(a, b)`` of the upper half plane and where each factor block comes from.

    Returns ``offsets`` and, for every block ``(p, q)`` of the ``[kh kw, kh kw]`` grid of
    ``[C, C]`` blocks in row-major order (``p = i kw + j``, ``q = i' kw + j'``), the tuple
    ``(offset index, i0, j0, transposed)``: the block is the window sum of that offset's map
    starting at kernel position ``(i0, j0)``, transposed when its own offset is the negative.
    """
    offsets = [(a, b) for a in range(kh) for b in range(-(kw - 1), kw) if a > 0 or b >= 0]
    index = {o: k for k, o in enumerate(offsets)}
    sources = []
    for i in range(kh):
        for j in range(kw):
            for i2 in range(kh):
                for j2 in range(kw):
                    a, b = i2 - i, j2 - j
                    if (a, b) in index:
                        sources.append((index[(a, b)], i, j, False))
                    else:
                        sources.append((index[(-a, -b)], i2, j2, True))
    return offsets, sources


def _route(channels: int, kh: int, kw: int, dw: int, positions: int) -> str:
    """Which computation is fastest for the shape.

    The thresholds are the CPU crossovers of docs/benchmarks.md ("Design choices of the
    curvature engine"):

    * ``"unfold"``: ``1 x 1`` kernels (no repeated products), 1-2 channels with horizontal
      dilation, and few output positions (``positions`` = ``Ho Wo``): one position, or at most
      4 with 8 or more channels, where the shifted routes' fixed cost per offset dominates;
    * ``"rows"``: fewer than 8 channels without horizontal dilation: the maps of all column
      offsets of one row offset in one batched product (module docstring);
    * ``"offsets"``: one batched product per offset (8 or more channels).
    """
    if kh * kw == 1 or positions == 1 or (positions <= 4 and channels >= 8):
        return "unfold"
    if channels < 8 and dw == 1:
        return "rows"
    return "offsets" if channels >= 3 else "unfold"


@lru_cache(maxsize=64)
def _sources(kh: int, kw: int, route: str, device: torch.device) -> tuple[Tensor, ...]:
    """Index tensors ``(first, i0, j0, column, transposed)`` of the ``(kh kw)^2`` factor blocks.

    Block ``s`` is ``table[first[s], i0[s], j0[s], :, column[s]]`` of the window-sum table of
    the route (transposed where ``transposed[s]``): for ``"offsets"`` the table is
    ``[K, kh, kw, C, 1, C]`` (``first`` = offset index, ``column`` = 0), for ``"rows"`` it is
    ``[kh, kh, kw, C, 2 kw - 1, C]`` (``first`` = row offset ``a``, ``column`` = ``b + kw - 1``).
    Built once per kernel, route and device (no host-to-device copies per call).
    """
    offsets, sources = _offset_plan(kh, kw)
    rows = []
    for k, i0, j0, transposed in sources:
        a, b = offsets[k]
        rows.append(
            (a, i0, j0, b + kw - 1, transposed) if route == "rows" else (k, i0, j0, 0, transposed)
        )
    columns = list(zip(*rows, strict=True))
    return tuple(
        torch.tensor(v, device=device, dtype=torch.bool if i == 4 else torch.int64)
        for i, v in enumerate(columns)
    )


def _window_sums(maps: Tensor, ho: int, wo: int, dh: int, dw: int) -> Tensor:
    """Window sums of ``K`` maps at once: ``[K, Hp, Wp, ...] -> [K, kh, kw, ...]``.

    Entry ``(i0, j0)`` sums the window ``[dh i0, dh i0 + Ho) x [dw j0, dw j0 + Wo)``.
    """
    row_sums = maps.unfold(1, ho, dh).sum(-1)  # [K, kh, Wp, ...]
    return row_sums.unfold(2, wo, dw).sum(-1)


def _offset_table(
    x: Tensor, dilation: tuple[int, int], offsets: list[tuple[int, int]], ho: int, wo: int
) -> Tensor:
    """Window sums of every offset's map, ``[K, kh, kw, C, 1, C]``.

    One batched product per offset into one reused ``[L, C, C]`` buffer (it stays in cache),
    whose window sums go straight into the table. The buffer's tail beyond ``L - shift`` keeps
    the previous offset's products: no window of a start that uses this offset reaches it
    (module docstring), so only table entries that are never looked up see them.
    """
    n, c, hp, wp = x.shape
    dh, dw = dilation
    length = hp * wp
    # [L, N, C] through channels-last: a cheaper copy than permuting to it directly
    pixels = x.contiguous(memory_format=torch.channels_last).permute(2, 3, 0, 1)
    pixels = pixels.reshape(length, n, c).contiguous()
    product = x.new_empty(length, c, c)  # offset (0, 0) comes first and fills all of it
    kh, kw = (hp - ho) // dh + 1, (wp - wo) // dw + 1  # the kernel size
    table = x.new_empty(len(offsets), kh, kw, c, c)
    for k, (a, b) in enumerate(offsets):
        shift = a * dh * wp + b * dw  # >= 0 in the upper half plane
        torch.bmm(
            pixels[: length - shift].transpose(1, 2), pixels[shift:], out=product[: length - shift]
        )
        row_sums = product.view(hp, wp, c, c).unfold(0, ho, dh).sum(-1)  # [kh, Wp, C, C]
        torch.sum(row_sums.unfold(1, wo, dw), -1, out=table[k])
    return table.unsqueeze(-2)


def _row_table(x: Tensor, kernel_size: tuple[int, int], dh: int, ho: int, wo: int) -> Tensor:
    """Window sums of the maps of every offset ``(a, b)``, ``[kh, kh, kw, C, 2 kw - 1, C]``.

    One batched product per row offset ``a`` for all its column offsets ``b``.

    The pixels are stored as ``P [kw - 1 + L + kw - 1, C, N]`` (zero head and tail), so the
    pixels at flat positions ``u + s - (kw - 1) .. u + s + kw - 1`` form one contiguous
    ``[(2 kw - 1) C, N]`` matrix and an overlapping strided view serves all column offsets of
    the row offset ``s = a dh Wp`` at once (for ``a = 0`` the negative ones, transposes of the
    positive ones, are computed and not used).
    """
    n, c, hp, wp = x.shape
    kh, kw = kernel_size
    length = hp * wp
    width = 2 * kw - 1
    head = kw - 1
    pixels = x.new_zeros(head + length + kw - 1, c, n)
    pixels[head : head + length] = x.permute(2, 3, 1, 0).reshape(length, c, n)
    product = x.new_zeros(kh, length, c, width * c)
    for a in range(kh):
        rows = length - a * dh * wp  # positions whose row-shifted pixel exists
        shifted = pixels.as_strided((rows, width * c, n), (c * n, n, 1), a * dh * wp * c * n)
        torch.bmm(pixels[head : head + rows], shifted.transpose(1, 2), out=product[a, :rows])
    return _window_sums(product.view(kh, hp, wp, c, width, c), ho, wo, dh, 1)


def conv_patch_covariance(
    x: Tensor,
    kernel_size: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
    route: str | None = None,
) -> Tensor:
    """``Σ_{n,t} a aᵀ`` over the stride-1 patches ``a_{n,t} [C kh kw]`` of a padded input.

    Equals ``patch_covariance(F.unfold(x, kernel_size, dilation=dilation))`` (feature order
    ``(c, i, j)``, row-major like ``weight.flatten(1)``) up to round-off, computed from shifted
    pixel products (module docstring) without the unfolded copy.

    Args:
        x: ``[N, C, Hp, Wp]``, the input after the convolution's own padding.
        kernel_size: ``(kh, kw)``.
        dilation: ``(dh, dw)``.
        route: ``"rows"`` (no horizontal dilation), ``"offsets"`` or ``"unfold"`` to force a
            computation (tests, benchmarks); ``None``: the route the shape rules pick (the
            fastest for such shapes, docs/benchmarks.md, "Design choices of the curvature
            engine").

    Returns:
        ``[C kh kw, C kh kw]``, symmetrised (bitwise symmetric).
    """
    _, c, hp, wp = x.shape
    kh, kw = kernel_size
    dh, dw = dilation
    ho, wo = hp - dh * (kh - 1), wp - dw * (kw - 1)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"kernel {kernel_size} with dilation {dilation} does not fit the padded input "
            f"{tuple(x.shape)}"
        )
    if route is None:
        route = _route(c, kh, kw, dw, ho * wo)
    elif route not in ("rows", "offsets", "unfold") or (route == "rows" and dw != 1):
        raise ValueError(
            f"route must be 'rows' (horizontal dilation 1), 'offsets' or 'unfold', got {route!r} "
            f"with dilation {dilation}"
        )
    if route == "unfold":
        out = patch_covariance(torch.nn.functional.unfold(x, kernel_size, dilation=dilation))
        return 0.5 * (out + out.T)

    if route == "rows":
        table = _row_table(x, kernel_size, dh, ho, wo)
    else:
        table = _offset_table(x, dilation, _offset_plan(kh, kw)[0], ho, wo)
    first, i0, j0, column, transposed = _sources(kh, kw, route, x.device)
    blocks = table[first, i0, j0, :, column]  # [(kh kw)^2, C, C]
    blocks = torch.where(transposed[:, None, None], blocks.transpose(1, 2), blocks)
    grid = blocks.view(kh * kw, kh * kw, c, c)
    # grid[(i,j), (i',j'), c, c'] -> A[(c,i,j), (c',i',j')]
    out = grid.permute(2, 0, 3, 1).reshape(c * kh * kw, c * kh * kw)
    return 0.5 * (out + out.T)  # the GEMM of M_0 need not be bitwise symmetric

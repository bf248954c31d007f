"""In-place Gram updates: the symmetric (BLAS syrk) route equals the general product."""

import pytest
import torch
from threadpoolctl import threadpool_info
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from curvature import KFACConfig, compute_kfac
from curvature import gram as gram_module
from curvature.gram import SYRK_MIN_DIM, SYRK_MIN_WORK, gram_update_, mirror_lower_

WIDE = (400, 300)  # M d² = 3.6e7 >= SYRK_MIN_WORK, d >= SYRK_MIN_DIM: symmetric route


def test_the_wide_shape_takes_the_symmetric_route_and_the_narrow_one_does_not():
    assert WIDE[1] >= SYRK_MIN_DIM and WIDE[0] * WIDE[1] ** 2 >= SYRK_MIN_WORK
    assert gram_update_(torch.zeros(300, 300), torch.randn(*WIDE))
    assert not gram_update_(torch.zeros(300, 300), torch.randn(10, 300))  # small product
    assert not gram_update_(torch.zeros(8, 8), torch.randn(10**6, 8))  # narrow factor
    assert not gram_update_(torch.zeros(300, 300, dtype=torch.bfloat16),
                            torch.randn(*WIDE, dtype=torch.bfloat16))  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_symmetric_update_writes_the_lower_triangle_of_the_sum(dtype):
    rows1, rows2 = torch.randn(*WIDE, dtype=dtype), torch.randn(*WIDE, dtype=dtype)
    start = torch.randn(300, 300, dtype=dtype)
    start = start + start.T
    matrix = start.clone()
    assert gram_update_(matrix, rows1) and gram_update_(matrix, rows2)
    expected = start + rows1.T @ rows1 + rows2.T @ rows2
    upper = torch.ones(300, 300, dtype=torch.bool).triu(1)
    assert torch.equal(matrix[upper], start[upper])  # stale until mirrored
    mirror_lower_(matrix)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(matrix, expected, rtol=tol, atol=tol * expected.abs().max())
    assert torch.equal(matrix, matrix.T)


def test_non_contiguous_rows_give_the_same_sum(float64):
    rows = torch.randn(300, 400).T  # [400, 300], transposed strides
    matrix = torch.zeros(300, 300)
    assert gram_update_(matrix, rows)
    assert torch.allclose(mirror_lower_(matrix), rows.T @ rows, rtol=1e-12, atol=1e-10)


def test_blas_thread_pools_are_restored():
    before = [pool["num_threads"] for pool in threadpool_info()]
    gram_update_(torch.zeros(300, 300), torch.randn(*WIDE))
    assert [pool["num_threads"] for pool in threadpool_info()] == before


def test_flop_counter_counts_the_lower_triangle():
    with FlopCounterMode(display=False) as counter:
        gram_update_(torch.zeros(300, 300), torch.randn(*WIDE))
    assert counter.get_total_flops() == 400 * 300 * 301


def test_engine_factor_of_a_wide_linear_layer_is_symmetric_and_exact(float64, monkeypatch):
    """The input factor of ``Linear(300, 2)`` over two batches: full symmetric ``Xᵀ X / N``."""
    model = nn.Sequential(nn.Linear(300, 2))
    x, y = torch.randn(800, 300), torch.randint(0, 2, (800,))
    data = [(x[:400], y[:400]), (x[400:], y[400:])]
    block = compute_kfac(model, data, "classification", KFACConfig())["0.weight"]
    a = block.kron_factors[1].to_dense()
    assert torch.equal(a, a.T)
    assert torch.allclose(a, x.T @ x / 800, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(gram_module, "SYRK_MIN_DIM", 10**9)  # the general product throughout
    general = compute_kfac(model, data, "classification", KFACConfig())["0.weight"]
    assert torch.allclose(general.kron_factors[1].to_dense(), a, rtol=1e-12, atol=1e-12)


def test_rows_that_require_grad_take_the_symmetric_route(float64):
    """Module inputs keep ``requires_grad`` in views taken under ``no_grad`` (the engine's case)."""
    x = torch.randn(*WIDE, requires_grad=True)
    with torch.no_grad():
        rows = x.reshape(WIDE)
    assert rows.requires_grad
    matrix = torch.zeros(300, 300)
    assert gram_update_(matrix, rows)
    assert torch.allclose(mirror_lower_(matrix), x.detach().T @ x.detach(), rtol=1e-12)


@pytest.mark.parametrize("d", [5, 128, 300])
def test_mirror_lower_copies_the_lower_triangle_across_tile_edges(d):
    matrix = torch.randn(d, d)
    expected = matrix.tril() + matrix.tril(-1).T
    assert torch.equal(mirror_lower_(matrix, tile=64), expected)


def test_the_symmetric_update_traces_with_fake_tensors():
    """The custom operator has a fake implementation (tracing, ``torch.compile``)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        matrix, rows = torch.zeros(300, 300), torch.randn(*WIDE)
        assert gram_update_(matrix, rows)
        assert matrix.shape == (300, 300)


def test_gram_sum_of_chunks_equals_the_stacked_product(float64):
    from curvature.adapters import gram_sum

    chunks = [torch.randn(400, 300), torch.randn(7, 300), torch.randn(400, 300)]
    rows = torch.cat(chunks)
    total = gram_sum(iter(chunks), 300, rows)
    assert torch.allclose(total, rows.T @ rows, rtol=1e-12, atol=1e-10)
    assert torch.equal(total, total.T)
    assert torch.equal(gram_sum([], 4, rows), torch.zeros(4, 4))


def test_orbit_rows_are_the_same_in_any_chunking(float64):
    """The AEN adapter's per-direction rows, flushed in small or large chunks."""
    from bayesym.adapters.dense import _orbit_rows

    index = torch.randint(0, 5, (3 * 4,))
    x, grads = torch.randn(6, 4), torch.randn(9, 6, 3)
    whole = torch.cat(list(_orbit_rows(index, 5, x, grads)))
    # at least 10 rows per chunk: two directions of 6 rows, four times, then the last one
    pieces = list(_orbit_rows(index, 5, x, grads, chunk_bytes=5 * 8 * 10))
    assert [p.shape[0] for p in pieces] == [12, 12, 12, 12, 6]
    assert torch.equal(torch.cat(pieces), whole)
    outer = (grads[..., :, None] * x[None, :, None, :]).reshape(9 * 6, -1)
    assert torch.allclose(whole, torch.zeros(54, 5).index_add_(1, index, outer))


def test_the_first_symmetric_update_does_not_import_dynamo():
    """``torch.library.custom_op`` would import ``torch._dynamo`` on first call (about 1 s)."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from curvature.gram import gram_update_\n"
        "assert gram_update_(torch.zeros(300, 300), torch.randn(400, 300))\n"
        "assert 'torch._dynamo' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

"""logdet / effective parameters of Kronecker blocks vs dense torch.linalg."""

import pytest
import torch

from curvature import DenseBlock, KroneckerBlock, kron_effective_parameters, kron_logdet
from curvature.adapters import BlockDiagonalFactor, DenseFactor
from curvature.blocks import ParameterSlice


def random_psd(d, rank=None):
    m = torch.randn(d, rank or d)
    return m @ m.T


def dense_logdet(h, delta):
    return torch.linalg.slogdet(h + delta * torch.eye(h.shape[0], dtype=h.dtype))[1]


def dense_effective(h, delta):
    lam = torch.linalg.eigvalsh(h).clamp(min=0)
    return (lam / (lam + delta)).sum()


def blocks_under_test():
    a, b, c = random_psd(4, rank=2), random_psd(3), random_psd(2)
    blocks = BlockDiagonalFactor(torch.stack([random_psd(3), random_psd(3, rank=1)]))
    return {
        "dense-2": KroneckerBlock(
            "k2", (ParameterSlice("w", 0, 12),), (DenseFactor(b), DenseFactor(a))
        ),
        "dense-3": KroneckerBlock(
            "k3", (ParameterSlice("w", 0, 24),), (DenseFactor(c), DenseFactor(b), DenseFactor(a))
        ),
        "block-diagonal": KroneckerBlock(
            "kb", (ParameterSlice("w", 0, 18),), (DenseFactor(b), blocks)
        ),
        "dense-block": DenseBlock("d", (ParameterSlice("b", 0, 4),), matrix=DenseFactor(a)),
    }


@pytest.mark.parametrize("kind", ["dense-2", "dense-3", "block-diagonal", "dense-block"])
@pytest.mark.parametrize("delta", [1e-8, 1e-3, 1.0, 1e4, 1e12])
def test_logdet_and_effective_parameters_match_dense_eigh(float64, kind, delta):
    block = blocks_under_test()[kind]
    h = block.to_dense()
    # Zero eigenvalues carry ~1e-14 round-off in either computation: log(λ + δ) then differs by
    # up to ~1e-14 / δ per eigenvalue, which only matters for tiny δ.
    atol = 1e-9 + 1e-13 * block.numel / delta
    assert torch.allclose(block.logdet(delta), dense_logdet(h, delta), rtol=1e-10, atol=atol)
    assert torch.allclose(
        block.effective_parameters(delta), dense_effective(h, delta), rtol=1e-8, atol=atol
    )


@pytest.mark.parametrize("kind", ["dense-2", "block-diagonal", "dense-block"])
def test_gradients_wrt_log_precision_pass_gradcheck(float64, kind):
    block = blocks_under_test()[kind]
    log_delta = torch.tensor(0.3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: block.logdet(t.exp()), (log_delta,))
    assert torch.autograd.gradcheck(lambda t: block.effective_parameters(t.exp()), (log_delta,))


@pytest.mark.parametrize("delta", [1e-8, 1e12])
def test_finite_at_extreme_precisions_in_float32(delta):
    a = random_psd(5, rank=2)  # singular: eigenvalues ~0 (possibly negative round-off)
    block = KroneckerBlock("k", (ParameterSlice("w", 0, 25),), (DenseFactor(a), DenseFactor(a)))
    log_delta = torch.tensor(float(torch.log(torch.tensor(delta))), requires_grad=True)
    value = block.logdet(log_delta.exp()) + block.effective_parameters(log_delta.exp())
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(log_delta.grad)


def test_negative_round_off_eigenvalues_are_clamped(float64):
    a = torch.tensor([[1.0, 1.0], [1.0, 1.0]]) - 1e-12 * torch.eye(2)  # eigenvalue -1e-12
    values = DenseFactor(a).eigh().eigenvalues
    assert values.min() == 0.0


def test_chunked_spectrum_matches_outer_product(float64, monkeypatch):
    import curvature.linalg as linalg

    la, lb = torch.rand(300), torch.rand(7)
    expected = torch.log(torch.outer(la, lb) + 0.1).sum()
    monkeypatch.setattr(linalg, "_CHUNK", 50)  # forces 43 chunks of 7 rows
    assert torch.allclose(kron_logdet((la, lb), torch.tensor(0.1)), expected, rtol=1e-12)
    gamma = (torch.outer(la, lb) / (torch.outer(la, lb) + 0.1)).sum()
    assert torch.allclose(kron_effective_parameters((la, lb), torch.tensor(0.1)), gamma)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_precision_is_rejected(bad):
    with pytest.raises(ValueError, match="prior precision"):
        kron_logdet((torch.ones(2),), bad)


def test_block_diagonal_factor_is_eigendecomposed_per_block(float64):
    blocks = torch.stack([random_psd(3) for _ in range(4)])
    eig = BlockDiagonalFactor(blocks).eigh()
    assert eig.eigenvectors.data.shape == (4, 3, 3)  # never a [12, 12] matrix
    dense = torch.block_diag(*blocks)
    assert torch.allclose(
        eig.eigenvalues.sort().values, torch.linalg.eigvalsh(dense).sort().values, atol=1e-10
    )
    q = eig.eigenvectors.to_dense()
    assert torch.allclose(q @ torch.diag(eig.eigenvalues) @ q.T, dense, atol=1e-10)


def test_regression_float32_eigh_returns_nan_on_a_real_kfac_factor():
    """A 64x64 output factor (dead ReLU channels) on which float32 LAPACK eigh gives NaN here."""
    from pathlib import Path

    matrix = torch.load(Path(__file__).parent / "data" / "float32_eigh_failure.pt")
    assert matrix.dtype == torch.float32
    eig = DenseFactor(matrix).eigh()
    assert eig.eigenvalues.dtype == torch.float32
    assert torch.isfinite(eig.eigenvalues).all() and torch.isfinite(eig.eigenvectors.data).all()
    reference = torch.linalg.eigvalsh(matrix.double()).clamp(min=0)
    assert torch.allclose(eig.eigenvalues.double().sort().values, reference, atol=1e-6)
    q = eig.eigenvectors.data.double()
    assert torch.allclose(
        q @ torch.diag(eig.eigenvalues.double()) @ q.T, matrix.double(), atol=1e-6
    )


@pytest.mark.parametrize("structure", ["dense", "block-diagonal"])
def test_eigenvalues_only_path_matches_eigh_and_skips_the_eigenvectors(float64, structure):
    if structure == "dense":
        factors = (DenseFactor(random_psd(5)), DenseFactor(random_psd(3)))
    else:
        blocks = torch.stack([random_psd(3) for _ in range(4)])
        factors = (DenseFactor(random_psd(2)), BlockDiagonalFactor(blocks))
    for f in factors:
        assert torch.allclose(f.eigvalsh(), f.eigh().eigenvalues, atol=1e-12)
    block = KroneckerBlock(
        "w", (ParameterSlice("w", 0, 15 if structure == "dense" else 24),), factors
    )
    values = block.eigenvalues()
    assert None not in block._eigen  # no eigendecomposition was computed for the logdet
    dense = block.to_dense()
    expected = torch.logdet(dense + 0.3 * torch.eye(dense.shape[0]))
    assert torch.allclose(block.logdet(0.3), expected, atol=1e-10)
    eig = block.eigendecompose()  # once cached, eigenvalues come from the decomposition
    assert all(v is e.eigenvalues for v, e in zip(block.eigenvalues(), eig, strict=True))
    assert all(torch.allclose(v, e.eigenvalues) for v, e in zip(values, eig, strict=True))


def test_eigenvalues_only_falls_back_to_float64_on_the_float32_failure():
    from pathlib import Path

    matrix = torch.load(Path(__file__).parent / "data" / "float32_eigh_failure.pt")
    values = DenseFactor(matrix).eigvalsh()
    assert values.dtype == torch.float32 and torch.isfinite(values).all()
    reference = torch.linalg.eigvalsh(matrix.double()).clamp(min=0)
    assert torch.allclose(values.double().sort().values, reference, atol=1e-6)

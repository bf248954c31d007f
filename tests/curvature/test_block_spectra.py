"""BlockSpectra: all blocks' log-determinants at once vs per-block and dense computations."""

import pytest
import torch
from test_kfac_linalg import blocks_under_test, dense_effective, dense_logdet

from curvature import KFAC, BlockSpectra, KFACConfig, compute_kfac, kron_logdet
from curvature.linalg import kron_effective_parameters

KINDS = ("dense-2", "dense-3", "block-diagonal", "dense-block")


def spectra_and_blocks(**limits):
    blocks = [blocks_under_test()[k] for k in KINDS]
    return BlockSpectra([b.eigenvalues() for b in blocks], **limits), blocks


# all packed; none packed (every block too large); mixed (the 24-entry block is too large, the
# others are packed while they fit in 32 entries: blocks 0 and 2 packed, 1 and 3 not)
LIMITS = {"packed": {}, "loose": {"max_block": 1}, "mixed": {"max_block": 20, "max_entries": 32}}


@pytest.mark.parametrize("limits", LIMITS.values(), ids=LIMITS.keys())
@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e12])
def test_matches_dense_logdet_and_effective_parameters(float64, limits, scale):
    spectra, blocks = spectra_and_blocks(**limits)
    deltas = scale * torch.tensor([0.5, 2.0, 1.0, 3.0])
    logdets, gammas = spectra.logdets(deltas), spectra.effective_parameters(deltas)
    assert logdets.shape == gammas.shape == (4,)
    for i, (block, delta) in enumerate(zip(blocks, deltas, strict=True)):
        h = block.to_dense()
        atol = 1e-9 + 1e-13 * block.numel / delta
        torch.testing.assert_close(logdets[i], dense_logdet(h, delta), rtol=1e-10, atol=atol)
        torch.testing.assert_close(gammas[i], dense_effective(h, delta), rtol=1e-8, atol=atol)
        # and the chunked per-block path, to round-off
        torch.testing.assert_close(logdets[i], kron_logdet(block.eigenvalues(), delta))
        torch.testing.assert_close(gammas[i], kron_effective_parameters(block.eigenvalues(), delta))


def test_limits_split_the_blocks_as_documented(float64):
    spectra, _ = spectra_and_blocks(**LIMITS["mixed"])
    assert spectra.numels == (12, 24, 18, 4)
    assert spectra.packed == (0, 2) and spectra.loose == (1, 3)  # 12 + 18 = 30, + 4 > 32
    spectra, _ = spectra_and_blocks(max_block=20, max_entries=34)
    assert spectra.packed == (0, 2, 3) and spectra.loose == (1,)


@pytest.mark.parametrize("limits", LIMITS.values(), ids=LIMITS.keys())
@pytest.mark.parametrize("kind", ["logdets", "effective_parameters"])
def test_gradients_wrt_log_precisions_pass_gradcheck(float64, limits, kind):
    spectra, _ = spectra_and_blocks(**limits)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0])  # a different output weight per block
    rho = torch.tensor([-1.0, 0.3, 2.0, 0.0], requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda r: (getattr(spectra, kind)(r.exp()) * weights).sum(), (rho,)
    )


def test_a_small_block_after_a_large_one_keeps_its_accuracy(float64):
    big = (torch.full((1000,), 1e6), torch.full((1000,), 1e6))
    tiny = (torch.tensor([1e-3]),)
    spectra = BlockSpectra([big, tiny, big])
    logdets = spectra.logdets(torch.tensor([1.0, 1e-3, 1.0]))
    torch.testing.assert_close(logdets[1], torch.log(torch.tensor(2e-3)), rtol=1e-14, atol=0)
    want = 1e6 * torch.log(torch.tensor(1e12 + 1.0))
    torch.testing.assert_close(logdets[0], want, rtol=1e-13, atol=0)
    torch.testing.assert_close(logdets[2], want, rtol=1e-13, atol=0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_precision_names_the_block(bad):
    spectra, _ = spectra_and_blocks()
    with pytest.raises(ValueError, match=r"finite and positive.*for blocks \[2\]"):
        spectra.logdets(torch.tensor([1.0, 1.0, bad, 1.0]))
    with pytest.raises(ValueError, match=r"one prior precision per block.*\(4,\)"):
        spectra.logdets(torch.ones(3))


def test_kfac_logdet_is_the_sum_of_per_block_logdets(float64):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    kfac: KFAC = compute_kfac(model, [(x, y)], config=KFACConfig(ggn_type="exact"))
    deltas = {name: torch.tensor(0.5 + i) for i, name in enumerate(kfac.names)}
    per_block = sum(b.logdet(deltas[b.name]) for b in kfac.blocks)
    torch.testing.assert_close(kfac.logdet(deltas), per_block)
    gammas = kfac.effective_parameters(deltas)
    for block in kfac.blocks:
        want = block.effective_parameters(deltas[block.name])
        torch.testing.assert_close(gammas[block.name], want)
    assert kfac.spectra() is kfac.spectra()  # packed once

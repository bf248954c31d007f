"""The paths of a relaxed layer share one patch covariance per input, with identical factors."""

import gc

import pytest
import torch
from torch import nn

import bayesym.adapters.gathered as gathered
from bayesym.layers.group_paths import ffc_plus_conv_plus_gconv
from curvature import KFACConfig, compute_kfac


class _NoMemory(dict):
    def __setitem__(self, key, value):  # remembers nothing: every call computes its own patches
        pass


def two_block_model():
    torch.manual_seed(0)
    return nn.Sequential(
        ffc_plus_conv_plus_gconv(1, 2, spatial=(6, 6), lifting=True),
        ffc_plus_conv_plus_gconv(2, 2, spatial=(6, 6)),
        nn.Flatten(),
        nn.Linear(2 * 4 * 36, 3),
    ).double()


def fit(monkeypatch, remember: bool):
    calls = []
    original = gathered.conv_patch_covariance

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(gathered, "conv_patch_covariance", counting)
    monkeypatch.setattr(gathered, "_SHARED", {} if remember else _NoMemory())
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 1, 6, 6, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    kfac = compute_kfac(two_block_model(), [(x, y)], config=KFACConfig(ggn_type="exact"))
    return kfac, len(calls)


def test_paths_share_the_patch_covariance_with_identical_factors(monkeypatch):
    shared, shared_calls = fit(monkeypatch, remember=True)
    alone, alone_calls = fit(monkeypatch, remember=False)
    # block 1: CONV and lifting GCONV see x; block 2: CONV sees the flattened view of GCONV's
    assert (shared_calls, alone_calls) == (2, 4)
    assert shared.names == alone.names
    for a, b in zip(shared.blocks, alone.blocks, strict=True):
        for fa, fb in zip(a.factors, b.factors, strict=True):
            assert torch.equal(fa.data, fb.data), a.name


def test_flattened_view_hits_the_group_input_entry():
    x = torch.randn(2, 3, 4, 5, 5)
    assert gathered.same_patches(x, 3, "circular") is gathered.same_patches(
        x.flatten(1, 2), 3, "circular"
    )
    assert gathered.same_patches(x, 3, "zeros") is not gathered.same_patches(x, 3, "circular")


def test_in_place_change_recomputes():
    x = torch.randn(2, 3, 5, 5)
    before = gathered.same_patches(x, 3, "circular")
    x.mul_(2.0)
    after = gathered.same_patches(x, 3, "circular")
    assert after is not before
    torch.testing.assert_close(after.padded, 2.0 * before.padded)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_entries_do_not_outlive_the_input(kernel_size):
    gc.collect()
    before = len(gathered._SHARED)
    x = torch.randn(2, 3, 5, 5)
    patches = gathered.same_patches(x, kernel_size, "circular")
    # k = 1 needs no padding: the patches are x itself, remembering them would keep x alive
    assert len(gathered._SHARED) == before + (kernel_size > 1)
    del x, patches
    gc.collect()
    assert len(gathered._SHARED) == before

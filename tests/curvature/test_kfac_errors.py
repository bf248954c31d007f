"""Bad models and bad data give errors that name the culprit."""

import pytest
import torch
from torch import nn

from curvature import (
    FactorTooLargeError,
    KFACConfig,
    NonFiniteError,
    UnsupportedModuleError,
    compute_kfac,
    register_adapter,
)
from curvature.adapters import StatisticsRequest
from curvature.adapters.linear import LinearAdapter


def data(n=4, d=3, c=2):
    return torch.randn(n, d), torch.randint(0, c, (n,))


def test_unregistered_module_with_parameters_is_named():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    with pytest.raises(UnsupportedModuleError, match=r"module '1' \(LayerNorm\).*exclude=\['1'\]"):
        compute_kfac(model, data())
    kfac = compute_kfac(model, data(), exclude=["1"])
    assert kfac.names == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_batchnorm_is_not_silently_skipped():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2))
    x, y = torch.randn(4, 1, 3, 3), torch.randint(0, 2, (4,))
    with pytest.raises(UnsupportedModuleError, match="BatchNorm2d"):
        compute_kfac(model, (x, y))


def test_frozen_and_excluded_parameters_are_left_out():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)
    kfac = compute_kfac(model, data(), exclude=["2.bias"])
    assert kfac.names == ["0.weight", "2.weight"]


def test_adapters_are_told_the_approximation_and_which_of_their_blocks_are_kept():
    seen = []

    class Recording(LinearAdapter):
        def forward_statistics(self, module, inputs, output, request):
            seen.append(("forward", request))
            return super().forward_statistics(module, inputs, output, request)

        def backward_statistics(self, module, state, output_grads, request):
            seen.append(("backward", request))
            return super().backward_statistics(module, state, output_grads, request)

    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)
    config = KFACConfig(approx="reduce", ggn_type="mc")  # one direction: one backward call
    registry = {nn.Linear: Recording()}
    compute_kfac(model, data(), config=config, exclude=["2.bias"], registry=registry)
    kept = StatisticsRequest("reduce", frozenset({"weight"}))
    assert seen == [("forward", kept), ("forward", kept), ("backward", kept), ("backward", kept)]
    assert not kept.keeps("bias") and StatisticsRequest().keeps("bias")
    seen.clear()
    compute_kfac(model[2], data(n=4, d=4), config=config, registry=registry)
    everything = StatisticsRequest("reduce", frozenset({"weight", "bias"}))
    assert seen == [("forward", everything), ("backward", everything)]


def test_unknown_exclude_name_is_an_error():
    with pytest.raises(ValueError, match=r"\['nope'\]"):
        compute_kfac(nn.Linear(3, 2), data(), exclude=["nope"])


@pytest.mark.parametrize("where", ["inputs", "targets"])
def test_non_finite_data_is_rejected(where):
    x, y = torch.randn(4, 3), torch.randn(4, 2)
    (x if where == "inputs" else y)[2, 1] = float("nan")
    with pytest.raises(NonFiniteError, match=f"batch 0: the {where} contain NaN"):
        compute_kfac(nn.Linear(3, 2), (x, y), "regression")


def test_non_finite_output_is_rejected():
    model = nn.Linear(3, 2)
    model.weight.data[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="model output"):
        compute_kfac(model, data())


def test_non_finite_factor_is_rejected():
    model = nn.Linear(3, 2)
    nn.init.zeros_(model.weight)  # output stays finite, but Σ x xᵀ overflows float32
    x = torch.full((2, 3), 1e30)
    with pytest.raises(NonFiniteError, match=r"block '0.weight'|block 'weight'"):
        compute_kfac(model, (x, torch.tensor([0, 1])))


def test_factor_over_the_memory_limit_is_refused_with_its_size():
    model = nn.Sequential(nn.Linear(1000, 2))
    config = KFACConfig(max_factor_bytes=1024**2)
    with pytest.raises(
        FactorTooLargeError, match=r"'0.weight': its input factor would take 3.8 MiB"
    ):
        compute_kfac(model, data(d=1000), config=config)


def test_in_place_modification_of_a_captured_output_is_detected():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 2))
    with pytest.raises(UnsupportedModuleError, match=r"module '0' was modified in place"):
        compute_kfac(model, data())


def test_registered_module_that_never_runs_is_an_error():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(UnsupportedModuleError, match=r"'unused' \(Linear\).*not called"):
        compute_kfac(TwoHeads(), data())


def test_subclasses_are_not_silently_matched():
    class MyLinear(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    with pytest.raises(UnsupportedModuleError, match="MyLinear"):
        compute_kfac(nn.Sequential(MyLinear(3, 2)), data())


def test_register_adapter_refuses_silent_override():
    table = {}
    register_adapter(nn.Linear, LinearAdapter(), registry=table)
    with pytest.raises(ValueError, match="already has adapter"):
        register_adapter(nn.Linear, LinearAdapter(), registry=table)
    with pytest.raises(TypeError):
        register_adapter(object, LinearAdapter(), registry=table)


def test_bad_config_and_labels():
    with pytest.raises(ValueError, match="ggn_type"):
        KFACConfig(ggn_type="full")
    with pytest.raises(ValueError, match="approx"):
        KFACConfig(approx="mean")
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        compute_kfac(nn.Linear(3, 2), (x, torch.tensor([0, 1, 2, 0])))


def test_input_statistic_takes_exactly_one_of_total_and_rows():
    from curvature import InputStatistic
    from curvature.adapters import DenseFactor

    rows = torch.randn(5, 3)
    with pytest.raises(ValueError, match="exactly one of total and rows"):
        InputStatistic(DenseFactor(rows.T @ rows), 5, rows)
    with pytest.raises(ValueError, match="exactly one of total and rows"):
        InputStatistic(None, 5)
    with pytest.raises(ValueError, match=r"rows must be \[M, d\], got \(5, 3, 1\)"):
        InputStatistic.from_rows(rows[..., None], 5)


def test_rows_and_totals_accumulate_to_the_same_factor(float64):
    """An adapter may mix ``from_rows`` and dense totals across calls; the sums agree."""
    from curvature import InputStatistic
    from curvature.adapters import DenseFactor, covariance
    from curvature.adapters.base import ForwardResult

    class AlternatingLinear(LinearAdapter):
        calls = 0

        def forward_statistics(self, module, inputs, output, request):
            AlternatingLinear.calls += 1
            x = inputs[0]
            if AlternatingLinear.calls % 2:
                stat = InputStatistic(DenseFactor(covariance(x)), x.shape[0])
            else:
                stat = InputStatistic.from_rows(x, x.shape[0])
            return ForwardResult((stat, None))

    model = nn.Sequential(nn.Linear(3, 2))
    batches = [data() for _ in range(3)]
    reference = compute_kfac(model, batches)
    mixed = compute_kfac(model, batches, registry={nn.Linear: AlternatingLinear()})
    assert torch.allclose(mixed["0.weight"].to_dense(), reference["0.weight"].to_dense())

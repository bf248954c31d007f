"""Effective-parameter report: App. D quantities vs direct computations."""

import math

import pytest
import torch
from torch import nn

from bayesym.layers import PathSum, ffc_plus_conv
from bayesym.marglik import EpochRecord
from bayesym.priors import GaussianPrior, ParameterGroup
from bayesym.report import (
    EffectiveParameterReport,
    PathStatistics,
    count_only_shares,
    effective_parameter_report,
    history_figure,
    log10_precision_ratios,
)
from curvature import compute_kfac


def test_report_quantities_follow_appendix_d():
    rows = [
        PathStatistics("l0", "fc", 1e6, 0.0, 100, 0.5),
        PathStatistics("l0", "conv", 0.5, 2.0, 10, 4.0),
        PathStatistics("l1", "fc", 2.0, 1.0, 40, 20.0),
        PathStatistics("l1", "conv", 3.0, 1.0, 10, 1.0),
    ]
    records = {(r["layer"], r["path"]): r for r in EffectiveParameterReport(rows).records()}
    fc, conv = records["l0", "fc"], records["l0", "conv"]
    assert fc["normalised"] == pytest.approx(0.005) and conv["normalised"] == pytest.approx(0.4)
    assert fc["share"] == pytest.approx(0.5 / 4.5)
    assert conv["relative"] == pytest.approx(0.4 / 0.405)
    assert fc["effective_type"] == "conv"
    assert records["l1", "fc"]["effective_type"] == "fc"  # 0.5 vs 0.1 normalised
    table = EffectiveParameterReport(rows).to_table()
    assert table.count("\n") == 15 and "conv" in table  # header, rule, 4 rows, 10 legend lines


def test_report_of_a_model_matches_dense_eigenvalues(float64, tmp_path):
    model = nn.Sequential(
        ffc_plus_conv(1, 2, spatial=(3, 3)), nn.Tanh(), nn.Flatten(), nn.Linear(18, 3)
    )
    x, y = torch.randn(10, 1, 3, 3), torch.randint(0, 3, (10,))
    prior = GaussianPrior(model)
    with torch.no_grad():
        prior.log_precision.copy_(torch.tensor([0.5, -1.0, 1.0]))
    kfac = compute_kfac(model, (x, y))
    report = effective_parameter_report(model, prior, kfac)
    records = {r["path"]: r for r in report.records()}
    # γ of the conv path from the dense eigenvalues of its blocks
    delta = math.exp(-1.0)
    gamma = sum(
        float((lam / (lam + delta)).sum())
        for b in kfac.blocks
        if ".conv." in b.name
        for lam in [torch.linalg.eigvalsh(b.to_dense()).clamp(min=0)]
    )
    assert records["conv"]["effective_parameters"] == pytest.approx(gamma, rel=1e-8)
    assert records["conv"]["prior_precision"] == pytest.approx(delta)
    norm = sum(
        float(p.detach().square().sum()) for n, p in model.named_parameters() if ".conv." in n
    )
    assert records["conv"]["squared_norm"] == pytest.approx(norm)
    report.to_csv(tmp_path / "r.csv")
    report.to_json(tmp_path / "r.json")
    assert (tmp_path / "r.csv").read_text().startswith("layer,path,prior_precision")


def test_count_only_share_is_the_relative_share_with_equal_effective_numbers():
    rows = [
        PathStatistics("l0", "ffc", 3.0, 1.0, 4608, 7.25),
        PathStatistics("l0", "conv", 0.2, 1.0, 1152, 7.25),
        PathStatistics("l0", "gconv", 40.0, 1.0, 288, 7.25),
        PathStatistics("l1", "fc", 1.0, 1.0, 10, 2.0),  # a layer with one path
    ]
    records = EffectiveParameterReport(rows).records()
    inverse = [1 / 4608, 1 / 1152, 1 / 288]
    for rec, value in zip(records[:3], inverse, strict=True):
        assert rec["count_only"] == pytest.approx(value / sum(inverse), rel=1e-14)
        assert rec["relative"] == pytest.approx(rec["count_only"], rel=1e-14)
    assert records[3]["count_only"] == 1.0 and records[3]["log10_precision_ratio"] == 0.0
    assert count_only_shares([400, 100]) == pytest.approx([0.2, 0.8], rel=1e-15)
    with pytest.raises(ValueError, match="positive"):
        count_only_shares([3, 0])


def test_precision_ratios_are_log10_over_the_layers_smallest():
    rows = [
        PathStatistics("l0", "ffc", 2e6, 0.0, 100, 0.1),
        PathStatistics("l0", "conv", 0.5, 2.0, 10, 8.0),
        PathStatistics("l0", "gconv", 5.0, 2.0, 10, 3.0),
        PathStatistics("l1", "a", 7.0, 1.0, 10, 1.0),
        PathStatistics("l1", "b", 7.0, 1.0, 20, 1.0),
    ]
    ratios = [r["log10_precision_ratio"] for r in EffectiveParameterReport(rows).records()]
    assert ratios == pytest.approx([math.log10(4e6), 0.0, 1.0, 0.0, 0.0], abs=1e-14)
    assert log10_precision_ratios([1e6, 10.0, 1.0]) == pytest.approx([6.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="positive"):
        log10_precision_ratios([1.0, -2.0])
    table = EffectiveParameterReport(rows).to_table()
    assert "count-only" in table.splitlines()[0] and "lg δ/δmin" in table.splitlines()[0]
    assert "6.60" in table  # log10(4e6) in the ffc row


class _FirstFeatures(nn.Module):
    """A linear path that reads only the first ``k`` input features."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.linear = nn.Linear(k, 2, bias=False)

    def forward(self, x):
        return self.linear(x[:, : self.k])


def test_equal_precisions_give_exactly_the_count_only_share_when_paths_see_the_same_data(float64):
    """Two paths whose GGN blocks have the same non-zero eigenvalues (the larger one's extra
    inputs are always zero): with equal precisions their effective numbers are equal and the
    relative share is the count-only share, although the data favour neither; separating the
    precisions moves the share away from it."""
    layer = PathSum({"small": _FirstFeatures(2), "big": nn.Linear(6, 2, bias=False)})
    model = nn.Sequential(layer, nn.Tanh(), nn.Linear(2, 3))
    x = torch.cat([torch.randn(20, 2), torch.zeros(20, 4)], dim=1)
    y = torch.randint(0, 3, (20,))
    prior = GaussianPrior(model)
    assert prior.names[:2] == ["0.small", "0.big"]
    kfac = compute_kfac(model, (x, y))
    records = [
        r for r in effective_parameter_report(model, prior, kfac).records() if r["layer"] == "0"
    ]
    small, big = records
    assert small["numel"] == 4 and big["numel"] == 12
    assert small["effective_parameters"] == pytest.approx(big["effective_parameters"], rel=1e-10)
    assert small["count_only"] == pytest.approx(0.75, rel=1e-15)
    assert small["relative"] == pytest.approx(small["count_only"], rel=1e-10)
    assert small["log10_precision_ratio"] == big["log10_precision_ratio"] == 0.0
    with torch.no_grad():
        prior.log_precision[1] = math.log(1e3)  # the big path's precision: switched off
    records = [
        r for r in effective_parameter_report(model, prior, kfac).records() if r["layer"] == "0"
    ]
    assert records[1]["log10_precision_ratio"] == pytest.approx(3.0, rel=1e-12)
    assert records[0]["relative"] > records[0]["count_only"] + 0.1


def test_history_figure_shows_count_only_and_precision_ratios():
    rows = [
        PathStatistics("blocks.0.layer", "conv", 1.0, 1.0, 400, 4.0),
        PathStatistics("blocks.0.layer", "gconv", 1.0, 1.0, 100, 4.0),
    ]
    groups = [
        ParameterGroup(f"blocks.0.layer.{r.path}", "blocks.0.layer", r.path, (), r.numel)
        for r in rows
    ]
    history = [
        EpochRecord(
            epoch=e,
            lr=1e-3,
            train_loss=1.0,
            train_nll=1.0,
            seconds=0.0,
            train_accuracy=0.5,
            marglik=-1.0,
            precisions={"blocks.0.layer.conv": 1.0, "blocks.0.layer.gconv": 10.0**e},
            squared_norms={g.name: 1.0 for g in groups},
            effective_parameters={g.name: 4.0 for g in groups},
        )
        for e in (1, 2, 3)
    ]
    fig = history_figure(history, groups)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "relative effective params" in labels and "log10 δ / δ_min" in labels
    share_ax = next(ax for ax in fig.axes if ax.get_ylabel() == "relative effective params")
    legend = [t.get_text() for t in share_ax.get_legend().get_texts()]
    assert legend == ["conv", "conv count-only", "gconv", "gconv count-only"]
    ratio_ax = next(ax for ax in fig.axes if ax.get_ylabel() == "log10 δ / δ_min")
    gconv_line = next(line for line in ratio_ax.get_lines() if line.get_label() == "gconv")
    assert list(gconv_line.get_ydata()) == pytest.approx([1.0, 2.0, 3.0])
    import matplotlib.pyplot as plt

    plt.close(fig)

"""Effective-parameter report: App. D quantities vs direct computations."""

import math

import pytest
import torch
from torch import nn

from bayesym.layers import ffc_plus_conv
from bayesym.priors import GaussianPrior
from bayesym.report import EffectiveParameterReport, PathStatistics, effective_parameter_report
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
    assert table.count("\n") == 5 and "conv" in table


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

"""Priors never fall on architecture parameters; fixed per-group precisions; the trainer's hook."""

import pytest
import torch
from torch import nn

from bayesym.groups import d4_subgroup
from bayesym.layers import MixedGroupConv2d, conv_plus_fc
from bayesym.layers.homotopic import homotopic_conv_ffc
from bayesym.marglik import MarglikConfig, MarglikTrainer
from bayesym.priors import GaussianPrior, parameter_groups, prior_free_parameters


def _homotopic_net():
    torch.manual_seed(0)
    return nn.Sequential(
        homotopic_conv_ffc(1, 2, spatial=(4, 4)),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(32, 3),
    )


def _grouped(model, **options):
    return {p for g in parameter_groups(model, **options) for p in g.parameters}


def test_mixing_logits_have_no_prior_by_default():
    model = nn.Sequential(MixedGroupConv2d(1, 1, 3, d4_subgroup("D4")))
    assert prior_free_parameters(model) == ("0.architecture_logits",)
    assert "0.architecture_logits" not in _grouped(model)
    assert "0.architecture_logits" in _grouped(model, prior_on_architecture=True)
    prior = GaussianPrior(model)
    assert prior.excluded == ("0.architecture_logits",)
    assert all("architecture_logits" not in p for g in prior.groups for p in g.parameters)


def test_homotopy_coefficients_have_no_prior_by_default():
    model = _homotopic_net()
    assert prior_free_parameters(model) == ("0.homotopy_gamma",)
    assert "0.homotopy_gamma" not in _grouped(model)
    assert "0.homotopy_gamma" in _grouped(model, prior_on_architecture=True)
    prior = GaussianPrior(model, init_precision=5.0)
    before = prior.penalty(model)
    with torch.no_grad():
        model[0].homotopy_gamma.fill_(123.0)
    assert torch.equal(prior.penalty(model), before)  # γ is not penalised


def test_the_trainer_leaves_parameters_without_prior_out_of_the_curvature():
    model = _homotopic_net()
    x, y = torch.randn(32, 1, 4, 4), torch.randint(0, 3, (32,))
    config = MarglikConfig(epochs=2, batch_size=16, lr=1e-2, burn_in=1, hyper_every=1)
    trainer = MarglikTrainer(model, config=config, progress=False)
    assert trainer.curvature_exclude() == ("0.homotopy_gamma",)
    gamma_before = float(model[0].homotopy_gamma.detach())
    history = trainer.fit((x, y))
    assert history[-1].is_hyper_step
    assert "0.homotopy_gamma" not in trainer.last_kfac.names
    assert float(model[0].homotopy_gamma.detach()) != gamma_before  # still trained, by MAP alone


def test_fixed_precisions_per_group():
    model = nn.Sequential(conv_plus_fc(1, 2, spatial=(4, 4)))
    prior = GaussianPrior(model, init_precision=0.5, precisions={"0.fc": 80.0})
    assert prior.as_dict() == pytest.approx({"0.conv": 0.5, "0.fc": 80.0})
    prior.set_precisions({"0.conv": 2.0})
    assert prior.as_dict() == pytest.approx({"0.conv": 2.0, "0.fc": 80.0})
    # brute force: the MAP penalty is ½ Σ_g δ_g ‖θ_g‖²
    conv, fc = model[0].paths["conv"], model[0].paths["fc"]
    expected = 0.5 * (
        2.0 * sum(p.square().sum() for p in conv.parameters())
        + 80.0 * sum(p.square().sum() for p in fc.parameters())
    )
    assert torch.allclose(prior.penalty(model), expected)
    with pytest.raises(ValueError, match=r"no prior groups \['0.ffc'\]; groups are"):
        prior.set_precisions({"0.ffc": 1.0})
    with pytest.raises(ValueError, match=r"precision of '0\.fc' must be positive"):
        prior.set_precisions({"0.fc": 0.0})


def test_charge_is_called_before_every_map_batch_and_curvature_pass(tmp_path):
    model = _homotopic_net()
    x, y = torch.randn(40, 1, 4, 4), torch.randint(0, 3, (40,))
    config = MarglikConfig(epochs=3, batch_size=16, burn_in=1, hyper_every=2, marglik_subset=24)
    calls = []
    charge = lambda *c: calls.append(c)  # noqa: E731
    trainer = MarglikTrainer(model, config=config, progress=False, charge=charge)
    trainer.fit((x, y))
    assert calls == [("map", 16), ("map", 16), ("map", 8), ("curvature", 24)] + [
        ("map", 16),
        ("map", 16),
        ("map", 8),
    ] * 2 + [("curvature", 24)]

    class Stop(Exception):
        pass

    def refuse_curvature(kind, images):
        if kind == "curvature":
            raise Stop

    stopped = MarglikTrainer(
        _homotopic_net(), config=config, run_dir=tmp_path, progress=False, charge=refuse_curvature
    )
    with pytest.raises(Stop):
        stopped.fit((x, y))
    # the hyper step never ran and the checkpoint holds no epoch past the refused work
    assert stopped.last_kfac is None and not (tmp_path / "checkpoint.pt").exists()

"""The static, marglik and RPP selectors: valid results, budgets, resume, known answers."""

import json
import math

import pytest
import torch
from selector_toys import (
    SignalNoiseSpace,
    digits,
    replace,
    signal_noise_data,
    without_time,
)

from bayesym.marglik import MarglikConfig, MarglikTrainer
from bayesym.priors import GaussianPrior
from bayesym.selectors import (
    SELECTORS,
    Budget,
    BudgetTooSmall,
    MarglikSelector,
    MarglikSelectorConfig,
    RPPConfig,
    RPPSelector,
    SelectionResult,
    StaticConfig,
    StaticSelector,
    make_selector,
    make_space,
)
from bayesym.selectors.budget import BudgetMeter
from bayesym.selectors.prior_training import (
    fit_schedule,
    path_choices,
    scaled_schedule,
    schedule_passes,
)
from bayesym.selectors.rpp import path_precisions
from bayesym.selectors.static import baseline_seed, best_on_validation

FAST = {"training.batch_size": 32}


def _selector(name, **changes):
    selector = make_selector(name)
    return type(selector)(replace(selector.config, **{**FAST, **changes}))


@pytest.fixture(scope="module")
def split():
    return digits(train_size=64, val_size=32)


@pytest.fixture(scope="module")
def space():
    return make_space("translation", width=1)


# ------------------------------------------------------------------------ every selector
@pytest.mark.parametrize("name", ["static", "marglik", "rpp"])
def test_every_selector_returns_a_valid_result_within_its_budget(name, split, space):
    budget = Budget(epochs=2.5)
    selector = _selector(name, **({"baselines": ("conv", "fc")} if name == "static" else {}))
    result = selector.fit(split.train, split.valid, space=space, budget=budget, progress=False)
    assert isinstance(result, SelectionResult) and result.selector == name
    assert [c.layer for c in result.choices] == [f"blocks.{k}.layer" for k in range(8)]
    assert all(c.scores and c.choice in c.scores for c in result.choices)
    assert result.parameters == sum(p.numel() for p in result.model.parameters())
    assert set(result.valid) == {"accuracy", "nll"} and 0 <= result.valid["accuracy"] <= 1
    limit = math.ceil(2.5 * len(split.train))
    assert 0 < result.cost.image_passes <= limit + 32  # at most one batch over
    assert result.cost.eval_passes >= len(split.valid)
    back = SelectionResult.from_json(json.loads(json.dumps(result.to_json())))
    assert back.choices == result.choices and back.cost == result.cost


@pytest.mark.parametrize("name", ["static", "marglik", "rpp"])
def test_a_budget_too_small_for_one_epoch_is_refused_before_any_work(name, split, space):
    selector = _selector(name)
    with pytest.raises(BudgetTooSmall, match="raise the budget to at least"):
        selector.fit(split.train, split.valid, space=space, budget=Budget(epochs=0.5))


@pytest.mark.parametrize("name", ["static", "marglik", "rpp"])
def test_an_unsupported_space_is_refused_listing_the_supported_ones(name, split):
    class PixelLike(SignalNoiseSpace):
        name = "elsewhere"

    selector = make_selector(name)
    supported = ", ".join(sorted(type(selector).spaces))
    with pytest.raises(ValueError, match=f"does not support the 'elsewhere' space.*{supported}"):
        selector.fit(split.train, split.valid, space=PixelLike(), budget=Budget(epochs=1))


def test_registered_selectors():
    assert {"static", "marglik", "rpp"} <= set(SELECTORS)
    assert isinstance(make_selector("rpp"), RPPSelector)


# --------------------------------------------------------------------------- schedules
def test_the_marglik_schedule_fills_the_budget_with_map_and_curvature_passes():
    config = MarglikConfig(epochs=40, burn_in=10, hyper_every=5)
    assert scaled_schedule(config, 40) == config
    meter = BudgetMeter(Budget(epochs=20), train_size=100)
    fitted = fit_schedule(config, meter, curvature_cost=100, what="x")
    used = schedule_passes(fitted, 100, 100)
    assert used <= 2000 < schedule_passes(scaled_schedule(config, fitted.epochs + 1), 100, 100)
    # brute force over every schedule length: the fitted one is the longest that fits
    fits = [
        e for e in range(1, 41) if schedule_passes(scaled_schedule(config, e), 100, 100) <= 2000
    ]
    assert fitted.epochs == max(fits)
    hyper = sum(fitted.is_hyper_epoch(e) for e in range(fitted.epochs))
    assert hyper >= 1 and used == 100 * (fitted.epochs + hyper)


def test_marglik_counts_every_curvature_pass(split, space):
    """MC-1: one pass per image per hyper step; exact GGN: one per class (10 for digits)."""
    for ggn, per_image in (("mc", 1), ("exact", 10)):
        training = MarglikConfig(
            epochs=2, batch_size=32, burn_in=1, hyper_every=1, marglik_subset=16
        )
        training = replace(training, kfac=replace(training.kfac, ggn_type=ggn))
        selector = MarglikSelector(MarglikSelectorConfig(training=training))
        result = selector.fit(
            split.train, split.valid, space=space, budget=Budget(), progress=False
        )
        assert result.cost.image_passes == 2 * 64 + 2 * 16 * per_image


# ------------------------------------------------------------------------------ resume
class _Crash(Exception):
    pass


def _crash_after(monkeypatch, charges):
    original = BudgetMeter.charge
    count = [0]

    def charge(self, passes):
        count[0] += 1
        if count[0] > charges:
            raise _Crash
        original(self, passes)

    monkeypatch.setattr(BudgetMeter, "charge", charge)


@pytest.mark.parametrize(
    ("name", "crash_after"),
    [("static", 3), ("marglik", 5), ("rpp", 3)],
)
def test_a_killed_selection_resumes_to_the_same_result(name, crash_after, split, space, tmp_path):
    changes = {"baselines": ("conv", "fc")} if name == "static" else {}
    selector = _selector(name, **changes)
    budget = Budget(epochs=4)
    whole = selector.fit(
        split.train, split.valid, space=space, budget=budget, run_dir=tmp_path / "a", progress=False
    )
    with pytest.MonkeyPatch.context() as patch:
        if name == "static":  # candidates are charged up front: crash inside the 2nd baseline
            original = MarglikTrainer._map_epoch
            calls = [0]

            def crashing(self, *args):
                calls[0] += 1
                if calls[0] > crash_after:
                    raise _Crash
                return original(self, *args)

            patch.setattr(MarglikTrainer, "_map_epoch", crashing)
        else:
            _crash_after(patch, crash_after)
        with pytest.raises(_Crash):
            selector.fit(
                split.train, split.valid, space=space, budget=budget, run_dir=tmp_path / "b",
                progress=False,
            )  # fmt: skip
    resumed = selector.fit(
        split.train, split.valid, space=space, budget=budget, run_dir=tmp_path / "b", progress=False
    )
    assert without_time(resumed.to_json()) == without_time(whole.to_json())
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert (tmp_path / "b" / "selection.json").is_file() and (tmp_path / "b" / "model.pt").is_file()


def test_a_run_directory_of_another_configuration_is_refused(split, space, tmp_path):
    _selector("rpp").fit(
        split.train, split.valid, space=space, budget=Budget(epochs=1.5), run_dir=tmp_path,
        progress=False,
    )  # fmt: skip
    other = _selector("rpp", neq_prior=0.5)
    with pytest.raises(ValueError, match=r"another selection \(differs in \['config.neq_prior'\]"):
        other.fit(
            split.train, split.valid, space=space, budget=Budget(epochs=1.5), run_dir=tmp_path
        )


# ------------------------------------------------------------------------------ static
def test_static_picks_the_best_baseline_on_validation_with_stable_seeds(split, space):
    selector = _selector("static", baselines=("conv", "ffc"))
    result = selector.fit(split.train, split.valid, space=space, budget=Budget(epochs=2))
    history = {h["baseline"]: h for h in result.history}
    assert set(history) == {"conv", "ffc"} and result.cost.candidates_trained == 2
    best = max(
        history, key=lambda b: (history[b]["valid"]["accuracy"], -history[b]["valid"]["nll"])
    )
    assert {c.choice for c in result.choices} == {best}
    assert result.choices[0].scores == {b: history[b]["valid"]["accuracy"] for b in history}
    # a baseline trains the same alone as beside others (its seed depends on its name only)
    alone = _selector("static", baselines=(best,)).fit(
        split.train, split.valid, space=space, budget=Budget(epochs=1), progress=False
    )
    assert alone.valid == result.valid
    assert baseline_seed(0, "conv") == baseline_seed(0, "conv") != baseline_seed(0, "ffc")
    assert best_on_validation([{"accuracy": 0.5, "nll": 1.0}, {"accuracy": 0.5, "nll": 0.9}]) == 1


def test_static_refuses_unknown_baselines(split, space):
    with pytest.raises(ValueError, match="unknown baseline 'D4' of the 'translation' space; valid"):
        _selector("static", baselines=("D4",)).fit(
            split.train, split.valid, space=space, budget=Budget(epochs=1)
        )


# ------------------------------------------------------------------------------ marglik
def test_marglik_chooses_the_path_that_carries_the_signal():
    """Toy with a known answer: labels depend on the 'signal' path's inputs only."""
    train, valid = signal_noise_data(256, seed=0), signal_noise_data(128, seed=1)
    training = MarglikConfig(epochs=30, batch_size=64, lr=0.05, burn_in=5, hyper_every=1)
    selector = MarglikSelector(MarglikSelectorConfig(training=training))
    result = selector.fit(train, valid, space=SignalNoiseSpace(), budget=Budget(), progress=False)
    (choice,) = result.choices
    assert choice.choice == "signal" and choice.scores["signal"] > 0.8
    assert result.effective_parameters["0.signal"] > 5 * result.effective_parameters["0.noise"]
    assert result.valid["accuracy"] > 0.85


def test_path_choices_read_the_relative_effective_parameters():
    from selector_toys import two_path_layer
    from torch import nn

    from bayesym.report import EffectiveParameterReport, PathStatistics

    model = nn.Sequential(two_path_layer(8, 2))
    rows = [
        PathStatistics("0", "signal", 1.0, 1.0, 10, 6.0),  # γ/P = 0.6
        PathStatistics("0", "noise", 1.0, 1.0, 40, 8.0),  # γ/P = 0.2: more γ, less per weight
    ]
    (choice,) = path_choices(model, EffectiveParameterReport(rows))
    assert choice.choice == "signal" and choice.symmetry == "none"
    assert choice.scores == pytest.approx({"signal": 0.75, "noise": 0.25})


# ---------------------------------------------------------------------------------- rpp
def test_rpp_precisions_are_twice_the_weight_decay_times_n(split):
    config = RPPConfig(eq_prior=1e-4, neq_prior=1e-2)
    assert config.precisions(500) == pytest.approx((0.1, 10.0))
    assert RPPConfig(eq_prior=3.0, neq_prior=1.0, prior_unit="precision").precisions(50) == (
        3.0,
        1.0,
    )
    with pytest.raises(ValueError, match=r"RPPConfig.neq_prior must be positive"):
        RPPConfig(neq_prior=0.0)
    # brute force: the trainer's MAP loss is the mean NLL + Σ_g wd_g ‖θ_g‖²
    space = make_space("translation", width=1)
    from bayesym.selectors import DataShape

    model, _, neq = space.residual_network(DataShape.of(split.train))
    prior = GaussianPrior(model)
    n = len(split.train)
    prior.set_precisions(path_precisions(model, prior, neq, *config.precisions(n)))
    decay = {name: 1e-2 if name.endswith(".fc") else 1e-4 for name in prior.names}
    expected = sum(
        decay[g.name] * sum(dict(model.named_parameters())[p].square().sum() for p in g.parameters)
        for g in prior.groups
    )
    assert torch.allclose(prior.penalty(model) / n, expected, rtol=1e-5)


def test_rpp_precisions_never_move(split, space):
    result = _selector("rpp").fit(
        split.train, split.valid, space=space, budget=Budget(epochs=3), progress=False
    )
    eq, neq = RPPConfig().precisions(len(split.train))
    for record in result.history:
        values = sorted(set(record["precisions"].values()))
        assert values == pytest.approx([eq, neq], rel=1e-6)


@pytest.mark.parametrize("unconstrained", ["noise", "signal"])
def test_rpp_reads_out_the_path_the_data_need(unconstrained):
    """The strong prior wins where its path is useless; the data outvote it where it is not."""
    train, valid = signal_noise_data(256, seed=0), signal_noise_data(128, seed=1)
    training = MarglikConfig(epochs=30, batch_size=64, lr=0.05, learn_prior=False)
    config = RPPConfig(eq_prior=1.0, neq_prior=30.0, prior_unit="precision", training=training)
    space = SignalNoiseSpace(unconstrained=unconstrained)
    result = RPPSelector(config).fit(train, valid, space=space, budget=Budget(), progress=False)
    (choice,) = result.choices
    assert choice.choice == "signal" and choice.scores["signal"] > 0.75
    assert sum(choice.scores.values()) == pytest.approx(1.0)
    assert result.valid["accuracy"] > 0.85


def test_static_config_refuses_learned_priors():
    with pytest.raises(ValueError, match="learn_prior=False"):
        StaticConfig(training=MarglikConfig())
    assert StaticSelector().config.training.learn_prior is False

"""The ACE selectors: valid results within the budget, resume, equivariance at γ := 0."""

import json
import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from selector_toys import digits, signal_noise_data, two_path_layer, without_time
from torch import nn

from bayesym.groups import d4_subgroup, translation_group
from bayesym.layers import HomotopicLayer, equivariant_projection, homotopy_parameters
from bayesym.layers.homotopic import homotopic_from_paths
from bayesym.selectors import (
    SELECTORS,
    ACEEqualityConfig,
    ACEEqualitySelector,
    ACEResilientConfig,
    ACEResilientSelector,
    Budget,
    BudgetTooSmall,
    DataShape,
    LayerChoice,
    SearchSpace,
    SelectionResult,
    make_selector,
    make_space,
)
from bayesym.selectors.budget import BudgetMeter
from bayesym.testing import (
    assert_equivariant,
    assert_not_equivariant,
    image_action,
    translation_action,
    trivial_action,
)

SELECTOR_NAMES = ["ace-eq", "ace-resilient"]


def _selector(name, **changes):
    config = {"ace-eq": ACEEqualityConfig, "ace-resilient": ACEResilientConfig}[name]
    return make_selector(name, config(batch_size=32, **changes))


@pytest.fixture(scope="module")
def split():
    return digits(train_size=64, val_size=32)


@pytest.fixture(scope="module")
def space():
    return make_space("translation", width=1)


@pytest.fixture(scope="module")
def results(split, space):
    return {
        name: _selector(name).fit(
            split.train, split.valid, space=space, budget=Budget(epochs=2.5), progress=False
        )
        for name in SELECTOR_NAMES
    }


def test_registered_under_their_names():
    assert SELECTORS["ace-eq"] is ACEEqualitySelector
    assert SELECTORS["ace-resilient"] is ACEResilientSelector


@pytest.mark.parametrize("name", SELECTOR_NAMES)
def test_a_valid_result_within_the_budget(name, results, split):
    result = results[name]
    assert isinstance(result, SelectionResult) and result.selector == name
    layers = [f"blocks.{k}.layer" for k in range(8)]
    assert [c.layer for c in result.choices] == layers
    for choice in result.choices:
        assert set(choice.scores) == {"gamma", "abs_gamma", "lambda", "u"}
        assert choice.choice in ("eq", "eq+neq")
    assert result.parameters == sum(p.numel() for p in result.model.parameters())
    assert set(result.valid) == {"accuracy", "nll"} and 0 <= result.valid["accuracy"] <= 1
    limit = math.ceil(2.5 * len(split.train))
    assert result.cost.image_passes == 2 * len(split.train) <= limit  # two whole epochs
    assert result.cost.candidates_trained == 1
    assert [h["epoch"] for h in result.history] == [1, 2]
    for record in result.history:
        for key in ("gamma", "lambda", "u"):
            assert list(record[key]) == layers
        assert {"valid_accuracy", "projected_valid_accuracy", "lagrangian"} <= set(record)
    back = SelectionResult.from_json(json.loads(json.dumps(result.to_json())))
    assert back.choices == result.choices and back.cost == result.cost


def test_equality_returns_the_projection_and_resilient_the_trained_network(results):
    eq, res = results["ace-eq"], results["ace-resilient"]
    assert all(g.item() == 0.0 for g in homotopy_parameters(eq.model).values())
    assert all(c.choice == "eq" and c.symmetry == "translations" for c in eq.choices)
    trained = [c.scores["gamma"] for c in eq.choices]
    assert trained == list(eq.history[-1]["gamma"].values()) and any(g != 0 for g in trained)
    gammas = [g.item() for g in homotopy_parameters(res.model).values()]
    assert gammas == [c.scores["gamma"] for c in res.choices]
    assert res.history[-1]["valid_accuracy"] == res.valid["accuracy"]
    assert eq.history[-1]["projected_valid_accuracy"] == eq.valid["accuracy"]


def test_signs_of_the_multipliers_and_slacks(results):
    res = results["ace-resilient"]
    for record in res.history:
        assert min(record["lambda"].values()) >= 0 and min(record["u"].values()) >= 0
    eq = results["ace-eq"]
    assert all(u == 0 for record in eq.history for u in record["u"].values())


def test_equality_network_is_strictly_equivariant_at_gamma_zero_only(results, float64):
    net = results["ace-eq"].model.double().eval()
    try:
        x = torch.randn(2, 1, 8, 8)
        shifts = translation_group(8, 8)
        act = translation_action(shifts)
        assert_equivariant(net, shifts, x, act, trivial_action())
        with torch.no_grad():
            for gamma in homotopy_parameters(net).values():
                gamma.fill_(0.5)
        assert_not_equivariant(net, [1, 9, 30], x, act, trivial_action(), require="all")
        with equivariant_projection(net):
            assert_equivariant(net, shifts, x, act, trivial_action())
    finally:
        with torch.no_grad():
            for gamma in homotopy_parameters(net).values():
                gamma.zero_()
        net.float()


@pytest.mark.parametrize("name", SELECTOR_NAMES)
def test_a_budget_too_small_for_one_epoch_is_refused_before_any_work(name, split, space):
    with pytest.raises(BudgetTooSmall, match="one epoch of the homotopic network"):
        _selector(name).fit(
            split.train, split.valid, space=space, budget=Budget(epochs=0.5), progress=False
        )


def test_a_space_without_homotopic_networks_is_refused(split):
    space = make_space("translation", width=1)
    with pytest.raises(ValueError, match="does not support the 'pixel' space"):
        ACEEqualitySelector().check_space(type("P", (), {"name": "pixel"})())
    assert "translation" in ACEResilientSelector.spaces and space.name == "translation"


class _Crash(Exception):
    pass


@pytest.mark.parametrize("name", SELECTOR_NAMES)
def test_a_killed_selection_resumes_to_the_same_result(name, split, space, tmp_path):
    selector = _selector(name)
    budget = Budget(epochs=3)
    whole = selector.fit(
        split.train, split.valid, space=space, budget=budget, run_dir=tmp_path / "a", progress=False
    )
    original = BudgetMeter.charge
    count = [0]

    def charge(self, passes):
        count[0] += 1
        if count[0] > 3:  # two batches per epoch: dies inside the second epoch
            raise _Crash
        return original(self, passes)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BudgetMeter, "charge", charge)
        with pytest.raises(_Crash):
            selector.fit(
                split.train, split.valid, space=space, budget=budget, run_dir=tmp_path / "b",
                progress=False,
            )  # fmt: skip
    assert (tmp_path / "b" / "ace_checkpoint.pt").is_file()
    resumed = selector.fit(
        split.train, split.valid, space=space, budget=budget, run_dir=tmp_path / "b", progress=False
    )
    assert without_time(resumed.to_json()) == without_time(whole.to_json())
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert (tmp_path / "b" / "selection.json").is_file() and (tmp_path / "b" / "model.pt").is_file()
    assert (tmp_path / "b" / "ace_history.png").stat().st_size > 0


def test_bad_settings_are_refused_with_the_culprit_named():
    with pytest.raises(ValueError, match=r"ACEEqualityConfig\.gamma_optimizer"):
        ACEEqualityConfig(gamma_optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"DualSettings\.rho must be positive"):
        ACEResilientConfig(rho=0.0)
    with pytest.raises(ValueError, match=r"ACEResilientConfig\.epochs must be a positive int"):
        ACEResilientConfig(epochs=0)
    with pytest.raises(TypeError, match="takes a ACEEqualityConfig"):
        ACEEqualitySelector(ACEResilientConfig())


# ------------------------------------------------------------------------------ d4 space
@pytest.mark.parametrize("name", SELECTOR_NAMES)
def test_the_d4_space_network_is_d4_invariant_at_gamma_zero_only(name, split):
    space = make_space("d4", width=1, depth=4)
    result = _selector(name).fit(
        split.train, split.valid, space=space, budget=Budget(epochs=1), progress=False
    )
    assert [c.layer for c in result.choices] == [f"blocks.{b}.layer" for b in range(4)]
    assert all(set(c.scores) == {"gamma", "abs_gamma", "lambda", "u"} for c in result.choices)
    net = result.model.double().eval()
    d4 = d4_subgroup("D4")
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with equivariant_projection(net):
        assert_equivariant(net, d4, x, image_action(d4), trivial_action())
    if name == "ace-eq":
        assert all(c.symmetry == "translations x D4" for c in result.choices)
        with torch.no_grad():
            for gamma in homotopy_parameters(net).values():
                gamma.fill_(0.5)
    assert_not_equivariant(net, range(1, 8), x, image_action(d4), trivial_action(), require="all")


def test_homotopic_from_paths_needs_exactly_the_two_paths():
    layer = make_space("d4", width=1, depth=2).relaxed_network(DataShape(1, 8, 8, 2)).blocks[0]
    with pytest.raises(ValueError, match="exactly the paths 'D4' and 'C1'"):
        homotopic_from_paths(layer.layer, "D4", "C1")


def test_equivariant_init_gives_the_projection_unit_moments(split, space):
    from bayesym.selectors.ace import equivariant_unit_moment

    torch.manual_seed(0)
    shape = DataShape.of(split.train)
    net = space.homotopic_network(shape)
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    moments = {}

    def record(name):
        return lambda _, __, out: moments.__setitem__(name, float(out.detach().square().mean()))

    layers = {n: m for n, m in net.named_modules() if n.endswith("layer") and "blocks" in n}
    for name, layer in layers.items():
        layer.paths["eq"].register_forward_hook(record(name))
    with equivariant_projection(net):
        net(x)
    before = dict(moments)
    equivariant_unit_moment(net, shape)
    with equivariant_projection(net):
        net(x)
    assert max(before.values()) < 0.75  # each path had half the moment, shrinking with depth
    assert all(abs(m - 1.0) < 1e-2 for m in moments.values()), moments
    assert all(g.item() == 1.0 for g in homotopy_parameters(net).values())


def test_ace_runs_through_the_comparison_harness(tmp_path):
    from bayesym.selectors.compare import CompareConfig, compare

    config = CompareConfig(
        task="digits",
        space="translation",
        selectors=("ace-eq", "ace-resilient"),
        baselines=("conv",),
        budget_epochs=1.0,
        train_size=48,
        val_size=24,
        test_size=24,
        space_options={"width": 1},
        selector_options={"ace-eq": {"batch_size": 24}, "ace-resilient": {"batch_size": 24}},
    )
    results = compare(config, tmp_path, progress=False)
    assert sorted(r.cell.label for r in results) == ["ace-eq", "ace-resilient", "static:conv"]
    assert {r.selection.cost.image_passes for r in results} == {48}  # equal budgets
    assert (tmp_path / "seed0" / "ace-eq" / "ace_history.png").is_file()


# ------------------------------------------------------- a toy whose answer is known
@dataclass(frozen=True)
class _HomotopicToySpace(SearchSpace):
    """One homotopic layer; ``eq_reads`` says which half of the features ``f_eq`` sees.

    Labels depend on the first half only (``signal_noise_data``): with ``eq_reads="noise"``
    the symmetric map cannot fit the data and the constraint costs loss; with
    ``eq_reads="signal"`` it costs nothing.
    """

    name: ClassVar[str] = "translation"
    eq_reads: str = "noise"

    def baselines(self):
        return ("eq",)

    def build_baseline(self, name, shape):
        return self.homotopic_network(shape)

    def homotopic_network(self, shape):
        layer = two_path_layer(shape.width, shape.num_classes)
        eq, neq = ("noise", "signal") if self.eq_reads == "noise" else ("signal", "noise")
        return nn.Sequential(HomotopicLayer(layer.paths[eq], layer.paths[neq]))

    def describe(self, model):
        return (LayerChoice("0", "homotopic", "none"),)


def _toy_fit(name, eq_reads, **changes):
    data = signal_noise_data(256, seed=0)
    valid = signal_noise_data(64, seed=1)
    config = {"ace-eq": ACEEqualityConfig, "ace-resilient": ACEResilientConfig}[name]
    fast = {"batch_size": 32, "init": "space", "lr": 1e-2, "gamma_lr": 0.05, "dual_lr": 0.05}
    if name == "ace-resilient":  # a few tens of steps per time scale (critically damped)
        fast.update(dual_lr=0.02, slack_lr=0.05, augmentation=1.3)
    selector = make_selector(name, config(**fast, **changes))
    space = _HomotopicToySpace(eq_reads=eq_reads)
    return selector.fit(data, valid, space=space, budget=Budget(epochs=30), progress=False)


def test_toy_equality_returns_the_symmetric_map_and_prices_a_wrong_symmetry():
    wrong, right = _toy_fit("ace-eq", "noise"), _toy_fit("ace-eq", "signal")
    for result in (wrong, right):
        assert result.choices[0].scores["abs_gamma"] < 0.05
    # the returned γ := 0 map reads what f_eq reads: chance on noise, the labels on signal
    assert wrong.valid["accuracy"] < 0.65 and right.valid["accuracy"] > 0.85
    wrong_peak, right_peak = (max(abs(h["lambda"]["0"]) for h in r.history) for r in (wrong, right))
    assert wrong_peak > right_peak


def test_toy_resilient_relaxes_a_wrong_symmetry_only():
    wrong = _toy_fit("ace-resilient", "noise", rho=0.1)
    right = _toy_fit("ace-resilient", "signal", rho=0.1)
    scores = wrong.choices[0].scores
    assert scores["abs_gamma"] > 0.5 and scores["u"] > 0.5 and wrong.choices[0].choice == "eq+neq"
    assert scores["u"] > 2 * right.choices[0].scores["u"]
    assert wrong.valid["accuracy"] > 0.85  # f_neq reads the signal


def test_a_wall_clock_budget_stops_training_with_a_valid_result(split, space):
    result = _selector("ace-resilient").fit(
        split.train, split.valid, space=space, budget=Budget(wall_seconds=1e-6), progress=False
    )
    assert result.cost.image_passes == 0 and result.history[-1]["stopped_by_budget"]
    assert len(result.choices) == 8 and 0 <= result.valid["accuracy"] <= 1

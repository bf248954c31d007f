"""Selector core: budget meter, seeded fractional training, selection splits, results."""

import math

import pytest
import torch
from torch import nn

from bayesym.selectors import (
    Budget,
    BudgetExhausted,
    BudgetMeter,
    BudgetTooSmall,
    Cost,
    LayerChoice,
    OptimizerSettings,
    Resize,
    SelectionResult,
    SerialExecutor,
    make_optimizer,
    make_selector,
    make_space,
    selection_split,
    train_epochs,
)
from bayesym.selectors.registry import SELECTORS
from bayesym.selectors.training import seeded_batches


# ----------------------------------------------------------------------------- budget
def test_meter_refuses_once_spent_and_overruns_by_at_most_one_charge():
    meter = BudgetMeter(Budget(epochs=2.5), train_size=40)  # 100 passes
    charged = 0
    with pytest.raises(BudgetExhausted, match="100 training image passes"):
        while True:
            meter.charge(16)
            charged += 16
    assert meter.limit == 100 and charged == meter.image_passes == 112
    assert meter.image_passes - meter.limit < 16 and meter.exhausted


def test_meter_without_limit_counts_and_never_refuses():
    meter = BudgetMeter(Budget(), train_size=10)
    for _ in range(100):
        meter.charge(1000)
    meter.count_eval(7)
    meter.count_candidate(3)
    cost = meter.cost(final_model_epochs=1.5)
    assert (cost.image_passes, cost.eval_passes, cost.candidates_trained) == (100_000, 7, 3)
    assert meter.remaining is None and not meter.exhausted


def test_wall_clock_budget_and_resumed_seconds():
    now = [0.0]
    meter = BudgetMeter(Budget(wall_seconds=10.0), train_size=1, clock=lambda: now[0])
    meter.charge(1)
    now[0] = 10.5
    with pytest.raises(BudgetExhausted, match="wall-clock budget of 10 s"):
        meter.charge(1)
    state = meter.state_dict()
    resumed = BudgetMeter(Budget(wall_seconds=20.0), train_size=1, clock=lambda: now[0])
    resumed.load_state_dict(state)
    assert resumed.wall_seconds == pytest.approx(10.5) and resumed.image_passes == 1
    now[0] = 12.0
    assert resumed.wall_seconds == pytest.approx(12.0)


def test_require_refuses_work_that_cannot_fit_before_it_starts():
    meter = BudgetMeter(Budget(epochs=0.5), train_size=100)
    meter.require(50, "one candidate")
    with pytest.raises(BudgetTooSmall, match=r"one child needs 60 .* at least 0.6 epochs"):
        meter.require(60, "one child")
    assert meter.image_passes == 0


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_budget_refuses_non_positive_values(bad):
    with pytest.raises(ValueError, match=r"Budget\.epochs"):
        Budget(epochs=bad)


# --------------------------------------------------------------------------- training
def test_seeded_batches_cover_fractional_epochs_and_repeat_with_the_seed():
    batches = list(seeded_batches(10, 4, 25, seed=3))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2, 4, 1]  # epochs end inside a batch
    first_epoch = torch.cat(batches[:3])
    assert sorted(first_epoch.tolist()) == list(range(10))  # a permutation per epoch
    again = list(seeded_batches(10, 4, 25, seed=3))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    other = torch.cat(list(seeded_batches(10, 4, 25, seed=4)))
    assert not torch.equal(torch.cat(batches), other)


def _toy(n=64, seed=0):
    from bayesym.data import ImageDataset

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 2, 2, generator=g)
    y = (x.flatten(1).sum(-1) > 0).long()
    return ImageDataset(x, y, num_classes=2)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def test_train_epochs_is_reproducible_and_learns():
    data = _toy()
    results = []
    for _ in range(2):
        model = _net()
        opt = make_optimizer(model.parameters(), OptimizerSettings(lr=0.05, batch_size=8))
        stats = train_epochs(model, data, epochs=5, optimizer=opt, batch_size=8, seed=1)
        results.append((stats, [p.detach().clone() for p in model.parameters()]))
    (s1, p1), (s2, p2) = results
    assert s1 == s2 and all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))
    assert s1.steps == 40 and s1.images == 320 and not s1.stopped_by_budget
    assert s1.accuracy > 0.8


def test_train_epochs_stops_within_one_batch_of_the_budget():
    data = _toy()
    model = _net()
    opt = make_optimizer(model.parameters(), OptimizerSettings())
    meter = BudgetMeter(Budget(epochs=1.3), train_size=len(data))  # 84 passes
    stats = train_epochs(model, data, epochs=3, optimizer=opt, batch_size=10, seed=0, meter=meter)
    assert stats.stopped_by_budget and stats.images == meter.image_passes >= meter.limit
    assert meter.image_passes - meter.limit < 10


def test_train_epochs_adds_the_penalty():
    data = _toy()
    model = _net()
    opt = make_optimizer(model.parameters(), OptimizerSettings(lr=0.1, name="sgd"))
    calls = []

    def penalty():
        calls.append(1)
        return 100.0 * sum(p.square().sum() for p in model.parameters())

    train_epochs(model, data, epochs=1, optimizer=opt, batch_size=64, seed=0, penalty=penalty)
    assert len(calls) == 1


# ----------------------------------------------------------------------------- splits
def test_selection_split_is_disjoint_seeded_and_standardised_on_train():
    a = selection_split("digits", train_size=300, val_size=100, seed=0)
    b = selection_split("digits", train_size=300, val_size=100, seed=0)
    c = selection_split("digits", train_size=300, val_size=100, seed=1)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(
        a.valid.labels, b.valid.labels
    )
    assert not torch.equal(a.train.images, c.train.images)
    # disjoint: no training image appears among the validation images
    train_rows = {tuple(r.tolist()) for r in a.train.images.flatten(1)}
    assert not any(tuple(r.tolist()) in train_rows for r in a.valid.images.flatten(1))
    mean = a.train.images.mean()
    assert float(mean) == pytest.approx(0.0, abs=1e-5)
    assert float(a.train.images.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert a.test.name == "digits/test" and len(a.test) > 0


def test_selection_split_refuses_sizes_beyond_the_training_file():
    with pytest.raises(ValueError, match=r"exceeds the .* images of 'digits'"):
        selection_split("digits", train_size=5000, val_size=100, seed=0)
    with pytest.raises(ValueError, match="val_size must be a positive int"):
        selection_split("digits", train_size=10, val_size=0, seed=0)


def test_selection_split_resizes_every_split():
    split = selection_split(
        "digits", train_size=50, val_size=20, seed=0, resize=Resize(16, 0), test_size=30
    )
    assert (
        split.train.image_shape == split.valid.image_shape == split.test.image_shape == (1, 16, 16)
    )
    assert len(split.test) == 30
    assert Resize.to_side(16, 28) == Resize(14, 1)
    assert Resize.to_side(16, 8) == Resize(16, 0)
    assert Resize.to_side(16, 16) is None


# ----------------------------------------------------------------------- results etc.
def test_selection_result_round_trips_through_json(tmp_path):
    result = SelectionResult(
        selector="static",
        space="translation",
        config={"baseline": "conv", "nested": (1, 2)},
        choices=(LayerChoice("blocks.0", "conv", "translations", {"conv": 1.0}),),
        parameters=12,
        effective_parameters=None,
        valid={"accuracy": 0.5, "nll": 0.7},
        cost=Cost(1.0, 100, 10, 1, 2.0),
        history=({"epoch": 1, "loss": math.nan},),
        model=nn.Linear(2, 2),
    )
    result.save(tmp_path / "selection.json")
    back = SelectionResult.from_json(
        __import__("json").loads((tmp_path / "selection.json").read_text())
    )
    assert back.model is None and back.choices == result.choices and back.cost == result.cost
    assert back.history[0]["loss"] is None  # NaN written as null


def test_serial_executor_keeps_order():
    assert SerialExecutor().map(pow, [1, 2, 3], shared=2) == [2, 4, 8]


def test_selectors_register_name_spaces_and_config_by_class_keywords():
    expected = {
        "static": ({"translation", "d4", "pixel"}, "StaticConfig"),
        "marglik": ({"translation", "d4"}, "MarglikSelectorConfig"),
        "rpp": ({"translation", "d4"}, "RPPConfig"),
        "equinas-d": ({"d4"}, "EquiNASDConfig"),
        "equinas-e": ({"d4"}, "EquiNASEConfig"),
        "ace-eq": ({"translation", "d4"}, "ACEEqualityConfig"),
        "ace-resilient": ({"translation", "d4"}, "ACEResilientConfig"),
        "aen": ({"pixel"}, "AENConfig"),
    }
    assert list(SELECTORS) == list(expected)
    for key, selector in SELECTORS.items():
        spaces, config = expected[key]
        assert selector.name == key
        assert selector.spaces == frozenset(spaces) and isinstance(selector.spaces, frozenset)
        assert selector.config_class.__name__ == config
        assert type(make_selector(key).config) is selector.config_class

    class Renamed(SELECTORS["rpp"], name="rpp-renamed"):  # keywords left out are inherited
        pass

    assert (Renamed.name, Renamed.spaces) == ("rpp-renamed", frozenset({"translation", "d4"}))
    assert Renamed.config_class is SELECTORS["rpp"].config_class
    assert SELECTORS["rpp"].name == "rpp"


def test_unknown_selector_and_space_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown selector 'nope'; registered selectors"):
        make_selector("nope")
    with pytest.raises(ValueError, match="unknown search space 'nope'; registered search spaces"):
        make_space("nope")


# ------------------------------------------------------------------ translation space
def test_translation_space_builds_every_network_and_describes_it():
    from bayesym.layers import HomotopicLayer, PathSum
    from bayesym.selectors import DataShape, TranslationSpace

    space = make_space("translation", width=1)
    assert isinstance(space, TranslationSpace) and space.baselines() == ("conv", "ffc", "fc")
    shape = DataShape(1, 8, 8, 3)
    x = torch.randn(2, 1, 8, 8)
    conv = space.build_baseline("conv", shape)
    assert conv(x).shape == (2, 3)
    assert {c.symmetry for c in space.describe(conv)} == {"translations"}
    assert {c.symmetry for c in space.describe(space.build_baseline("ffc", shape))} == {"none"}
    relaxed = space.relaxed_network(shape)
    assert all(isinstance(layer, PathSum) for _, layer in relaxed.named_layers())
    assert space.describe(relaxed)[0].choice == "ffc+conv"
    residual, eq, neq = space.residual_network(shape)
    assert (eq, neq) == ("conv", "fc") and set(residual.blocks[0].layer.paths) == {"conv", "fc"}
    homotopic = space.homotopic_network(shape)
    assert all(isinstance(layer, HomotopicLayer) for _, layer in homotopic.named_layers())
    with pytest.raises(ValueError, match="unknown baseline 'D4' of the 'translation' space"):
        space.build_baseline("D4", shape)
    with pytest.raises(ValueError, match="has a group axis"):
        TranslationSpace(static_kinds=("gconv",))

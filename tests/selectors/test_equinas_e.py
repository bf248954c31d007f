"""EquiNAS_E: function-preserving children, Pareto selection, budget, resume, a known answer."""

import json

import pytest
import torch
from selector_toys import digits, without_time

from bayesym.data import ImageDataset
from bayesym.selectors import (
    SELECTORS,
    Budget,
    BudgetTooSmall,
    D4SubgroupSpace,
    DataShape,
    EquiNASEConfig,
    EquiNASESelector,
    OptimizerSettings,
    SerialExecutor,
    TranslationSpace,
    evaluate_model,
    pareto_front,
    pareto_select,
)
from bayesym.selectors.equinas_e import CHECKPOINT_FILE, child_moves, spawn
from bayesym.selectors.equinas_lineage import lineage, lineage_table

SHAPE = DataShape(1, 8, 8, 10)
ADAM = OptimizerSettings(name="adam", lr=0.01, batch_size=32)


def randomised(net):
    """``net`` with random weights and non-trivial batch-norm statistics."""
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    net.train()
    for _ in range(3):
        net(torch.randn(6, 1, 8, 8))
    return net


@pytest.mark.parametrize("norm", ["none", "group_batch"])
def test_every_child_computes_its_parents_function_before_training(float64, norm):
    space = D4SubgroupSpace(width=1, depth=4, norm=norm)
    lineage_moves = [(3, "C4"), (2, "C4")]
    parent = randomised(spawn(space, SHAPE, lineage_moves, None))
    state = parent.state_dict()
    x = torch.randn(5, 1, 8, 8)
    moves = child_moves([g.name for g in parent.groups], "any")
    assert moves == [(1, "C4"), (3, "C1"), (3, "C2")]  # groups D4, D4, C4, C4
    for move in moves:
        child = spawn(space, SHAPE, lineage_moves, state, move)
        assert child.groups[move[0]].name == move[1]
        for mode in ("eval", "train"):
            getattr(parent, mode)(), getattr(child, mode)()
            torch.testing.assert_close(child(x), parent(x), atol=1e-10, rtol=1e-10)
        assert sum(p.numel() for p in child.parameters()) > sum(
            p.numel() for p in parent.parameters()
        )


@pytest.mark.parametrize(
    "groups",
    [["D4"] * 4, ["D4", "D4", "C4", "C4"], ["D4", "D2", "D1", "C1"], ["C4", "C2", "C2", "C1"]],
)
def test_any_moves_are_the_networks_relaxations(groups):
    net = D4SubgroupSpace(width=1, depth=4).network(groups, SHAPE)
    expected = sorted((b, h.name) for b, h in net.relaxations())
    assert sorted(child_moves(groups, "any")) == expected


def test_reference_moves_touch_the_last_block_or_copy_the_successor_and_never_d2():
    assert child_moves(["D4"] * 4, "reference") == [(3, "C4"), (3, "D1")]  # D2 child dropped
    assert child_moves(["D4", "D4", "C4", "C4"], "reference") == [(3, "C2"), (3, "C1"), (1, "C4")]
    for groups in (["D4", "D4", "D1", "C1"], ["D4", "C4", "C2", "C2"]):
        for block, sub in child_moves(groups, "reference"):
            child = [sub if b == block else g for b, g in enumerate(groups)]
            assert "D2" not in child
            assert block == 3 or sub == groups[block + 1]


def test_pareto_front_keeps_every_copy_of_a_tie_and_drops_dominated_copies():
    costs = [(0.1, 10), (0.1, 10), (0.2, 5), (0.2, 20), (0.2, 20), (0.3, 5)]
    assert pareto_front(costs) == [0, 1, 2]
    # brute force: i is on the front iff no j is <= in both costs and < in one
    for i, a in enumerate(costs):
        dominated = any(
            b[0] <= a[0] and b[1] <= a[1] and b != a for j, b in enumerate(costs) if j != i
        )
        assert (i in pareto_front(costs)) == (not dominated)


def test_pareto_selection_tops_up_by_accuracy_and_keeps_or_caps_a_large_front():
    costs = [(0.5, 1), (0.1, 100), (0.3, 10), (0.2, 200), (0.4, 300)]
    assert pareto_front(costs) == [0, 1, 2]
    assert pareto_select(costs, 2) == [1, 2, 0]  # front of 3 > P = 2: kept whole
    assert pareto_select(costs, 2, cap=True) == [1, 2]
    assert pareto_select(costs, 4) == [1, 3, 2, 0]  # topped up with the most accurate (0.2)
    assert pareto_select([(0.2, 5), (0.2, 5)], 1) == [0, 1]  # duplicates: both on the front
    assert pareto_select([(0.2, 5), (0.2, 5)], 1, cap=True) == [0]  # cap: by index
    with pytest.raises(ValueError, match="non-finite"):
        pareto_front([(0.1, float("nan"))])
    with pytest.raises(ValueError, match="size must be"):
        pareto_select(costs, 0)


def bars(n, seed):
    """Horizontal (0) or vertical (1) bars at random rows/columns: 90° rotations swap labels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    pos = torch.randint(0, 8, (n,), generator=g)
    for i in range(n):
        if y[i] == 0:
            x[i, 0, pos[i], :] += 1.0
        else:
            x[i, 0, :, pos[i]] += 1.0
    return ImageDataset(x, y, num_classes=2)


def test_known_answer_a_task_that_90_degree_rotations_break_relaxes_the_last_block(tmp_path):
    train, valid = bars(256, 0), bars(128, 1)
    config = EquiNASEConfig(population=3, generations=1, fraction=1.0, optimizer=ADAM)
    space = D4SubgroupSpace(width=1, depth=3)
    result = EquiNASESelector(config).fit(
        train, valid, space=space, budget=Budget(), run_dir=tmp_path, progress=False
    )
    root = result.history[0]["population"][0]
    assert root["groups"] == ["D4"] * 3 and root["accuracy"] < 0.7  # D4-invariant: chance
    assert result.choices[-1].choice in ("C1", "D1", "C2", "D2")  # no 90° rotation at the end
    assert result.valid["accuracy"] > 0.9
    chosen = [c.choice for c in result.choices]
    assert [r["groups"] for r in lineage(result.history)] == [["D4"] * 3, chosen]
    table = lineage_table(result.history)
    assert [(r["generation"], r["groups"]) for r in table] == [(0, ["D4"] * 3), (1, chosen)]
    assert table[1]["accuracy"] == result.valid["accuracy"] == table[1]["population_best"]
    assert (tmp_path / "lineage.png").stat().st_size > 10_000


def run(budget=None, run_dir=None, executor=None, **options):
    split = digits(train_size=64, val_size=32)
    config = EquiNASEConfig(
        **{"population": 2, "generations": 2, "fraction": 0.5, "optimizer": ADAM, **options}
    )
    space = D4SubgroupSpace(width=1, depth=2)
    return EquiNASESelector(config).fit(
        split.train, split.valid, space=space, budget=budget or Budget(), run_dir=run_dir,
        executor=executor, progress=False,
    )  # fmt: skip


def test_digits_smoke_returns_a_valid_result():
    result = run()
    assert SELECTORS["equinas-e"] is EquiNASESelector
    assert result.selector == "equinas-e" and result.space == "d4"
    assert [c.layer for c in result.choices] == ["blocks.0.conv", "blocks.1.conv"]
    assert all(sum(c.scores.values()) == pytest.approx(1.0) for c in result.choices)
    assert result.parameters == sum(p.numel() for p in result.model.parameters())
    rescored = evaluate_model(result.model, digits(train_size=64, val_size=32).valid)
    assert rescored == pytest.approx(result.valid)  # the returned model is the best individual
    assert len(result.history) == 3  # the root's generation and two more
    assert result.history[1]["candidates"] == 6  # the root and its 5 moves of block 1
    trained = sum(h["candidates"] for h in result.history)
    assert result.cost.candidates_trained == trained
    assert result.cost.image_passes == trained * 32  # ceil(0.5 * 64) passes per candidate
    # every lineage trains in every generation (parents continue, children inherit)
    assert result.cost.final_model_epochs == 0.5 * 3
    assert len(result.history[-1]["population"]) >= 2
    json.dumps(result.to_json())


def test_the_budget_is_never_exceeded_and_stops_the_search():
    result = run(budget=Budget(epochs=4.0), generations=10)
    # 8 candidates of 32 passes fit: the root, generation 1 (6), one of generation 2
    assert result.cost.image_passes == 4 * 64
    assert [h["candidates"] for h in result.history] == [1, 6, 1]
    assert result.history[-1]["stopped_by_budget"]
    with pytest.raises(BudgetTooSmall, match="all-D4"):
        run(budget=Budget(epochs=0.25))
    with pytest.raises(BudgetTooSmall, match="wall-clock budget ran out"):
        run(budget=Budget(wall_seconds=1e-9))


def test_the_finish_variant_reserves_its_passes_and_trains_the_best_further():
    result = run(budget=Budget(epochs=4.0), generations=10, finish_epochs=1.0)
    # 64 passes kept back: the root and 5 of generation 1's 6 candidates fit before them
    assert [h["candidates"] for h in result.history] == [1, 5]
    assert result.cost.image_passes == 4 * 64
    assert result.cost.candidates_trained == 7
    finish = result.history[-1]["finish"]
    assert finish["id"] == result.history[-1]["best"]
    assert result.cost.final_model_epochs == finish["epochs"] == 0.5 * 2 + 1.0
    assert result.valid == {"accuracy": finish["accuracy"], "nll": finish["nll"]}
    rescored = evaluate_model(result.model, digits(train_size=64, val_size=32).valid)
    assert rescored == pytest.approx(result.valid)  # the returned weights are the finished ones
    with pytest.raises(ValueError, match="finish_epochs must be >= 0"):
        EquiNASEConfig(finish_epochs=-1.0)


class Interrupted(RuntimeError):
    pass


class DiesAfter(SerialExecutor):
    """Trains ``calls`` generations, then 'is killed'."""

    def __init__(self, calls):
        self.calls = calls

    def map(self, fn, items, *, shared=None):
        if self.calls == 0:
            raise Interrupted
        self.calls -= 1
        return super().map(fn, items, shared=shared)


class Counting(SerialExecutor):
    """Counts the generations it trains."""

    calls = 0

    def map(self, fn, items, *, shared=None):
        self.calls += 1
        return super().map(fn, items, shared=shared)


class Reversed(SerialExecutor):
    """Trains the candidates in reverse order (results still in order)."""

    def map(self, fn, items, *, shared=None):
        return super().map(fn, items[::-1], shared=shared)[::-1]


def test_kill_and_resume_gives_the_uninterrupted_result(tmp_path):
    whole = run(run_dir=tmp_path / "whole")
    with pytest.raises(Interrupted):
        run(run_dir=tmp_path / "cut", executor=DiesAfter(2))  # root and generation 1 done
    checkpoint = torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=False)
    assert checkpoint["next_generation"] == 2
    counting = Counting()
    resumed = run(run_dir=tmp_path / "cut", executor=counting)
    assert counting.calls == 1  # only generation 2 was left
    assert without_time(resumed.to_json()) == without_time(whole.to_json())
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, atol=0, rtol=0)
    reordered = run(executor=Reversed())
    assert without_time(reordered.to_json()) == without_time(whole.to_json())
    with pytest.raises(ValueError, match="another selection"):
        run(run_dir=tmp_path / "cut", population=3)


def test_bad_settings_and_spaces_are_refused():
    with pytest.raises(ValueError, match="moves must be one of"):
        EquiNASEConfig(moves="all")
    with pytest.raises(ValueError, match="fraction must be positive"):
        EquiNASEConfig(fraction=0.0)
    split = digits(train_size=16, val_size=8)
    with pytest.raises(ValueError, match="supports: d4"):
        EquiNASESelector().fit(split.train, split.valid, space=TranslationSpace(), budget=Budget())

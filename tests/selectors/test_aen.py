"""The AEN selector: DQN on a known reward table, the child environment, budget, resume."""

import itertools
import math

import pytest
import torch
from selector_toys import without_time

import bayesym.selectors.aen as aen_module
from bayesym.backbones import AENMLP
from bayesym.selectors import (
    SELECTORS,
    AENConfig,
    AENSelector,
    Budget,
    BudgetTooSmall,
    PixelSpace,
    TranslationSpace,
    selection_split,
)
from bayesym.selectors.aen import AENSearch, Environment, aen_reward, child_seed
from bayesym.selectors.dqn import EpsilonSchedule, ReplayMemory, state_bits
from bayesym.selectors.spaces.pixel import parse_state, state_label

# A Q-learning setting that learns the toy table quickly (the paper's widths are for 1,200
# children; these are for 150).
TOY = {
    "q_hidden": (64,),
    "q_lr": 1e-2,
    "q_batch_size": 32,
    "min_replay": 16,
    "q_updates_per_step": 4,
    "episode_length": 40,
    "max_steps_per_child": 10,
}


class HammingTable(Environment):
    """Accuracy ``1 - hamming(state, target) / 12``: the best state is ``target``."""

    def __init__(self, target):
        self.target, self.evaluated = target, []

    def can_evaluate(self):
        return True

    def evaluate(self, state):
        self.evaluated.append(state)
        return {"accuracy": 1 - bin(state ^ self.target).count("1") / 12}


def search_until_found(config, target, planned=150):
    search, env = AENSearch(config, planned), HammingTable(target)
    while not search.finished(env):
        search.step(env)
        if target in search.visited:
            return search, env, len(search.visited)
    return search, env, None


@pytest.mark.parametrize("target", [0b101101110011, 0b110011110000], ids=["d8", "d6"])
def test_dqn_finds_the_best_state_of_a_hamming_table(target):
    """Found within 150 new states of 4,096; an agent acting at random (epsilon 1) is not."""
    search, env, found = search_until_found(AENConfig(**TOY), target)
    assert found is not None and found <= 150
    assert search.top_states(1) == [target]
    assert sorted(env.evaluated) == sorted(search.visited)  # every state scored once
    random_agent = AENConfig(**TOY, epsilon_phases=((1.0, 1),))
    assert search_until_found(random_agent, target)[2] is None


def test_revisits_train_nothing_and_epsilon_advances_only_on_new_states():
    config = AENConfig(**{**TOY, "max_steps_per_child": 30})
    search, env = AENSearch(config, 40), HammingTable(0b111)
    while not search.finished(env):
        search.step(env)
    assert len(env.evaluated) == len(set(env.evaluated)) == len(search.visited) == 40
    assert search.steps > 40  # some steps revisited known states
    epsilons = [h["epsilon"] for h in search.history]
    assert epsilons == [search.schedule.epsilon(k) for k in range(40)]
    assert epsilons[0] == 1.0 and epsilons[-1] == 0.01
    assert all(a >= b for a, b in itertools.pairwise(epsilons))


def test_paper_schedule_scales_and_reward_is_eq18_in_fractions():
    paper = EpsilonSchedule.paper()
    assert paper.total == 1200 and paper.scaled(1200) == paper
    assert paper.scaled(12).total == 12
    assert aen_reward(0.8, 0.7) == pytest.approx(0.1 * math.exp(0.1))
    assert aen_reward(0.6, 0.7) == pytest.approx(-0.1 * math.exp(0.1))
    assert state_bits([0b101], 3).tolist() == [[1.0, 0.0, 1.0]]
    memory = ReplayMemory(2)
    for k in range(3):
        memory.push(k, k, k, float(k))
    assert sorted(t[0] for t in memory.transitions) == [1, 2]


def test_children_seed_from_state_and_run_seed():
    seeds = {child_seed(0, s) for s in range(4096)}
    assert len(seeds) == 4096 and child_seed(1, 5) != child_seed(0, 5)


def small_config(**changes):
    return AENConfig(
        **{
            **TOY,
            "child_epochs": 1.0,
            "retrain_epochs": 2.0,
            "top_k": 2,
            "children": 8,
            "episode_length": 6,
            "min_replay": 4,
            **changes,
        }
    )


@pytest.fixture(scope="module")
def aen_digits():
    return selection_split("aen-digits-Aug1", train_size=96, val_size=48, seed=0)


def test_digits_smoke_selects_an_invariant_mlp_within_budget(aen_digits):
    split = aen_digits
    budget = Budget(epochs=12.0)  # 2 retrainings of 2 epochs reserved: 8 children of 1 epoch
    result = AENSelector(small_config()).fit(
        split.train, split.valid, space=PixelSpace(), budget=budget, progress=False
    )
    assert isinstance(result.model, AENMLP) and result.selector == "aen"
    assert result.cost.image_passes <= budget.image_passes(len(split.train))
    children = [h for h in result.history if "child" in h]
    retrained = [h for h in result.history if "retrained" in h]
    assert len(children) == 8 and len(retrained) == 2
    assert result.cost.candidates_trained == 10
    assert result.cost.image_passes == 8 * 96 + 2 * 2 * 96
    label = result.choices[0].choice
    assert label in {h["retrained"] for h in retrained}
    assert (
        result.model.config.transforms
        == PixelSpace().config(parse_state(label), _shape(split)).transforms
    )
    best = max(retrained, key=lambda h: (h["valid"]["accuracy"], -h["valid"]["nll"]))
    assert result.valid["accuracy"] == best["valid"]["accuracy"]
    assert children[0]["label"] == "none" and children[0]["reward"] == 0.0


def _shape(split):
    from bayesym.selectors import DataShape

    return DataShape.of(split.train)


def test_children_train_on_train_and_are_scored_on_validation_only(aen_digits, monkeypatch):
    split = aen_digits
    seen = {"train": set(), "eval": set()}
    train_epochs, evaluate = aen_module.train_epochs, aen_module._evaluate

    def spy_train(model, data, **kwargs):
        seen["train"].add(id(data))
        return train_epochs(model, data, **kwargs)

    def spy_eval(model, data):
        seen["eval"].add(id(data))
        return evaluate(model, data)

    monkeypatch.setattr(aen_module, "train_epochs", spy_train)
    monkeypatch.setattr(aen_module, "_evaluate", spy_eval)
    AENSelector(small_config(children=3, top_k=1)).fit(
        split.train, split.valid, space=PixelSpace(), budget=Budget(), progress=False
    )
    assert seen == {"train": {id(split.train)}, "eval": {id(split.valid)}}


def test_budget_too_small_and_wrong_space_are_refused_before_work(aen_digits):
    split = aen_digits
    with pytest.raises(BudgetTooSmall, match="one AEN child and the retraining of 2 states"):
        AENSelector(small_config()).fit(
            split.train, split.valid, space=PixelSpace(), budget=Budget(epochs=4.0)
        )
    with pytest.raises(
        ValueError, match="does not support the 'translation' space; it supports: pix"
    ):
        AENSelector(small_config()).fit(
            split.train, split.valid, space=TranslationSpace(), budget=Budget(epochs=12.0)
        )
    assert SELECTORS["aen"] is AENSelector


def test_killed_run_resumes_to_the_same_result(aen_digits, tmp_path, monkeypatch):
    split = aen_digits
    config = small_config(children=6)
    whole = AENSelector(config).fit(
        split.train, split.valid, space=PixelSpace(), budget=Budget(), progress=False,
        run_dir=tmp_path / "whole",
    )  # fmt: skip
    calls = {"n": 0}
    real = aen_module._train_child

    def dying(job, child):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        return real(job, child)

    monkeypatch.setattr(aen_module, "_train_child", dying)
    with pytest.raises(KeyboardInterrupt):
        AENSelector(config).fit(
            split.train, split.valid, space=PixelSpace(), budget=Budget(), progress=False,
            run_dir=tmp_path / "killed",
        )  # fmt: skip
    assert (tmp_path / "killed/search.pt").is_file()
    monkeypatch.setattr(aen_module, "_train_child", real)
    resumed = AENSelector(config).fit(
        split.train, split.valid, space=PixelSpace(), budget=Budget(), progress=False,
        run_dir=tmp_path / "killed",
    )  # fmt: skip
    assert without_time(resumed.to_json()) == without_time(whole.to_json())
    for key, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value)


def test_figure_buckets_children_by_epsilon_and_lists_top_states(tmp_path):
    from bayesym.selectors.aen_figure import epsilon_buckets, mean_and_se, plot_aen_search
    from bayesym.selectors.aen_figure import top_states as ranked

    search = AENSearch(AENConfig(**TOY), 30)
    env = HammingTable(0b11)
    while not search.finished(env):
        search.step(env)
    buckets = epsilon_buckets([search.history, search.history])
    assert list(buckets) == sorted(buckets, reverse=True)
    assert sum(len(v) for v in buckets.values()) == 2 * 30
    best = max(search.history, key=lambda h: (h["reward"], -h["child"]))
    assert ranked(search.history, 1) == [best["label"]] == [state_label(search.top_states(1)[0])]
    assert mean_and_se([1.0, 3.0]) == (2.0, 1.0)
    path = plot_aen_search({"toy": [search.history]}, tmp_path / "aen.png")
    assert path.stat().st_size > 10_000


def test_episodes_scale_with_the_planned_children():
    from bayesym.selectors.aen import scaled_episode_length

    assert scaled_episode_length(1200) == 101 and scaled_episode_length(50) == 24
    assert AENSearch(AENConfig(), 2400).episode_length == 202
    assert AENSearch(AENConfig(episode_length=7), 2400).episode_length == 7
    with pytest.raises(ValueError, match="episode_length must be a positive int or None"):
        AENConfig(episode_length=0)


def test_aen_runs_in_the_compare_harness_beside_pixel_baselines(tmp_path):
    from bayesym.selectors.compare import CompareConfig, compare

    options = {k: v for k, v in small_config().__dict__.items() if k in TOY or k in (
        "child_epochs", "retrain_epochs", "top_k", "episode_length", "min_replay")}  # fmt: skip
    config = CompareConfig(
        task="aen-digits-Aug1", space="pixel", selectors=("static", "aen"),
        baselines=("none", "hflip"), seeds=(0,), budget_epochs=12.0, train_size=96,
        val_size=48, test_size=60, selector_options={"aen": options,
        "static": {"training.batch_size": 48}},
    )  # fmt: skip
    compare(config, tmp_path, progress=False)
    table = (tmp_path / "compare.md").read_text()
    assert "| aen |" in table and "| static:hflip |" in table


def test_a_wall_clock_budget_stops_the_search_and_returns_the_best_child(aen_digits, monkeypatch):
    """A clock that advances one second per reading: the search stops; no retraining fits."""
    from bayesym.selectors.budget import BudgetMeter

    class TickingMeter(BudgetMeter):
        def __init__(self, budget, train_size):
            ticks = iter(range(10**6))
            super().__init__(budget, train_size, clock=lambda: float(next(ticks)))

    import bayesym.selectors.base as base_module

    monkeypatch.setattr(base_module, "BudgetMeter", TickingMeter)
    split = aen_digits
    result = AENSelector(small_config(children=50)).fit(
        split.train, split.valid, space=PixelSpace(), budget=Budget(wall_seconds=12.0),
        progress=False,
    )  # fmt: skip
    children = [h for h in result.history if "child" in h]
    assert 1 <= len(children) < 50 and not any("retrained" in h for h in result.history)
    assert result.cost.final_model_epochs == 1.0  # the best child's own weights
    best = max(children, key=lambda h: (h["reward"], -h["child"]))
    assert result.choices[0].choice == best["label"]
    assert result.valid["accuracy"] == best["valid_accuracy"]

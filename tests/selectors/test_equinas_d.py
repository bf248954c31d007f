"""EquiNAS_D: the alternating steps, the batch streams, budget, resume and the read-out."""

import copy
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from selector_toys import digits, record_data_loads, without_time
from torch import nn

from bayesym.data import ImageDataset
from bayesym.layers.mixed import architecture_parameters, weight_parameters
from bayesym.selectors import (
    SELECTORS,
    Budget,
    BudgetTooSmall,
    D4SubgroupSpace,
    DataShape,
    EquiNASDConfig,
    EquiNASDSelector,
    LayerChoice,
    TranslationSpace,
    equinas_d,
    equinas_d_figure,
)
from bayesym.selectors.compare import CompareConfig, compare
from bayesym.selectors.equinas_d import (
    discretise,
    group_mass,
    mixed_layers,
    mixture_weights,
    search_orders,
    search_step,
)
from bayesym.selectors.equinas_d_figure import mixture_series, plot_mixture_history


def space(norm: str = "group_batch") -> D4SubgroupSpace:
    """A small D4 space (two blocks of width 1) with the paper's or the norm-free backbone."""
    return D4SubgroupSpace(width=1, depth=2, norm=norm)


def mixed_net(norm: str = "group_batch", dtype=torch.float32) -> nn.Module:
    """The space's mixed network for 8x8 images and 10 classes."""
    torch.manual_seed(0)
    return space(norm).mixed_network(DataShape(1, 8, 8, 10)).to(dtype)


@pytest.fixture
def no_figure(monkeypatch):
    """Skip the figure written at the end of a run with a run directory (about 1 s each)."""
    monkeypatch.setattr(equinas_d_figure, "plot_mixture_history", lambda *args, **kwargs: None)


def fit(config=None, budget=None, split=None, **kwargs):
    budget = budget or Budget()
    split = split or digits(64, 32)
    config = config or EquiNASDConfig(epochs=2, batch_size=16)
    kwargs.setdefault("space", space())
    return EquiNASDSelector(config).fit(
        split.train, split.valid, budget=budget, progress=False, **kwargs
    )


# --- the regression test of the architecture gradient --------------------------------------------
def batches(seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 10, (n,), generator=g)


def logit_gradient_by_differences(model: nn.Module, x, y, step: float = 1e-6) -> list[torch.Tensor]:
    """Central differences of the batch's mean cross-entropy in every logit (train mode)."""
    probe = copy.deepcopy(model).train()
    grads = []
    for alpha in architecture_parameters(probe):
        grad = torch.zeros_like(alpha)
        for i in range(alpha.numel()):
            values = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    alpha.view(-1)[i] += sign * step
                    values.append(float(F.cross_entropy(probe(x), y)))
                    alpha.view(-1)[i] -= sign * step
            grad.view(-1)[i] = (values[0] - values[1]) / (2 * step)
        grads.append(grad)
    return grads


def optimisers(model, kind="sgd", lr=0.1):
    make = torch.optim.SGD if kind == "sgd" else torch.optim.Adam
    return (
        make(list(architecture_parameters(model)), lr=lr),
        torch.optim.Adam(list(weight_parameters(model)), lr=1e-3),
    )


@pytest.mark.parametrize("norm", ["group_batch", "none"])
@pytest.mark.parametrize("order", ["architecture_first", "weights_first"])
def test_logit_step_is_the_architecture_batch_gradient_alone(norm, order):
    torch.manual_seed(0)
    model = mixed_net(norm, dtype=torch.float64)
    with torch.no_grad():  # away from the uniform start, so every logit's gradient differs
        for alpha in architecture_parameters(model):
            alpha.copy_(torch.randn_like(alpha))
    batch_a, batch_w = batches(1), batches(2)
    arch_opt, weight_opt = optimisers(model, "sgd", lr=0.1)
    # Where the Z-step is evaluated: at Ψ before (Alg. 2) or after (reference order) the Ψ-step.
    at = copy.deepcopy(model)
    if order == "weights_first":
        _, w_opt = optimisers(at)
        equinas_d.weight_step(at, *batch_w, w_opt)
    expected = logit_gradient_by_differences(at, *batch_a)
    mixed_in = [
        a + w for a, w in zip(expected, logit_gradient_by_differences(at, *batch_w), strict=True)
    ]
    before = [a.detach().clone() for a in architecture_parameters(model)]
    search_step(model, batch_a, batch_w, arch_opt, weight_opt, order)
    for alpha, old, grad, wrong in zip(
        architecture_parameters(model), before, expected, mixed_in, strict=True
    ):
        assert grad.abs().max() > 1e-5  # a live network: the test can tell gradients apart
        torch.testing.assert_close(alpha.grad, grad, rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(alpha.detach(), old - 0.1 * grad, rtol=1e-6, atol=1e-8)
        # the reference code's gradient (both batches' summed) fails these tolerances by far
        assert (wrong - grad).abs().max() > 100 * (1e-8 + 1e-6 * grad.abs().max())


def test_adam_logit_step_equals_adam_on_the_brute_force_gradient():
    torch.manual_seed(1)
    model = mixed_net("group_batch", dtype=torch.float64)
    batch_a, batch_w = batches(3), batches(4)
    grads = logit_gradient_by_differences(model, *batch_a)
    reference = [a.detach().clone().requires_grad_() for a in architecture_parameters(model)]
    adam = torch.optim.Adam(reference, lr=0.01)
    for p, g in zip(reference, grads, strict=True):
        p.grad = g
    adam.step()
    arch_opt, weight_opt = optimisers(model, "adam", lr=0.01)
    search_step(model, batch_a, batch_w, arch_opt, weight_opt)
    for alpha, ref in zip(architecture_parameters(model), reference, strict=True):
        torch.testing.assert_close(alpha.detach(), ref.detach(), rtol=0, atol=1e-9)


def test_architecture_step_leaves_running_statistics_to_the_weight_batches():
    torch.manual_seed(2)
    model = mixed_net("group_batch", dtype=torch.float64)
    arch_opt, weight_opt = optimisers(model)

    def running():
        return {n: b.clone() for n, b in model.named_buffers() if "running" in n}

    start = running()
    equinas_d.architecture_step(model, *batches(5), arch_opt)
    after_arch = running()
    assert start.keys() == after_arch.keys() and len(start) == 6
    for name, value in start.items():
        torch.testing.assert_close(after_arch[name], value, rtol=0, atol=0)
    equinas_d.weight_step(model, *batches(6), weight_opt)
    after_weights = running()
    assert all(not torch.equal(after_weights[n], start[n]) for n in start if "mean" in n)


def test_the_two_batch_streams_are_independent_permutations():
    weights, arch = search_orders(50, seed=3, epoch=0)
    assert sorted(weights.tolist()) == list(range(50)) == sorted(arch.tolist())
    assert not torch.equal(weights, arch)
    again = search_orders(50, seed=3, epoch=0)
    assert torch.equal(again[0], weights) and torch.equal(again[1], arch)
    assert not torch.equal(search_orders(50, seed=3, epoch=1)[0], weights)
    assert not torch.equal(search_orders(50, seed=4, epoch=0)[0], weights)


# --- the selector ---------------------------------------------------------------------------------
def test_digits_smoke_returns_z_per_block(tmp_path):
    result = fit(run_dir=tmp_path)
    assert "equinas-d" in SELECTORS and SELECTORS["equinas-d"] is EquiNASDSelector
    assert [c.layer for c in result.choices] == ["blocks.0.conv", "blocks.1.conv"]
    assert [c.layer for c in space().describe(result.model)] == [c.layer for c in result.choices]
    for choice in result.choices:
        assert set(choice.scores) == {"C1", "D1", "C2", "D2", "C4", "D4"}
        assert sum(choice.scores.values()) == pytest.approx(1.0)
        assert choice.choice == max(choice.scores, key=choice.scores.get)
        assert choice.symmetry == f"translations x {choice.choice}"
    assert result.config["variant"] == "mixed"
    assert [r["epoch"] for r in result.history] == [0, 1, 2]
    assert result.history[-1]["z"] == {c.layer: dict(c.scores) for c in result.choices}
    assert result.history[0]["z"]["blocks.0.conv"]["D4"] == pytest.approx(1 / 6)
    assert result.cost.image_passes == 2 * 2 * 64 and result.cost.final_model_epochs == 2.0
    assert mixture_weights(result.model) == result.history[-1]["z"]
    assert json.loads((tmp_path / "selection.json").read_text())["selector"] == "equinas-d"
    assert (tmp_path / "mixture_weights.png").stat().st_size > 0


def test_refuses_a_space_without_mixed_network():
    with pytest.raises(ValueError, match="does not support the 'translation' space"):
        fit(space=TranslationSpace(width=1))


@pytest.mark.parametrize("variant", ["mixed", "discretised"])
def test_budget_is_respected(variant):
    config = EquiNASDConfig(epochs=50, batch_size=16, variant=variant, retrain_epochs=1)
    result = fit(config, Budget(epochs=3.0))
    limit = 3 * 64
    assert limit <= result.cost.image_passes <= limit + 2 * 16
    search = [r for r in result.history if r["phase"] == "search" and r["epoch"] > 0]
    search_passes = search[-1]["image_passes"]
    if variant == "discretised":
        assert search_passes <= limit - 64 + 2 * 16
        assert [r["epoch"] for r in result.history if r["phase"] == "retrain"] == [1]
    else:  # 3 epochs of passes = 1.5 search epochs
        assert [r["epoch"] for r in search] == [1, 2]
        assert search_passes == limit


def test_a_last_batch_of_one_image_is_dropped():
    result = fit(EquiNASDConfig(epochs=1, batch_size=16), split=digits(33, 16))
    assert result.cost.image_passes == 2 * 32


def test_too_small_budget_is_refused_before_work():
    with pytest.raises(BudgetTooSmall, match="EquiNAS_D step"):
        fit(EquiNASDConfig(batch_size=64), Budget(epochs=1.0))


@pytest.mark.parametrize(
    "variant, budget, kill_at",
    [("mixed", None, 2), ("mixed", 3.0, 2), ("discretised", None, 6)],
)
def test_kill_and_resume_equals_uninterrupted(
    tmp_path, monkeypatch, no_figure, variant, budget, kill_at
):
    """Killed after ``kill_at`` checkpoints (mixed: within the search, the budgeted run after
    its partial last epoch; discretised: within the retraining), then resumed."""
    config = EquiNASDConfig(epochs=3, batch_size=16, variant=variant, retrain_epochs=2)
    budget = None if budget is None else Budget(epochs=budget)
    whole = fit(config, budget, run_dir=tmp_path / "whole")
    saves = []
    real_save = equinas_d.save_checkpoint

    def dying_save(path, payload):
        real_save(path, payload)
        saves.append((payload["state"]["phase"], payload["state"]["epoch"]))
        if len(saves) == kill_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(equinas_d, "save_checkpoint", dying_save)
    with pytest.raises(KeyboardInterrupt):
        fit(config, budget, run_dir=tmp_path / "killed")
    monkeypatch.setattr(equinas_d, "save_checkpoint", real_save)
    resumed = fit(config, budget, run_dir=tmp_path / "killed")
    assert saves[-1] == (("retrain", 1) if variant == "discretised" else ("search", 2))
    assert without_time(resumed.to_json()) == without_time(whole.to_json())
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


def test_non_square_images_are_refused_before_work(tmp_path):
    split = digits(64, 32)
    wide = ImageDataset(split.train.images[..., :6], split.train.labels, num_classes=10)
    with pytest.raises(ValueError, match="images must be square"):
        fit(split=SimpleNamespace(train=wide, valid=split.valid), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_refuses_another_configuration(tmp_path, no_figure):
    fit(EquiNASDConfig(epochs=1, batch_size=16), run_dir=tmp_path)
    with pytest.raises(ValueError, match="another selection"):
        fit(EquiNASDConfig(epochs=1, batch_size=32), run_dir=tmp_path)


def test_discretised_variant_keeps_one_group_per_block():
    config = EquiNASDConfig(epochs=1, batch_size=16, variant="discretised", retrain_epochs=1)
    result = fit(config)
    assert result.config["variant"] == "discretised"
    assert [r["phase"] for r in result.history] == ["search", "search", "retrain"]
    kept = {name: [k.name for k in layer.components] for name, layer in mixed_layers(result.model)}
    assert kept == {c.layer: [c.choice] for c in result.choices}
    assert result.cost.final_model_epochs == 2.0


def test_discretise_restricts_to_the_argmax_and_keeps_the_function_of_a_one_hot_mixture():
    torch.manual_seed(4)
    model = mixed_net("none", dtype=torch.float64).eval()
    with torch.no_grad():
        for _, layer in mixed_layers(model):
            names = [k.name for k in layer.components]
            layer.architecture_logits.zero_()[names.index("C4")] = 60.0
    x = batches(7)[0]
    before = model(x)
    discretise(model)
    assert [layer.components[0].name for _, layer in mixed_layers(model)] == ["C4", "C4"]
    torch.testing.assert_close(model(x), before, rtol=1e-9, atol=1e-9)


def test_favour_full_initialisation():
    result = fit(EquiNASDConfig(epochs=1, batch_size=16, logit_init="favour_full"))
    z0 = result.history[0]["z"]["blocks.0.conv"]
    ratio = torch.exp(torch.tensor(2.0)).item()
    assert z0["D4"] == pytest.approx(z0["C1"] * ratio)
    assert max(z0, key=z0.get) == "D4"


def test_norm_free_backbone_runs():
    result = fit(space=space("none"))
    assert len(result.choices) == 2
    assert not any("running" in name for name, _ in result.model.named_buffers())


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs must be a positive int"),
        ({"weight_lr": -1.0}, "weight_lr must be positive"),
        ({"order": "z"}, "order must be one of"),
        ({"variant": "argmax"}, "variant must be one of"),
    ],
)
def test_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        EquiNASDConfig(**changes)


def test_figure_of_z_over_training(tmp_path):
    history = [
        {"phase": "search", "epoch": e, "z": {"blocks.0": {"C1": 1 - p, "D4": p}}}
        for e, p in enumerate([0.5, 0.6, 0.7])
    ] + [{"phase": "retrain", "epoch": 1, "z": {"blocks.0": {"D4": 1.0}}}]
    epochs, series = mixture_series(history)
    assert epochs == [0, 1, 2] and series["blocks.0"]["D4"] == [0.5, 0.6, 0.7]
    plot_mixture_history(history, tmp_path / "z.png")
    assert (tmp_path / "z.png").stat().st_size > 0
    with pytest.raises(ValueError, match="no search record"):
        mixture_series(history[-1:])


def test_group_mass_sums_the_named_groups():
    choices = (LayerChoice("a", "D4", "x", {"C1": 0.2, "C4": 0.3, "D4": 0.5}),)
    assert group_mass(choices) == [0.8] and group_mass(choices, ("C1",)) == [0.2]


def test_through_compare_without_test_data(monkeypatch, tmp_path, no_figure):
    loads = record_data_loads(monkeypatch)
    config = CompareConfig(
        task="d4-digits",
        space="d4",
        selectors=("equinas-d",),
        train_size=64,
        val_size=32,
        test_size=64,
        budget_epochs=2,
        space_options={"width": 1, "depth": 2},
        selector_options={"equinas-d": {"batch_size": 32}},
    )
    (cell,) = compare(config, tmp_path, progress=False)
    assert ("test", False) in loads and not any(inside for _, inside in loads)
    assert cell.selection.selector == "equinas-d" and cell.selection.cost.image_passes == 128


@pytest.mark.parametrize("group, flip_invariant", [("D4", True), ("C4", False)])
def test_discretised_network_has_the_chosen_symmetry(group, flip_invariant):
    torch.manual_seed(5)
    model = mixed_net("none", dtype=torch.float64).eval()
    x = batches(8)[0]
    discretise(model, {name: group for name, _ in mixed_layers(model)})
    out = model(x)
    torch.testing.assert_close(model(torch.rot90(x, 1, (-2, -1))), out, rtol=1e-9, atol=1e-9)
    flipped = model(x.flip(-1))
    assert torch.allclose(flipped, out, rtol=1e-9, atol=1e-9) == flip_invariant

"""MarglikTrainer: learning, modes, checkpoint/resume to the same result, subsets, noise."""

import pytest
import torch
from torch import nn

import bayesym.marglik.trainer as trainer_module
from bayesym.marglik import MarglikConfig, MarglikTrainer
from bayesym.priors import GaussianPrior
from curvature import KFACConfig


def data(n=96, d=6, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, c, generator=g)
    return x, (x @ w).argmax(-1)


def make_model(seed=1, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 3))


CONFIG = MarglikConfig(epochs=6, batch_size=32, lr=1e-2, burn_in=2, hyper_every=2, hyper_steps=5)


def test_marglik_learns_precisions_and_records_history():
    model = make_model()
    history = MarglikTrainer(model, config=CONFIG).fit(data(), valid=data(seed=5))
    assert [r.epoch for r in history] == [1, 2, 3, 4, 5, 6]
    hyper = [r for r in history if r.is_hyper_step]
    assert [r.epoch for r in hyper] == [2, 4, 6]
    assert set(hyper[0].effective_parameters) == {"0", "3"}
    assert all(0 < g <= 16 * 6 + 16 for g in hyper[-1].effective_parameters.values())
    assert history[-1].precisions != history[0].precisions
    assert 0 <= history[-1].valid_accuracy <= 1 and history[-1].train_accuracy > 0.5


def test_map_training_keeps_the_prior_fixed():
    model = make_model()
    config = MarglikConfig(epochs=3, batch_size=128, lr=1e-2, learn_prior=False)
    history = MarglikTrainer(
        model, prior=GaussianPrior(model, init_precision=2.0), config=config
    ).fit(data())
    assert all(r.marglik is None for r in history)
    assert all(v == pytest.approx(2.0) for v in history[-1].precisions.values())


def test_modes_eval_for_curvature_train_afterwards(monkeypatch):
    model = make_model(dropout=0.5)
    seen = []
    original = trainer_module.compute_kfac

    def spy(m, *args, **kwargs):
        seen.append(m.training)
        return original(m, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "compute_kfac", spy)
    MarglikTrainer(model, config=CONFIG).fit(data(), valid=data(seed=5))
    assert seen == [False, False, False]
    assert model.training  # laplace-torch's marglik_training would leave it in eval mode


def test_each_hyper_step_builds_the_block_layout_once(monkeypatch):
    """5 Adam steps + the final evaluation and γ reuse one layout (no per-evaluation copies)."""
    built = []
    original = trainer_module.BlockLayout.of

    def spy(kfac, prior):
        built.append(kfac)
        return original(kfac, prior)

    monkeypatch.setattr(trainer_module.BlockLayout, "of", spy)
    MarglikTrainer(make_model(), config=CONFIG).fit(data())
    assert len(built) == 3 and len({id(k) for k in built}) == 3  # hyper steps at epochs 2, 4, 6


def drop_times(history):
    return [row.with_updates(seconds=0.0) for row in history]


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    config = MarglikConfig(
        epochs=6,
        batch_size=32,
        burn_in=2,
        hyper_every=2,
        hyper_steps=5,
        lr=1e-2,
        kfac=KFACConfig(ggn_type="mc", mc_samples=2),
    )
    model = make_model(dropout=0.2)  # dropout: the global RNG matters too
    reference = MarglikTrainer(model, config=config, run_dir=tmp_path / "a").fit(data())

    calls = {"n": 0}

    def crash_in_epoch_four(x):
        calls["n"] += 1
        if calls["n"] == 3 * 3 + 2:  # 3 batches per epoch: second batch of epoch 4
            raise KeyboardInterrupt
        return x

    interrupted = make_model(dropout=0.2)
    with pytest.raises(KeyboardInterrupt):
        MarglikTrainer(
            interrupted, config=config, run_dir=tmp_path / "b", augment=crash_in_epoch_four
        ).fit(data())
    resumed_model = make_model(seed=99, dropout=0.2)  # different init: must not matter
    resumed = MarglikTrainer(resumed_model, config=config, run_dir=tmp_path / "b").fit(data())
    assert drop_times(resumed) == drop_times(reference)
    for a, b in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resuming_with_another_configuration_is_refused(tmp_path):
    MarglikTrainer(make_model(), config=CONFIG, run_dir=tmp_path).fit(data())
    other = MarglikConfig(epochs=6, batch_size=16, lr=1e-2)
    with pytest.raises(ValueError, match=r"different configuration.*batch_size"):
        MarglikTrainer(make_model(), config=other, run_dir=tmp_path).fit(data())


def test_full_subset_equals_no_subset():
    a, b = make_model(), make_model()
    ha = MarglikTrainer(a, config=CONFIG).fit(data())
    config = MarglikConfig(**{**CONFIG.__dict__, "marglik_subset": 96})
    hb = MarglikTrainer(b, config=config).fit(data())
    assert drop_times(ha) == drop_times(hb)


def test_subset_curvature_is_rescaled_to_the_full_data():
    model = make_model()
    config = MarglikConfig(**{**CONFIG.__dict__, "marglik_subset": 48, "epochs": 2})
    history = MarglikTrainer(model, config=config).fit(data())
    # per-datum marglik on the same scale as the full-data one (not halved)
    full = MarglikTrainer(
        make_model(), config=MarglikConfig(**{**CONFIG.__dict__, "epochs": 2})
    ).fit(data())
    assert history[-1].marglik == pytest.approx(full[-1].marglik, rel=0.3)


def test_restore_best_restores_the_best_marglik_state():
    model = make_model()
    config = MarglikConfig(**{**CONFIG.__dict__, "restore_best": True})
    trainer = MarglikTrainer(model, config=config)
    history = trainer.fit(data())
    best = max((r for r in history if r.marglik is not None), key=lambda r: r.marglik)
    assert trainer.best["epoch"] == best.epoch
    for name, value in model.state_dict().items():
        assert torch.equal(value, trainer.best["model"][name])


def test_regression_learns_the_noise_level():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3 * torch.randn(256, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    config = MarglikConfig(
        epochs=30,
        batch_size=64,
        burn_in=5,
        hyper_every=5,
        hyper_steps=50,
        lr=0.05,
        learn_sigma=True,
    )
    history = MarglikTrainer(model, "regression", config=config).fit((x, y))
    assert history[-1].sigma == pytest.approx(0.3, rel=0.25)


def test_curvature_batch_size_defaults_by_device(monkeypatch):
    trainer = MarglikTrainer(make_model(), config=CONFIG)
    assert trainer.curvature_batch_size() == CONFIG.batch_size  # CPU: the training batch
    monkeypatch.setattr(trainer, "_device", lambda: torch.device("cuda"))
    assert trainer.curvature_batch_size() == trainer_module.GPU_CURVATURE_BATCH
    explicit = MarglikConfig(**{**CONFIG.__dict__, "marglik_batch_size": 48})
    assert MarglikTrainer(make_model(), config=explicit).curvature_batch_size() == 48
    with pytest.raises(ValueError, match="marglik_batch_size must be a positive int"):
        MarglikConfig(marglik_batch_size=0)


def test_curvature_batch_size_changes_no_result(monkeypatch):
    """Kronecker factors are sums over all batches: one batch of 96 = three of 32 (exact GGN)."""
    sizes = []
    original = trainer_module.compute_kfac

    def spy(m, batches, *args, **kwargs):
        sizes.append([len(y) for _, y in batches])
        return original(m, batches, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "compute_kfac", spy)
    histories = []
    for size in (None, 96):
        config = MarglikConfig(
            **{**CONFIG.__dict__, "marglik_batch_size": size, "kfac": KFACConfig("exact")}
        )
        model = make_model().double()
        x, y = data()
        histories.append(MarglikTrainer(model, config=config).fit((x.double(), y)))
    assert sizes == [[32, 32, 32]] * 3 + [[96]] * 3
    for a, b in zip(*histories, strict=True):
        if a.marglik is not None:
            assert a.marglik == pytest.approx(b.marglik, rel=1e-10)
            assert a.precisions == pytest.approx(b.precisions, rel=1e-10)

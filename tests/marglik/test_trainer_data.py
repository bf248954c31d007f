"""MarglikTrainer's data: tensors, Dataset, DataLoader, batches; bad data and bad models."""

import dataclasses
import json

import pytest
import torch
from torch import nn
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    SubsetRandomSampler,
    TensorDataset,
)

from bayesym.marglik import MarglikConfig, MarglikTrainer, NonFiniteLossError
from bayesym.marglik.data import index_batches

CONFIG = MarglikConfig(epochs=4, batch_size=16, lr=1e-2, burn_in=2, hyper_every=1, hyper_steps=3)


def data(n=40, d=5, c=3, seed=0, regression=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, c, generator=g)
    return x, (x @ w if regression else (x @ w).argmax(-1))


def make_model(seed=1, out=3, dropout=0.2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, out))


def fit(train, config=CONFIG, likelihood="classification", out=3, valid=None, dropout=0.2, **kw):
    """History (without timings) and final parameters of a fresh model trained on ``train``."""
    model = make_model(out=out, dropout=dropout)
    trainer = MarglikTrainer(model, likelihood, config=config, progress=False, **kw)
    history = trainer.fit(train, valid=valid)
    records = [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in history]
    return records, [p.detach().clone() for p in model.parameters()]


def loader_in_trainer_order(x, y, config):
    """A DataLoader yielding the trainer's batches (own generator: the global RNG, which
    draws the dropout masks, stays untouched by the loader's seed draw)."""
    return DataLoader(
        TensorDataset(x, y),
        batch_sampler=TrainerOrder(len(x), config),
        generator=torch.Generator().manual_seed(0),
    )


class TrainerOrder:
    """Batch sampler giving, at its i-th pass, the trainer's shuffled batches of epoch i."""

    def __init__(self, n, config):
        self.n, self.config, self.epoch = n, config, 0
        self.sampler = SequentialSampler(range(n))  # as BatchSampler: it visits every point

    def __iter__(self):
        seed = self.config.seed * 1000003 + self.epoch
        self.epoch += 1
        for index in index_batches(self.n, self.config.batch_size, seed):
            yield index.tolist()

    def __len__(self):
        return -(-self.n // self.config.batch_size)


class Pairs(Dataset):
    """A plain map-style dataset of ``(x_i, y_i)`` items (no ``.images``/``.labels``)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def assert_same(a, b):
    assert a[0] == b[0]
    assert all(torch.equal(p, q) for p, q in zip(a[1], b[1], strict=True))


@pytest.mark.parametrize("subset", [None, 24])
def test_loader_with_the_trainers_batches_gives_the_tensor_history_exactly(subset):
    # Same batches in the same order: the same arithmetic, bit for bit (also the curvature
    # pass, which runs over the loader's dataset in order, on the same seeded subset).
    x, y = data()
    config = dataclasses.replace(CONFIG, marglik_subset=subset)
    loader = loader_in_trainer_order(x, y, config)
    assert_same(fit((x, y), config), fit(loader, config))


def test_non_shuffling_loader_equals_tensors_to_round_off():
    # One batch per epoch: the tensor path's batch is a permutation of the loader's, so the
    # sums differ only in the order of their terms (float64: agreement to 1e-10). No dropout:
    # its masks follow the position in the batch.
    x, y = data()
    x = x.double()
    config = dataclasses.replace(CONFIG, batch_size=len(x))
    torch.set_default_dtype(torch.float64)
    try:
        tensors = fit((x, y), config, dropout=0.0)
        in_order = DataLoader(
            TensorDataset(x, y), batch_size=len(x), shuffle=False, generator=torch.Generator()
        )
        loader = fit(in_order, config, dropout=0.0)
    finally:
        torch.set_default_dtype(torch.float32)
    for a, b in zip(tensors[0], loader[0], strict=True):
        assert a.keys() == b.keys()
        for key in ("train_loss", "train_nll", "marglik"):
            assert a[key] == (None if b[key] is None else pytest.approx(b[key], rel=1e-10))
        assert a["train_accuracy"] == b["train_accuracy"]
    for p, q in zip(tensors[1], loader[1], strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


def test_map_style_dataset_trains_exactly_as_its_tensors():
    x, y = data()
    assert_same(fit((x, y)), fit(Pairs(x, y)))


def test_validation_loader_gives_the_tensor_metrics():
    x, y = data()
    xv, yv = data(seed=3)
    by_tensors = fit((x, y), valid=(xv, yv))[0]
    valid = DataLoader(TensorDataset(xv, yv), batch_size=7, generator=torch.Generator())
    by_loader = fit((x, y), valid=valid)[0]
    for a, b in zip(by_tensors, by_loader, strict=True):
        assert a["valid_accuracy"] == b["valid_accuracy"]
        assert a["valid_nll"] == pytest.approx(b["valid_nll"], rel=1e-5)


def test_regression_with_several_outputs_fits_from_a_loader_as_from_tensors():
    x, y = data(regression=True)
    config = dataclasses.replace(CONFIG, learn_sigma=True)
    loader = loader_in_trainer_order(x, y, config)
    by_tensors = fit((x, y), config, "regression")
    by_loader = fit(loader, config, "regression")
    assert_same(by_tensors, by_loader)
    last = by_loader[0][-1]
    assert last["sigma"] != 1.0 and last["marglik"] is not None and last["train_nll"] > -10
    assert last["train_accuracy"] is None


def test_a_list_of_batches_and_mapping_batches_train():
    x, y = data()
    batches = list(zip(x.split(16), y.split(16), strict=True))
    records, _ = fit(batches)
    assert len(records) == 4 and records[-1]["marglik"] is not None

    class OnMappings(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, batch):
            return self.net(batch["x"])

    model = OnMappings(make_model())
    mappings = [{"x": xb, "labels": yb} for xb, yb in batches]
    history = MarglikTrainer(model, config=CONFIG, progress=False).fit(mappings)
    assert history[-1].marglik is not None
    assert history[0].train_loss == pytest.approx(records[0]["train_loss"], rel=1e-5)


def test_one_shot_iterators_and_other_types_are_refused():
    x, y = data()
    trainer = MarglikTrainer(make_model(), config=CONFIG, progress=False)
    batches = list(zip(x.split(16), y.split(16), strict=True))
    with pytest.raises(TypeError, match=r"one-shot iterator .*cannot be replayed every epoch"):
        trainer.fit(b for b in batches)
    with pytest.raises(TypeError, match="unsupported int"):
        trainer.fit(3)
    with pytest.raises(ValueError, match="training data: batch 0 is a Tensor"):
        trainer.fit([x, y])  # a list of two tensors is a list of two batches
    with pytest.raises(ValueError, match=r"batch 0 of epoch 1: y is a scalar, so this is one item"):
        trainer.fit(list(zip(x, y, strict=True)))  # a list of items, not of batches
    assert trainer.history == []


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda x, y: (x.index_fill(0, torch.tensor([3]), float("nan")), y), "NaN or inf"),
        (lambda x, y: (x, y + 1), r"labels must lie in \[0, 3\), got range \[1, 3\]"),
        (lambda x, y: (x, y[:-1]), "x has 40 points but y has 39"),
        (lambda x, y: (x, y.float()), "must be integer class indices.*y.long()"),
    ],
)
def test_bad_tensors_are_refused_before_training(tmp_path, bad, message):
    calls = []
    trainer = MarglikTrainer(
        make_model(), config=CONFIG, run_dir=tmp_path, progress=False,
        charge=lambda kind, n: calls.append(kind),
    )  # fmt: skip
    with pytest.raises(ValueError, match=f"^training data: .*{message}"):
        trainer.fit(bad(*data()))
    assert calls == [] and not list(tmp_path.iterdir())


def test_bad_validation_data_and_regression_targets_are_refused():
    x, y = data()
    trainer = MarglikTrainer(make_model(), config=CONFIG, progress=False)
    with pytest.raises(ValueError, match=r"^validation data: .*labels must lie in \[0, 3\)"):
        trainer.fit((x, y), valid=(x, y + 5))
    loader = DataLoader(TensorDataset(x, y.float()), batch_size=16)
    with pytest.raises(ValueError, match=r"^validation data, batch 0: .*must be integer class"):
        trainer.fit((x, y), valid=loader)
    regression = MarglikTrainer(make_model(out=2), "regression", config=CONFIG, progress=False)
    with pytest.raises(ValueError, match=r"regression targets must match the outputs \(40, 2\)"):
        regression.fit(data(regression=True))


def test_a_bad_loader_batch_is_refused_before_its_step():
    x, y = data()
    y = y.clone()
    y[20] = 7  # in the second batch
    calls = []
    trainer = MarglikTrainer(
        make_model(), config=CONFIG, progress=False, charge=lambda kind, n: calls.append(kind)
    )
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    with pytest.raises(ValueError, match=r"training data, batch 1 of epoch 1: labels must lie"):
        trainer.fit(loader)
    assert calls == ["map", "map"]  # the first step ran; the bad batch never reached a step


def test_unsupported_modules_are_refused_when_the_trainer_is_built():
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(5, 4, batch_first=True)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(self.rnn(x[:, None])[0][:, -1])

    with pytest.raises(ValueError, match=r"module 'rnn' \(LSTM\) .*exclude it"):
        MarglikTrainer(Recurrent(), config=CONFIG, progress=False)
    MAP = dataclasses.replace(CONFIG, learn_prior=False)  # no curvature: nothing to refuse
    history = MarglikTrainer(Recurrent(), config=MAP, progress=False).fit(data())
    assert len(history) == 4


@pytest.mark.parametrize("at_once", [True, False], ids=["cpu-at-its-step", "gpu-at-epoch-end"])
@pytest.mark.parametrize("learn_prior", [True, False])
def test_a_non_finite_loss_stops_the_run_and_is_not_saved(
    tmp_path, monkeypatch, learn_prior, at_once
):
    monkeypatch.setattr(MarglikTrainer, "_checks_loss_every_step", lambda self: at_once)
    steps = []

    def poison(x):  # the third step (epoch 2) makes the loss NaN
        steps.append(1)
        return x * float("nan") if len(steps) == 4 else x

    config = dataclasses.replace(CONFIG, learn_prior=learn_prior)
    trainer = MarglikTrainer(
        make_model(), config=config, run_dir=tmp_path, augment=poison, progress=False
    )
    with pytest.raises(NonFiniteLossError, match="epoch 2: the training loss became nan at step 0"):
        trainer.fit(data())
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values())
    assert len(json.loads((tmp_path / "history.json").read_text())) == 1
    in_memory = [p.detach() for p in trainer.model.parameters()]
    assert at_once == all(torch.isfinite(p).all() for p in in_memory)
    assert len(steps) == 4 if at_once else 6  # the GPU path finishes the epoch's 3 steps


def test_the_progress_bar_shows_its_label(capsys):
    x, y = data()
    config = dataclasses.replace(CONFIG, epochs=1)
    MarglikTrainer(make_model(), config=config, progress_label="digits: ffc+conv").fit((x, y))
    assert "digits: ffc+conv" in capsys.readouterr().err


def test_an_interrupted_run_on_a_shuffling_loader_resumes_to_the_same_result(tmp_path):
    # The loader draws its shuffling seed from the global RNG, which the checkpoint restores.
    x, y = data()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    reference = fit(loader, run_dir=tmp_path / "a")

    steps = []

    def crash_in_epoch_three(xb):
        steps.append(1)
        if len(steps) == 2 * 3 + 2:  # 3 batches per epoch: second batch of epoch 3
            raise KeyboardInterrupt
        return xb

    with pytest.raises(KeyboardInterrupt):
        fit(loader, run_dir=tmp_path / "b", augment=crash_in_epoch_three)
    assert_same(fit(loader, run_dir=tmp_path / "b"), reference)


def test_a_loader_over_part_of_a_dataset_keeps_the_curvature_to_that_part():
    # The points outside the sampler's indices are NaN: any use of them would be refused.
    x, y = data(n=60)
    x[40:] = float("nan")
    part = SubsetRandomSampler(range(40))
    loader = DataLoader(TensorDataset(x, y), batch_size=16, sampler=part)
    trainer = MarglikTrainer(make_model(), config=CONFIG, progress=False)
    history = trainer.fit(loader)
    assert history[-1].marglik is not None and trainer.last_kfac.num_data == 40


def test_a_loader_over_an_iterable_dataset_counts_its_points_once():
    x, y = data()

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(zip(x, y, strict=True))

    trainer = MarglikTrainer(make_model(), config=CONFIG, progress=False)
    history = trainer.fit(DataLoader(Stream(), batch_size=16))
    assert trainer.last_kfac.num_data == 40 and history[-1].marglik is not None
    with pytest.raises(TypeError, match="an IterableDataset yields single items; wrap it"):
        trainer.fit(Stream())

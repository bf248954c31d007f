"""The task registry: names, shapes, class counts, seeds, standardisation."""

import pytest
import torch

from bayesym.data import TASKS, UnknownTaskError, get_task_spec, make_task, task_names

REQUIRED = [
    f"{kind}-{base}"
    for base in ("digits", "fmnist")
    for kind in ("quadrant", "quadrant-position", "rotated", "d4", "translated")
] + [f"aen-{base}-Aug{i}" for base in ("digits", "fmnist") for i in range(6)]

DIGIT_TASKS = [name for name, spec in TASKS.items() if not spec.needs_files]


def test_required_tasks_are_registered_with_one_line_descriptions():
    assert set(REQUIRED) <= set(task_names())
    for spec in TASKS.values():
        assert spec.description and "\n" not in spec.description
        assert spec.num_classes in (10, 40) and len(spec.image_shape) == 3
    assert get_task_spec("quadrant-position-fmnist").num_classes == 40
    assert get_task_spec("translated-fmnist").image_shape == (1, 44, 44)
    assert get_task_spec("aen-fmnist-Aug3").augmentation == "Aug3"


@pytest.mark.parametrize("name", DIGIT_TASKS)
def test_digit_tasks_build_as_specified(name):
    spec = get_task_spec(name)
    sizes = {}
    for split in ("train", "val", "test"):
        ds = make_task(name, split=split, seed=0)
        assert ds.image_shape == spec.image_shape and ds.num_classes == spec.num_classes
        assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
        assert int(ds.labels.min()) >= 0 and int(ds.labels.max()) < spec.num_classes
        assert ds.info["task"] == name and ds.info["split"] == split
        sizes[split] = len(ds)
    assert sizes == {"train": 1200, "val": 200, "test": 397}


@pytest.mark.parametrize(
    "name",
    ["quadrant-digits", "rotated-digits", "d4-digits", "translated-digits", "aen-digits-Aug4"],
)
def test_task_seeds(name):
    first = make_task(name, "val", seed=0)
    assert torch.equal(first.images, make_task(name, "val", seed=0).images)
    assert not torch.equal(first.images, make_task(name, "val", seed=1).images)
    key = next(iter(first.metadata))
    train_draws = make_task(name, "train", seed=0).metadata[key][: len(first)]
    assert not torch.equal(train_draws, first.metadata[key])  # splits draw independently


def test_unknown_task_lists_the_registered_names():
    with pytest.raises(UnknownTaskError, match=r"unknown task 'quadrant-mnist'.*quadrant-digits"):
        make_task("quadrant-mnist")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        make_task("quadrant-digits", split="dev")


def test_standardize_uses_train_statistics():
    train = make_task("rotated-digits", "train", seed=3, standardize=True)
    test = make_task("rotated-digits", "test", seed=3, standardize=True)
    assert abs(float(train.images.mean())) < 1e-5
    assert float(train.images.std(correction=0)) == pytest.approx(1.0, abs=1e-5)
    stats = train.info["standardization"]
    assert test.info["standardization"] == stats
    raw = make_task("rotated-digits", "test", seed=3)
    torch.testing.assert_close(test.images, stats.apply(raw.images))

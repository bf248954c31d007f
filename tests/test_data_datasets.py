"""ImageDataset, BatchLoader, the digits, splits and standardisation."""

import pytest
import torch
from torch.utils.data import DataLoader

from bayesym.data import (
    DIGITS_TEST_SIZE,
    DIGITS_VAL_SIZE,
    BatchLoader,
    ImageDataset,
    Standardization,
    derive_seed,
    load_digits,
    resize_and_pad,
    validation_split,
)
from bayesym.data.digits import digits_arrays


def small_dataset(n=10, num_classes=3):
    images = torch.randn(n, 2, 4, 5)
    labels = torch.arange(n) % num_classes
    return ImageDataset(
        images, labels, num_classes=num_classes, metadata={"tag": torch.arange(n) * 10}
    )


def test_dataset_items_match_torchvision_convention():
    ds = small_dataset()
    image, label = ds[3]
    assert image.shape == (2, 4, 5) and label.dtype == torch.int64 and int(label) == 0
    assert len(ds) == 10 and ds.image_shape == (2, 4, 5)


def test_dataset_works_with_torch_dataloader():
    ds = small_dataset()
    batches = list(DataLoader(ds, batch_size=4, shuffle=False))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([x for x, _ in batches]), ds.images)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"images": torch.zeros(3, 4, 4)},
            r"images must be a tensor \[N, C, H, W\], got \(3, 4, 4\)",
        ),
        ({"images": torch.zeros(3, 1, 2, 2, dtype=torch.int64)}, "floating point"),
        ({"labels": torch.zeros(2, dtype=torch.int64)}, r"labels must be \[N=3\], got \(2,\)"),
        ({"labels": torch.zeros(3, dtype=torch.int32)}, "labels must be int64"),
        ({"labels": torch.tensor([0, 1, 5])}, r"labels must lie in \[0, 3\), got range \[0, 5\]"),
        ({"images": torch.full((3, 1, 2, 2), float("nan"))}, "NaN"),
        ({"metadata": {"angle": torch.zeros(2)}}, "metadata 'angle' must be a tensor"),
        ({"class_names": ["a", "b"]}, "2 class names for 3 classes"),
    ],
    ids=[
        "3d-images",
        "int-images",
        "label-count",
        "label-dtype",
        "label-range",
        "nan",
        "metadata",
        "names",
    ],
)
def test_dataset_rejects_bad_input(kwargs, message):
    args = {"images": torch.zeros(3, 1, 2, 2), "labels": torch.zeros(3, dtype=torch.int64)}
    args.update(kwargs)
    images, labels = args.pop("images"), args.pop("labels")
    with pytest.raises(ValueError, match=message):
        ImageDataset(images, labels, num_classes=3, name="toy", **args)


def test_dataset_can_be_pickled_and_deep_copied():
    """DataLoader workers pickle the dataset; its read-only mappings must survive that."""
    import copy
    import pickle

    ds = small_dataset().replace(info={"source": "test"})
    for clone in (pickle.loads(pickle.dumps(ds)), copy.deepcopy(ds)):
        assert torch.equal(clone.images, ds.images) and torch.equal(clone.labels, ds.labels)
        assert torch.equal(clone.metadata["tag"], ds.metadata["tag"])
        assert clone.info == {"source": "test"} and clone.class_names == ds.class_names
        with pytest.raises(TypeError):
            clone.metadata["tag"] = torch.zeros(10)  # still read-only
    batches = DataLoader(ds, batch_size=5, num_workers=1, multiprocessing_context="spawn")
    assert torch.equal(torch.cat([x for x, _ in batches]), ds.images)


def test_subset_keeps_metadata_aligned():
    ds = small_dataset()
    sub = ds.subset([7, 2])
    assert torch.equal(sub.images, ds.images[[7, 2]])
    assert sub.labels.tolist() == [1, 2] and sub.metadata["tag"].tolist() == [70, 20]


def test_batch_loader_covers_each_sample_once_per_epoch():
    ds = small_dataset(n=11)
    loader = ds.loader(4, shuffle=True, seed=3)
    assert len(loader) == 3
    epochs = []
    for _ in range(2):
        seen = [(x, y) for x, y in loader]
        assert [len(y) for _, y in seen] == [4, 4, 3]
        images = torch.cat([x for x, _ in seen])
        # every stored image appears exactly once, with its own label
        order = [int((ds.images == img).flatten(1).all(1).nonzero()) for img in images]
        assert sorted(order) == list(range(11))
        assert torch.cat([y for _, y in seen]).tolist() == ds.labels[order].tolist()
        epochs.append(order)
    assert epochs[0] != epochs[1]  # a new order each epoch
    replay = [
        int((ds.images == x).flatten(1).all(1).nonzero())
        for b, _ in ds.loader(4, seed=3)
        for x in b
    ]
    assert replay == epochs[0]  # same seed, same first epoch


def test_batch_loader_without_shuffle_and_drop_last():
    ds = small_dataset(n=10)
    loader = ds.loader(3, shuffle=False, drop_last=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert torch.equal(torch.cat([x for x, _ in batches]), ds.images[:9])
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        BatchLoader(ds.images, ds.labels, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batch_loader_moves_batches_to_the_device():
    ds = small_dataset()
    x, y = next(iter(ds.loader(4, device="cuda")))
    assert x.is_cuda and y.is_cuda
    assert next(iter(ds.to("cuda").loader(4)))[0].is_cuda


def test_digits_splits_are_disjoint_sized_and_seeded():
    train, val, test = (load_digits(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (1200, DIGITS_VAL_SIZE, DIGITS_TEST_SIZE)
    all_images, _ = digits_arrays()
    keys = {}
    for name, ds in (("train", train), ("val", val), ("test", test)):
        keys[name] = {tuple(img.flatten().tolist()) for img in ds.images}
    assert not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    assert len(keys["train"] | keys["val"] | keys["test"]) == len(
        {tuple(img.flatten().tolist()) for img in all_images}
    )
    assert torch.equal(load_digits("val").images, val.images)  # same seed, same split
    other_val = load_digits("val", split_seed=1)
    assert not torch.equal(other_val.images, val.images)
    assert torch.equal(load_digits("test", split_seed=1).images, test.images)  # test is fixed
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_digits_upsampling_and_padding(interpolation):
    ds = load_digits("test", size=16, interpolation=interpolation, pad=3)
    assert ds.image_shape == (1, 22, 22)
    assert float(ds.images[:, :, :3].abs().max()) == 0.0  # zero border
    inner = ds.images[:, :, 3:-3, 3:-3]
    plain = load_digits("test").images
    if interpolation == "nearest":
        assert torch.equal(inner, plain.repeat_interleave(2, -1).repeat_interleave(2, -2))
    else:
        assert float(inner.min()) >= 0.0 and float(inner.max()) <= 1.0
        torch.testing.assert_close(inner.mean((-2, -1)), plain.mean((-2, -1)), atol=0.02, rtol=0)


def test_resize_and_pad_validates():
    with pytest.raises(ValueError, match="interpolation must be 'nearest' or 'bilinear'"):
        resize_and_pad(torch.zeros(1, 1, 2, 2), 4, "bicubic")
    with pytest.raises(ValueError, match="pad must be a non-negative int, got -1"):
        resize_and_pad(torch.zeros(1, 1, 2, 2), pad=-1)


def test_validation_split_is_a_seeded_partition():
    train, val = validation_split(100, 15, split_seed=4)
    assert len(val) == 15 and sorted(train.tolist() + val.tolist()) == list(range(100))
    assert torch.equal(validation_split(100, 15, 4)[1], val)
    assert not torch.equal(validation_split(100, 15, 5)[1], val)
    with pytest.raises(ValueError, match=r"validation size must be in \[0, 10\)"):
        validation_split(10, 10, 0)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        derive_seed(-1, "x")


def test_standardization_gives_zero_mean_unit_variance(float64):
    images = torch.randn(50, 3, 4, 4) * torch.tensor([1.0, 2.0, 5.0])[:, None, None] + 7.0
    stats = Standardization.fit(images)
    out = stats.apply(images)
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.std((0, 2, 3), correction=0), torch.ones(3))
    assert stats.apply(images.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="a channel is constant"):
        Standardization.fit(torch.ones(2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"expected \[N, 3, H, W\], got \(2, 1, 3, 3\)"):
        stats.apply(torch.ones(2, 1, 3, 3))

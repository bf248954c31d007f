"""IDX reading and the Fashion-MNIST loader, on files the tests write themselves."""

import gzip
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bayesym.data import (
    CorruptDatasetError,
    DatasetNotFoundError,
    fashion_mnist_dir,
    load_fashion_mnist,
    make_task,
    read_idx,
)
from bayesym.data.fashion_mnist import DEFAULT_FASHION_MNIST_DIR, read_fashion_mnist_part

TYPE_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


def idx_bytes(array):
    """Encode an array as IDX, written independently of the reader (struct, big-endian)."""
    code = TYPE_CODES[array.dtype.type]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, payload, gz):
    path = Path(str(path) + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_fake_fashion_mnist(directory, n_train=12, n_test=6, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write(directory / f"{part}-images-idx3-ubyte", idx_bytes(images), gz)
        write(directory / f"{part}-labels-idx1-ubyte", idx_bytes(labels), gz)
    return directory


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([3, 1, 4, 1, 5], dtype=np.uint8),
        np.arange(-6, 6, dtype=np.int16).reshape(3, 4),
        np.linspace(-1, 1, 10, dtype=np.float32),
    ],
    ids=["uint8-3d", "uint8-1d", "int16", "float32"],
)
def test_idx_round_trip(tmp_path, gz, array):
    path = write(tmp_path / "data-idx", idx_bytes(array), gz)
    back = read_idx(path)
    assert back.shape == array.shape and back.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # the result is writable (safe for torch.from_numpy)


def test_idx_missing_file_names_the_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"nothere-idx.*get it like this"):
        read_idx(tmp_path / "nothere-idx", hint="get it like this")


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_wrong_magic_names_file_expected_and_found(tmp_path, gz):
    path = write(tmp_path / "labels-idx", idx_bytes(np.zeros(4, dtype=np.uint8)), gz)
    with pytest.raises(CorruptDatasetError, match=r"labels-idx.*bad magic number 2049.*2051"):
        read_idx(path, expected_magic=2051)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-5], r"truncated: header says shape \(2, 3, 4\)"),
        (lambda b: b + b"xx", "has trailing bytes"),
        (lambda b: b[:6], "truncated header"),
        (lambda b: b"\x01\x02" + b[2:], "not an IDX file"),
        (lambda b: b[:2], "too short for an IDX header"),
    ],
    ids=["truncated-data", "trailing", "truncated-header", "garbage-header", "tiny"],
)
def test_idx_corrupt_files_are_reported(tmp_path, mutate, message):
    good = idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8))
    path = write(tmp_path / "images-idx", mutate(good), gz=False)
    with pytest.raises(CorruptDatasetError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_corrupt_gzip_is_reported(tmp_path):
    payload = gzip.compress(idx_bytes(np.zeros((50, 28, 28), dtype=np.uint8)))
    path = tmp_path / "images-idx.gz"
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(CorruptDatasetError, match=r"images-idx\.gz: corrupt or truncated gzip"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_fashion_mnist_from_written_files(tmp_path, gz):
    write_fake_fashion_mnist(tmp_path, n_train=12, n_test=6, gz=gz)
    train = load_fashion_mnist("train", root=tmp_path)
    val = load_fashion_mnist("val", root=tmp_path)
    test = load_fashion_mnist("test", root=tmp_path)
    assert (len(train), len(val), len(test)) == (10, 2, 6)
    assert train.images.dtype == torch.float32 and train.images.shape[1:] == (1, 28, 28)
    assert train.labels.dtype == torch.int64
    raw_images, raw_labels = read_fashion_mnist_part("train", tmp_path)
    # train and val partition the training file; pixels are uint8 / 255
    together = torch.cat([train.images, val.images]) * 255
    expected = torch.from_numpy(raw_images.astype(np.float32))[:, None]
    assert sorted(map(tuple, together.round().flatten(1).tolist())) == sorted(
        map(tuple, expected.flatten(1).tolist())
    )
    test_raw = torch.from_numpy(read_fashion_mnist_part("test", tmp_path)[0].astype(np.float32))
    assert torch.equal((test.images * 255).round(), test_raw[:, None])
    assert sorted(train.labels.tolist() + val.labels.tolist()) == sorted(raw_labels.tolist())
    assert test.class_names[9] == "Ankle boot"


def test_fashion_mnist_directory_resolution(tmp_path, monkeypatch):
    nested = tmp_path / "fashion-mnist"
    nested.mkdir()
    write_fake_fashion_mnist(nested)
    assert fashion_mnist_dir(tmp_path) == nested  # sub-directory found
    monkeypatch.setenv("BAYESYM_DATA", str(tmp_path))
    assert fashion_mnist_dir() == nested  # env var used without root
    monkeypatch.setenv("BAYESYM_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetNotFoundError, match=r"elsewhere \(from \$BAYESYM_DATA\)"):
        fashion_mnist_dir()
    monkeypatch.delenv("BAYESYM_DATA")
    if not DEFAULT_FASHION_MNIST_DIR.is_dir():
        with pytest.raises(DatasetNotFoundError, match=r"default location.*apt-get install"):
            fashion_mnist_dir()


def test_fashion_mnist_missing_directory_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist("train", root=tmp_path / "nope")
    message = str(info.value)
    assert str(tmp_path / "nope") in message
    assert "apt-get install -y dataset-fashion-mnist" in message and "--root" in message


def test_fashion_mnist_missing_label_file(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_fashion_mnist("test", root=tmp_path)


def test_fashion_mnist_wrong_dims_and_counts(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    images = np.zeros((12, 27, 27), dtype=np.uint8)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(images), gz=True)
    with pytest.raises(CorruptDatasetError, match=r"train-images.*shape \(N, 28, 28\).*27, 27"):
        load_fashion_mnist("train", root=tmp_path)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros((5, 28, 28), np.uint8)), True)
    with pytest.raises(CorruptDatasetError, match="expected 5 uint8 labels"):
        load_fashion_mnist("train", root=tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.full(6, 11, np.uint8)), gz=True)
    with pytest.raises(CorruptDatasetError, match=r"labels must be in 0\.\.9, found 11"):
        load_fashion_mnist("test", root=tmp_path)


def test_fashion_mnist_images_file_with_label_magic(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    labels_payload = (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(labels_payload)
    with pytest.raises(CorruptDatasetError, match=r"bad magic number 2049.*expected 2051"):
        load_fashion_mnist("train", root=tmp_path)


def test_fmnist_tasks_build_from_a_root_directory(tmp_path):
    write_fake_fashion_mnist(tmp_path, n_train=24, n_test=8)
    ds = make_task("quadrant-position-fmnist", split="test", seed=1, root=tmp_path)
    assert len(ds) == 8 and ds.image_shape == (1, 56, 56) and ds.num_classes == 40
    aen = make_task("aen-fmnist-Aug3", split="val", root=tmp_path)
    assert len(aen) == 4 and aen.metadata["powers"].shape == (4, 4)


@pytest.mark.slow
def test_real_fashion_mnist_loads_quickly():
    try:
        fashion_mnist_dir()
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install -y dataset-fashion-mnist)")
    start = time.perf_counter()
    train_images, train_labels = read_fashion_mnist_part("train")
    test_images, test_labels = read_fashion_mnist_part("test")
    train, val, test = (load_fashion_mnist(s) for s in ("train", "val", "test"))
    elapsed = time.perf_counter() - start
    assert train_images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
    assert (len(train), len(val), len(test)) == (50000, 10000, 10000)
    for labels in (train_labels, test_labels):
        assert labels.min() == 0 and labels.max() == 9
        assert np.bincount(labels).tolist() == [len(labels) // 10] * 10  # balanced classes
    assert float(train.images.min()) >= 0.0 and float(train.images.max()) <= 1.0
    assert elapsed < 10.0, f"loading Fashion-MNIST took {elapsed:.1f} s"

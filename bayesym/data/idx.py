"""Reader for IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or raw.

Format (big-endian): two zero bytes, a type byte (``0x08`` uint8, ``0x09`` int8, ``0x0B``
int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), a byte with the number of
dimensions ``d``, ``d`` uint32 sizes, then the data in row-major order. The first four
bytes read as one big-endian int are the "magic number": 2049 for a label file
(uint8, 1-D), 2051 for an image file (uint8, 3-D).

Compression is detected from the content (gzip's ``1f 8b`` signature), not the file name.
The payload is parsed with ``numpy.frombuffer`` (no per-item Python work).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from bayesym.data.errors import CorruptDatasetError, DatasetNotFoundError

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "read_idx"]

IDX_LABELS_MAGIC = 2049
IDX_IMAGES_MAGIC = 2051

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path, hint: str) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"IDX file not found: {path}. {hint}".rstrip()) from None
    except IsADirectoryError:
        raise DatasetNotFoundError(f"expected an IDX file, got a directory: {path}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise CorruptDatasetError(
                f"{path}: corrupt or truncated gzip data ({err}). {hint}".rstrip()
            ) from None
    return raw


def read_idx(
    path: str | os.PathLike[str], *, expected_magic: int | None = None, hint: str = ""
) -> np.ndarray:
    """Read one IDX file into a numpy array of its stored shape and (native-order) dtype.

    Args:
        path: The file, gzip-compressed or not.
        expected_magic: If given, the magic number the file must have (e.g.
            :data:`IDX_IMAGES_MAGIC`); anything else raises.
        hint: Appended to error messages (e.g. how to obtain the file).

    Returns:
        Array of shape ``(d_1, ..., d_k)`` from the header; writable, native byte order.

    Raises:
        DatasetNotFoundError: The file does not exist.
        CorruptDatasetError: Bad magic number, unknown type byte, or a payload whose size
            does not match the header (truncated or with trailing bytes). The message
            names the file, what was expected and what was found.
    """
    path = Path(path)
    data = _read_bytes(path, hint)
    tail = f" {hint}" if hint else ""
    if len(data) < 4:
        raise CorruptDatasetError(
            f"{path}: {len(data)} bytes is too short for an IDX header (needs >= 4).{tail}"
        )
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise CorruptDatasetError(
            f"{path}: bad magic number {magic} (0x{magic:08x}); expected {expected_magic} "
            f"(0x{expected_magic:08x}).{tail}"
        )
    if data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise CorruptDatasetError(
            f"{path}: not an IDX file (header bytes {data[:4].hex()}; expected 0000 followed "
            f"by a type byte in {sorted(hex(k) for k in _IDX_DTYPES)} and a rank byte).{tail}"
        )
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise CorruptDatasetError(
            f"{path}: truncated header ({len(data)} bytes, needs {header_size} for {ndim} "
            f"dims).{tail}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(shape, dtype=np.int64))
    expected_bytes = header_size + count * dtype.itemsize
    if len(data) != expected_bytes:
        what = "truncated" if len(data) < expected_bytes else "has trailing bytes"
        raise CorruptDatasetError(
            f"{path}: {what}: header says shape {shape} of {dtype.name} "
            f"({expected_bytes} bytes in all), file has {len(data)} bytes.{tail}"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)

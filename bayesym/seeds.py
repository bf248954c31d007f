"""Seeds derived from a run's seed: for data, for epochs and for candidates.

Two derivations, each kept where it is used so that every published result reproduces:

* :func:`derive_seed` ``(seed, *keys)``: a 63-bit hash of the seed and a path of keys
  (numpy's ``SeedSequence``): independent streams for the data, e.g. a task's train and test
  split, a validation carve;
* :func:`indexed_seed` ``(seed, index) = seed · P + index`` with the prime ``P`` =
  :data:`SEED_STRIDE`: the training streams of a run (the batch order of epoch ``index``, the
  ``index``-th candidate). Distinct pairs ``(seed, index)`` with ``0 <= index < P`` give
  distinct seeds, so the epochs of one run never share a stream, nor do the runs of different
  seeds.

Example:
    >>> indexed_seed(0, 3), indexed_seed(1, 0)
    (3, 1000003)
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["SEED_STRIDE", "derive_seed", "indexed_seed"]

SEED_STRIDE = 1_000_003
"""The prime ``P`` between the indexed seeds of consecutive run seeds."""


def derive_seed(seed: int, *keys: str | int) -> int:
    """A 63-bit seed from ``seed`` and a path of keys, stable across processes and machines.

    Strings are hashed with CRC-32 (Python's ``hash`` is salted per process), then mixed
    with numpy's ``SeedSequence``. Different keys give independent streams, e.g. the
    rotation angles of the train and test split of the same task.

    Example:
        >>> derive_seed(0, "quadrant-digits", "train") == derive_seed(0, "quadrant-digits", "train")
        True
        >>> derive_seed(0, "a") != derive_seed(0, "b") != derive_seed(1, "a")
        True
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    words = [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    state = np.random.SeedSequence([seed, *words]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def indexed_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th epoch (candidate, stream, ...) of a run seeded ``seed``."""
    return seed * SEED_STRIDE + index

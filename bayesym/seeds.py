"""Seeds derived from a run's seed: one per epoch, candidate or random stream.

``derived_seed(seed, index) = seed · P + index`` with the prime ``P`` = :data:`SEED_STRIDE`:
distinct pairs ``(seed, index)`` with ``0 <= index < P`` give distinct seeds, so the epochs of
one run never share a random stream, nor do the runs of different seeds.

Example:
    >>> derived_seed(0, 3), derived_seed(1, 0)
    (3, 1000003)
"""

from __future__ import annotations

__all__ = ["SEED_STRIDE", "derived_seed"]

SEED_STRIDE = 1_000_003
"""The prime ``P`` between the derived seeds of consecutive run seeds."""


def derived_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th epoch (candidate, stream, ...) of a run seeded ``seed``."""
    return seed * SEED_STRIDE + index

"""Search spaces of the selectors (:class:`SearchSpace`) and the data shape they build for."""

from bayesym.selectors.spaces.base import DataShape, SearchSpace

__all__ = ["DataShape", "SearchSpace"]

"""Search spaces of the selectors (:class:`SearchSpace`) and the data shape they build for."""

from bayesym.selectors.spaces.base import DataShape, SearchSpace
from bayesym.selectors.spaces.d4 import D4SubgroupSpace
from bayesym.selectors.spaces.translation import TranslationSpace

__all__ = ["DataShape", "SearchSpace", "TranslationSpace"]
__all__ += ["D4SubgroupSpace"]

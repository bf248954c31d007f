"""Selectors: methods that choose the symmetry of every layer, compared on equal terms.

Every selector implements :class:`Selector` (``fit(train, valid, *, space, budget, ...)`` ->
:class:`SelectionResult`), is configured by a frozen dataclass and is registered by name in
:data:`SELECTORS`. Budgets count training image passes (:class:`Budget`, :class:`BudgetMeter`);
independent candidates run through a :class:`CandidateExecutor`; :func:`selection_split` carves
validation data out of the training file so that no selector ever sees the test split;
:func:`bayesym.selectors.compare.compare` runs selectors side by side and scores the test
split once per selection.
"""

from bayesym.selectors.ace import (
    ACEEqualityConfig,
    ACEEqualitySelector,
    ACEResilientConfig,
    ACEResilientSelector,
)
from bayesym.selectors.aen import AENConfig, AENSelector
from bayesym.selectors.base import LayerChoice, SelectionResult, Selector, parameter_count
from bayesym.selectors.budget import Budget, BudgetExhausted, BudgetMeter, BudgetTooSmall, Cost
from bayesym.selectors.constraints import ConstraintDuals, DualSettings
from bayesym.selectors.equinas_d import EquiNASDConfig, EquiNASDSelector
from bayesym.selectors.equinas_e import EquiNASEConfig, EquiNASESelector
from bayesym.selectors.executor import CandidateExecutor, CandidateFailed, SerialExecutor
from bayesym.selectors.marglik import MarglikSelector, MarglikSelectorConfig
from bayesym.selectors.pareto import pareto_front, pareto_select
from bayesym.selectors.ray_executor import RayExecutor  # imports Ray only when it runs
from bayesym.selectors.registry import (
    SELECTORS,
    SPACES,
    make_selector,
    make_space,
    selector_names,
    space_names,
)
from bayesym.selectors.rpp import RPPConfig, RPPSelector
from bayesym.selectors.spaces import (
    D4SubgroupSpace,
    DataShape,
    PixelSpace,
    SearchSpace,
    TranslationSpace,
)
from bayesym.selectors.split import Resize, SelectionSplit, selection_split
from bayesym.selectors.static import StaticConfig, StaticSelector
from bayesym.selectors.training import (
    OptimizerSettings,
    TrainingStats,
    evaluate_model,
    make_optimizer,
    train_epochs,
)

# The interface.
__all__ = ["LayerChoice", "SelectionResult", "Selector", "parameter_count"]

# Budgets and costs.
__all__ += ["Budget", "BudgetExhausted", "BudgetMeter", "BudgetTooSmall", "Cost"]

# Candidates.
__all__ += ["CandidateExecutor", "CandidateFailed", "SerialExecutor"]
__all__ += ["RayExecutor"]  # optional extra bayesym[ray]

# The selectors and their configurations, in registry order.
__all__ += [
    "StaticConfig",
    "StaticSelector",
    "MarglikSelector",
    "MarglikSelectorConfig",
    "RPPConfig",
    "RPPSelector",
    "EquiNASDConfig",
    "EquiNASDSelector",
    "EquiNASEConfig",
    "EquiNASESelector",
    "ACEEqualityConfig",
    "ACEEqualitySelector",
    "ACEResilientConfig",
    "ACEResilientSelector",
    "AENConfig",
    "AENSelector",
]

# Their building blocks: Pareto selection (EquiNAS_E), constrained learning (ACE).
__all__ += ["pareto_front", "pareto_select", "ConstraintDuals", "DualSettings"]

# Registries.
__all__ += ["SELECTORS", "SPACES", "make_selector", "make_space", "selector_names", "space_names"]

# Search spaces, data splits, training.
__all__ += [
    "DataShape",
    "SearchSpace",
    "TranslationSpace",
    "D4SubgroupSpace",
    "PixelSpace",
    "Resize",
    "SelectionSplit",
    "selection_split",
    "OptimizerSettings",
    "TrainingStats",
    "evaluate_model",
    "make_optimizer",
    "train_epochs",
]

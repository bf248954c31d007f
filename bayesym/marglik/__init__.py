"""Laplace marginal likelihood and the trainer that learns prior precisions with it."""

from bayesym.marglik.laplace import (
    BlockLayout,
    effective_parameters_per_group,
    log_marginal_likelihood,
)
from bayesym.marglik.trainer import MarglikConfig, MarglikTrainer, TrainingData

__all__ = [
    # Laplace marginal likelihood
    "BlockLayout",
    "effective_parameters_per_group",
    "log_marginal_likelihood",
    # training
    "MarglikConfig",
    "MarglikTrainer",
    "TrainingData",
]

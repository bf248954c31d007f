"""Laplace marginal likelihood and the trainer that learns prior precisions with it."""

from bayesym.marglik.laplace import effective_parameters_per_group, log_marginal_likelihood
from bayesym.marglik.trainer import MarglikConfig, MarglikTrainer, TrainingData

__all__ = [
    # Laplace marginal likelihood
    "effective_parameters_per_group",
    "log_marginal_likelihood",
    # training
    "MarglikConfig",
    "MarglikTrainer",
    "TrainingData",
]

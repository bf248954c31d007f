"""Laplace marginal likelihood and the trainer that learns prior precisions with it."""

from bayesym.marglik.distributed import DataParallel, RankFailedError, torchrun_process_group
from bayesym.marglik.evaluation import evaluate
from bayesym.marglik.history import EpochRecord, hyper_records, load_history, save_history
from bayesym.marglik.objective import (
    BlockLayout,
    effective_parameters_per_group,
    log_marginal_likelihood,
)
from bayesym.marglik.trainer import (
    MarglikConfig,
    MarglikTrainer,
    NonFiniteLossError,
    TrainingData,
)

__all__ = [
    # Laplace marginal likelihood
    "BlockLayout",
    "effective_parameters_per_group",
    "log_marginal_likelihood",
    # training
    "MarglikConfig",
    "MarglikTrainer",
    "NonFiniteLossError",
    "TrainingData",
    "evaluate",
    # history
    "EpochRecord",
    "hyper_records",
    "load_history",
    "save_history",
    # data-parallel training (torch.distributed)
    "DataParallel",
    "RankFailedError",
    "torchrun_process_group",
]

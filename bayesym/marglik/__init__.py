"""Laplace marginal likelihood and the trainer that learns prior precisions with it."""

from bayesym.marglik.laplace import log_marginal_likelihood

__all__ = ["log_marginal_likelihood"]

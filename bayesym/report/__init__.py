"""Which symmetry did each layer choose: effective-parameter reports and their plots."""

from bayesym.report import effective
from bayesym.report.effective import *
from bayesym.report.plots import history_figure, plot_history

__all__ = ["history_figure", "plot_history"]
__all__ += effective.__all__

"""Which symmetry did each layer choose: effective-parameter reports and their plots."""

from bayesym.report.effective import (
    EffectiveParameterReport,
    PathStatistics,
    effective_parameter_report,
    report_from_history,
    report_from_record,
)
from bayesym.report.plots import plot_history

__all__ = [
    # tables
    "EffectiveParameterReport",
    "PathStatistics",
    "effective_parameter_report",
    "report_from_history",
    "report_from_record",
    # figures
    "plot_history",
]

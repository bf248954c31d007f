"""Which symmetry did each layer choose: effective-parameter reports and their plots."""

from bayesym.report.effective import (
    EffectiveParameterReport,
    PathStatistics,
    count_only_shares,
    effective_parameter_report,
    group_symmetries,
    log10_precision_ratios,
    path_label,
    report_from_history,
    report_from_record,
)
from bayesym.report.plots import history_figure, plot_history

__all__ = [
    # tables
    "EffectiveParameterReport",
    "PathStatistics",
    "count_only_shares",
    "effective_parameter_report",
    "group_symmetries",
    "log10_precision_ratios",
    "path_label",
    "report_from_history",
    "report_from_record",
    # figures
    "history_figure",
    "plot_history",
]

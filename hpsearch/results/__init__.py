"""Results a person can see and take away: tables (frames.py), plots, the protocol report,
and the trained models (checkpoints). Nothing here writes to a study."""

from hpsearch.results.frames import (
    Best,
    best,
    curves,
    open_study,
    overview,
    runners_up,
    summary,
    trials,
)
from hpsearch.results.plots import plot_curves, plot_optuna
from hpsearch.results.report import write_report

__all__ = ["Best", "best", "curves", "open_study", "overview", "plot_curves", "plot_optuna",
           "runners_up", "summary", "trials", "write_report"]

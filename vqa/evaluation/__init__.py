"""Metrics, evaluation suites and reports."""
from vqa.evaluation import metrics as _metrics
from vqa.evaluation.metrics import *  # noqa: F401,F403  (the names in metrics.__all__)
from vqa.evaluation.suites import Suite, SuiteItem, correlate, load_known_order, load_mos_csv

__all__ = [*_metrics.__all__, "Suite", "SuiteItem", "correlate", "load_known_order", "load_mos_csv"]

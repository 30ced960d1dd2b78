"""Metrics, evaluation suites and reports."""
from vqa.evaluation.metrics import plcc, srcc, weighted_mean
from vqa.evaluation.suites import Suite, SuiteItem, correlate, load_known_order, load_mos_csv

__all__ = ["Suite", "SuiteItem", "correlate", "load_known_order", "load_mos_csv", "plcc", "srcc", "weighted_mean"]

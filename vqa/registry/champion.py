"""The `champion` alias: it moves to a new student only when that student beats the current
champion on the validation figure, and every decision is recorded (run tags, registered.json).

The validation figure is the known-order SRCC of the student on the validation set (the held-out
videos' simulated versions, vqa.pipeline.steps.validation_suite): the one set that chooses. The
reported suites and the human-rated benchmarks never move the alias. Each registered version
keeps its figure as a tag, so a later round compares against the champion's own number.
"""
from __future__ import annotations

import math

import mlflow

SELECTION_FIGURE = "validation"


def selection_figure(metrics: dict, student: str) -> tuple[str, float | None]:
    """(which figure, its SRCC) of this student in a round's metrics.json: the validation figure
    only ("", None when the round has no validation set)."""
    value = (metrics["models"].get(student, {}).get(SELECTION_FIGURE) or {}).get("srcc")
    if value is not None and math.isfinite(value):
        return SELECTION_FIGURE, float(value)
    return "", None


def update_champion(model_name: str, version: str, figure: str, value: float | None, alias: str = "champion",
                    client: mlflow.MlflowClient | None = None) -> dict:
    """Tag the version with its figure; move the alias if it beats the champion (or there is
    none). Returns the decision."""
    client = client or mlflow.MlflowClient()
    try:
        current = client.get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException:
        current = None
    if value is not None:
        client.set_model_version_tag(model_name, version, f"w2s.select.{figure}", repr(value))
    previous = None
    if current is not None and figure:
        raw = current.tags.get(f"w2s.select.{figure}")
        previous = float(raw) if raw is not None else None
    if value is None:
        promoted, reason = False, "this student has no validation figure"
    elif current is None:
        promoted, reason = True, "no champion yet"
    elif previous is None:
        promoted, reason = True, f"the champion (version {current.version}) has no {figure} figure to compare"
    else:
        promoted = value > previous
        reason = (f"{figure} SRCC {value:+.3f} {'>' if promoted else '<='} champion version {current.version}'s "
                  f"{previous:+.3f}")
    if promoted:
        client.set_registered_model_alias(model_name, alias, version)
    return {"alias": alias, "promoted": promoted, "figure": figure, "value": value, "reason": reason,
            "previous_version": str(current.version) if current is not None else None, "previous_value": previous,
            "champion_version": str(version) if promoted else (str(current.version) if current is not None else None)}

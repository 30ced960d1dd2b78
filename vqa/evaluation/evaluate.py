"""`vqa evaluate --model ... --teacher ... --benchmark ...`: any student or teacher on any benchmark.

Scores are computed once per (model, video) and cached (teachers: the per-teacher score logs;
students: their feature cache keyed by video content), so every metric, report and later run
reuses them. All teachers and the first student share one decode of each video; a second student
with another feature configuration decodes again only for what its cache lacks.
Metrics per group (datasets with different MOS scales are never pooled): SRCC, KRCC, PLCC with
bootstrap 95 % CIs, PLCC and RMSE after the 4-parameter logistic fit, overall weighted by group size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vqa.evaluation.benchmarks import LoadedBenchmark
from vqa.evaluation.metrics import all_metrics, grouped_metrics
from vqa.io import sha256_file

CI_METRICS = ("srcc", "krcc", "plcc")


@dataclass
class Evaluated:
    """One model on one benchmark."""

    model: str
    benchmark: str
    scored: int
    failed: dict[str, str] = field(default_factory=dict)  # video name -> reason
    groups: dict = field(default_factory=dict)  # group -> {"n", metric: (point, low, high), fitted...}
    overall: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)  # groups below min_group_size -> their size


def _model_scores(items: list[tuple[str, str]], models: list[tuple[str, object]], teachers: list[str], *,
                  cache_root: Path, workers: int, log) -> dict[str, tuple[dict[str, float], dict[str, str]]]:
    """name -> ({vid: score, higher = better}, {vid: failure reason}) for every model and teacher."""
    from vqa.pipeline.analyse import analyse
    from vqa.scoring import scores_from_features
    from vqa.student.features import FeatureStore
    from vqa.teachers import teacher_class

    out: dict[str, tuple[dict, dict]] = {}
    first = models[0][1] if models else None
    store = FeatureStore(cache_root, first) if first is not None else None
    key = first.config if first is not None else None
    res = analyse(items, teacher_names=teachers, cache_root=cache_root, key_rate=key.key_rate if key else 1.0,
                  max_key_frames=key.max_key_frames if key else 8, features=store, workers=workers, log=log)
    for name in teachers:
        card = teacher_class(name).card
        sign = 1.0 if card.higher_is_better else -1.0
        out[name] = ({v: sign * s for v, s in res.scores[card.key].items()}, dict(res.failures.get(card.key, {})))
    for label, model in models:
        feats = res.features
        if model is not first and model.config.feature_fingerprint() != first.config.feature_fingerprint():
            feats = analyse(items, teacher_names=[], cache_root=cache_root, key_rate=model.config.key_rate,
                            max_key_frames=model.config.max_key_frames, features=FeatureStore(cache_root, model),
                            workers=workers, log=log).features
        out[label] = (scores_from_features(model, {v: f for v, f in feats.items()}),
                      dict(res.failures.get("features", {})))
    return out


def evaluate_models(
    benchmarks: list[LoadedBenchmark],
    *,
    models: list[tuple[str, object]] = (),
    teachers: list[str] = (),
    cache_root: str | Path = "artifacts/cache",
    workers: int = 2,
    n_boot: int = 1000,
    min_group_size: int = 3,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[Evaluated]:
    """models: (label, StudentModel); teachers: registered homogeneous teacher names."""
    if not models and not teachers:
        raise ValueError("evaluate: name at least one --model or --teacher")
    results = []
    for bench in benchmarks:
        log(bench.summary())
        for line in bench.warnings:
            log(f"{bench.name}: {line}" if not line.startswith(bench.name) else line)
        ids = {it.name: sha256_file(it.path) for it in bench.items}
        items = sorted({(vid, str(it.path)) for it in bench.items for vid in [ids[it.name]]})
        scores = _model_scores(items, list(models), list(teachers), cache_root=Path(cache_root), workers=workers,
                               log=log)
        for name, (by_id, failures) in scores.items():
            rows = [(by_id.get(ids[it.name], math.nan), it.mos, it.group) for it in bench.items]
            failed = {it.name: failures.get(ids[it.name], "no score") for it, r in zip(bench.items, rows)
                      if not math.isfinite(r[0])}
            ok = [r for r in rows if math.isfinite(r[0])]
            pred = np.array([r[0] for r in ok])
            mos = np.array([r[1] for r in ok])
            groups = [r[2] for r in ok]
            g = grouped_metrics(pred, mos, groups, min_group_size=min_group_size, metrics=CI_METRICS,
                                n_boot=n_boot, seed=seed) if ok else {"groups": {}, "overall": {}, "skipped": {}}
            for group, entry in g["groups"].items():  # the logistic-fitted figures, point values
                sel = np.array([x == group for x in groups])
                fitted = all_metrics(pred[sel], mos[sel])
                entry["plcc_fitted"], entry["rmse_fitted"] = fitted["plcc_fitted"], fitted["rmse_fitted"]
            results.append(Evaluated(name, bench.name, len(ok), failed, g["groups"], g["overall"], g["skipped"]))
    return results


def _fmt(triple) -> str:
    point, low, high = triple
    if point is None or (isinstance(point, float) and math.isnan(point)):
        return "  n/a"
    return f"{point:+.3f} [{low:+.3f}, {high:+.3f}]"


def format_results(results: list[Evaluated]) -> str:
    """A plain-text table: one line per (benchmark, group, model), CIs in brackets."""
    lines = [f"{'benchmark':<12} {'group':<22} {'model':<28} {'n':>4}  "
             + "  ".join(f"{m.upper():<23}" for m in CI_METRICS) + "  PLCC(fit)  RMSE(fit)"]
    for r in results:
        entries = list(r.groups.items()) + ([("overall", r.overall)] if len(r.groups) > 1 else [])
        for group, e in entries:
            fit = f"{e.get('plcc_fitted', math.nan):+9.3f}  {e.get('rmse_fitted', math.nan):9.3f}" \
                if "plcc_fitted" in e else f"{'':9}  {'':9}"
            lines.append(f"{r.benchmark[:12]:<12} {str(group)[:22]:<22} {r.model[-28:]:<28} {e.get('n', 0):>4}  "
                         + "  ".join(f"{_fmt(e[m]):<23}" for m in CI_METRICS) + "  " + fit)
        if r.failed:
            lines.append(f"{'':12} {r.model} could not score {len(r.failed)} videos, e.g. "
                         f"{next(iter(r.failed))}: {next(iter(r.failed.values()))}")
        if r.skipped:
            lines.append(f"{'':12} groups with too few videos for a correlation: "
                         + ", ".join(f"{g} ({n})" for g, n in r.skipped.items()))
    return "\n".join(lines)


def to_json(results: list[Evaluated]) -> list[dict]:
    def clean(v):
        if isinstance(v, tuple):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return [clean({"model": r.model, "benchmark": r.benchmark, "scored": r.scored, "failed": r.failed,
                   "groups": r.groups, "overall": r.overall, "skipped_groups": r.skipped}) for r in results]

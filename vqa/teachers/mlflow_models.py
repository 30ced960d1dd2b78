"""Any model in the MLflow registry as a homogeneous teacher, by URI (models:/name@alias or
models:/name/version).

The URI is resolved to one immutable version first, and that version names the cache key and
the record, so a re-run scores with the same model even after the alias moves. A w2s-vqa student
is scored from the shared backbone-feature cache (no extra decode); any other pyfunc model gets
lists of file paths, as its signature for video models would be, and must return one score per
path (a list, an array, or a table with a ``score`` column).
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vqa.teachers.cache import ScoreCache


@dataclass(frozen=True)
class RegistryModel:
    name: str
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def resolve(uri: str) -> RegistryModel:
    """models:/name@alias or models:/name/version -> the exact version it points at now."""
    if not uri.startswith("models:/"):
        raise ValueError(f"{uri}: a registry teacher URI must look like models:/name@alias or models:/name/version")
    from vqa.registry.mlflow_registry import model_version

    mv = model_version(uri)
    return RegistryModel(mv.name, str(mv.version), mv.run_id)


def _as_scores(output, n: int) -> list[float]:
    import numpy as np

    if hasattr(output, "columns"):  # a pandas DataFrame
        output = output["score"] if "score" in output.columns else output.iloc[:, 0]
    if isinstance(output, list) and output and isinstance(output[0], dict):
        output = [row.get("score", math.nan) for row in output]
    values = np.asarray(output, dtype=np.float64).reshape(-1)
    if values.size != n:
        raise ValueError(f"returned {values.size} scores for {n} videos")
    return values.tolist()


def score_with_registry_model(
    model: RegistryModel,
    items: list[tuple[str, str]],
    *,
    cache_root: str | Path,
    key_rate: float,
    max_key_frames: int,
    workers: int,
    log: Callable[[str], None] = print,
    batch: int = 16,
) -> tuple[dict[str, float], dict[str, str]]:
    """(video id -> score, video id -> failure reason) for the pinned registry model."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        loaded = mlflow.pyfunc.load_model(model.uri, dst_path=tmp)
        try:
            inner = loaded.unwrap_python_model()
        except Exception:  # a flavour without a Python model (e.g. a plain sklearn pyfunc)
            inner = None
        from vqa.registry.mlflow_registry import StudentPyfunc

        if isinstance(inner, StudentPyfunc):
            from vqa.pipeline.analyse import analyse
            from vqa.scoring import scores_from_features
            from vqa.student.features import FeatureStore

            student = inner.model
            res = analyse(items, teacher_names=[], cache_root=cache_root, key_rate=student.config.key_rate,
                          max_key_frames=student.config.max_key_frames, features=FeatureStore(cache_root, student),
                          workers=workers, log=log)
            return scores_from_features(student, res.features), dict(res.failures.get("features", {}))

        cache = ScoreCache(Path(cache_root) / "scores", f"mlflow-{model.name}@v{model.version}")
        todo = [(vid, path) for vid, path in items if cache.get(vid) is None]
        log(f"{model.uri}: scoring {len(todo)} of {len(items)} videos ({len(items) - len(todo)} cached)")
        try:
            for start in range(0, len(todo), batch):
                chunk = todo[start:start + batch]
                try:
                    values = _as_scores(loaded.predict([p for _, p in chunk]), len(chunk))
                except Exception as exc:  # find which videos fail, one at a time
                    values = []
                    for _, p in chunk:
                        try:
                            values.append(_as_scores(loaded.predict([p]), 1)[0])
                        except Exception as one:
                            values.append(f"{type(one).__name__}: {one}")
                for (vid, _), v in zip(chunk, values):
                    ok = isinstance(v, float) and math.isfinite(v)
                    cache.put(vid, {"score": v} if ok else {"error": v if isinstance(v, str) else "non-finite score"})
        finally:
            cache.flush()
    scores = {vid: cache.get(vid)["score"] for vid, _ in items if "score" in cache.get(vid)}
    failures = {vid: cache.get(vid)["error"] for vid, _ in items if "error" in cache.get(vid)}
    return scores, failures

"""Any MLflow-registered model as a teacher, by URI (alias pinned to a version, cached)."""
from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow.pyfunc import PythonModel

from tests.media import make_clip
from vqa.teachers.mlflow_models import resolve, score_with_registry_model


class MeanPixel(PythonModel):
    """A stand-in for an exported third-party VQA model: mean pixel of the first frame."""

    def predict(self, context, model_input: list[str], params=None) -> list[float]:
        from vqa.video import read_video

        out = []
        for p in model_input:
            out.append(float(read_video(p, max_key_frames=1).key_frames.mean()))
        return out


@pytest.fixture
def registry_uri(temp_mlflow):
    uri = temp_mlflow
    mlflow.set_experiment("t")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="m", python_model=MeanPixel(), registered_model_name="mean-pixel",
                                       pip_requirements=["numpy"])
    mlflow.MlflowClient().set_registered_model_alias("mean-pixel", "prod", info.registered_model_version)
    yield uri


def test_alias_resolves_to_a_version_and_scores_are_cached(tmp_path, registry_uri):
    model = resolve("models:/mean-pixel@prod")
    assert (model.name, model.version) == ("mean-pixel", "1")
    items = [(f"v{i}", str(make_clip(tmp_path / f"c{i}.mp4", frames=6, seed=i))) for i in range(3)]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    items.append(("bad", str(bad)))
    logs: list[str] = []
    kwargs = dict(cache_root=tmp_path / "cache", key_rate=1.0, max_key_frames=2, workers=1)
    scores, failures = score_with_registry_model(model, items, log=logs.append, **kwargs)
    assert set(scores) == {"v0", "v1", "v2"} and set(failures) == {"bad"}
    assert "VideoCorrupt" in failures["bad"] or "not" in failures["bad"]
    assert logs[-1] == "models:/mean-pixel/1: scoring 4 of 4 videos (0 cached)"
    again, _ = score_with_registry_model(model, items, log=logs.append, **kwargs)
    assert again == scores and logs[-1] == "models:/mean-pixel/1: scoring 0 of 4 videos (4 cached)"


def test_unknown_model_is_a_lookup_error(registry_uri):
    with pytest.raises(LookupError, match="models:/nope@prod: no alias 'prod' of 'nope' in the model registry .*it has: models:/mean-pixel"):
        resolve("models:/nope@prod")
    with pytest.raises(ValueError, match="must look like"):
        resolve("runs:/abc/model")

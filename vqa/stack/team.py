"""The one switch from the embedded set-up to a team stack: service addresses come from the
environment (`eval "$(vqa stack env)"` sets them), and with none set nothing changes.

  MLFLOW_TRACKING_URI      the MLflow server (vqa.registry.configure_tracking already reads it)
  PREFECT_API_URL          the Prefect server (Prefect reads it)
  DASK_SCHEDULER_ADDRESS   teacher inference on that scheduler instead of a local cluster
  W2S_DVC_REMOTE           an S3 URL: the project's default DVC remote, written to .dvc/config.local
  W2S_DVC_ENDPOINT_URL     its S3 endpoint (SeaweedFS, MinIO, ...)
  W2S_REGISTRY_ALLOWLIST   registries (comma-separated URI prefixes) that registry teachers may load from

Credentials never come from params.yaml or git: S3 keys from the AWS variables or the file named
by AWS_SHARED_CREDENTIALS_FILE, database passwords from a pgpass file.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

TEAM_REMOTE = "team"


def dask_address(configured: str | None) -> str | None:
    """DASK_SCHEDULER_ADDRESS (Dask's own variable) wins over orchestration.dask_address."""
    return os.environ.get("DASK_SCHEDULER_ADDRESS") or configured


def apply_dvc_remote(root: str | Path = ".") -> str | None:
    """With W2S_DVC_REMOTE set: make it the project's default DVC remote `team` in
    .dvc/config.local (per machine, git-ignored by DVC), with W2S_DVC_ENDPOINT_URL as its
    endpointurl. Returns the URL in use, or None (nothing set: .dvc/config stays in charge)."""
    url = os.environ.get("W2S_DVC_REMOTE")
    if not url:
        return None
    from dvc.config import Config

    config = Config(dvc_dir=str(Path(root) / ".dvc"))
    wanted = {"url": url}
    if os.environ.get("W2S_DVC_ENDPOINT_URL"):
        wanted["endpointurl"] = os.environ["W2S_DVC_ENDPOINT_URL"]
    local = config.load_one("local")
    if local.get("core", {}).get("remote") == TEAM_REMOTE and local.get("remote", {}).get(TEAM_REMOTE) == wanted:
        return url
    with config.edit("local") as conf:
        conf["remote"][TEAM_REMOTE] = wanted
        conf["core"]["remote"] = TEAM_REMOTE
    return url


class RegistryNotAllowed(ValueError):
    """A registry teacher from a registry that is not allow-listed (bad configuration: vqa exits 2)."""


def _origin(uri: str) -> str:
    """scheme://host:port/path, lower case, without any user:password@."""
    parts = urlsplit(uri)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{host}{parts.path.rstrip('/')}".lower()


def is_local_registry(uri: str) -> bool:
    """A registry in a file on this machine (SQLite, a file store): the embedded default."""
    scheme = urlsplit(uri).scheme
    return scheme in ("", "file", "sqlite")


def allowed_registries(configured: list[str] = ()) -> list[str]:
    env = [u.strip() for u in os.environ.get("W2S_REGISTRY_ALLOWLIST", "").split(",") if u.strip()]
    return [*configured, *env]


def check_registry_allowed(registry_uri: str, configured: list[str] = ()) -> None:
    """Loading a pyfunc model runs its code: registry teachers come only from a registry on this
    machine or one on the allow-list (teachers.registry_allowlist, W2S_REGISTRY_ALLOWLIST)."""
    if is_local_registry(registry_uri):
        return
    origin = _origin(registry_uri)
    allowed = allowed_registries(configured)
    for entry in allowed:
        prefix = _origin(entry)
        if origin == prefix or origin.startswith(prefix + "/"):
            return
    raise RegistryNotAllowed(
        f"registry {origin} is not on the allow-list for teachers.registry_models (loading a model runs its "
        f"code); add it to teachers.registry_allowlist or W2S_REGISTRY_ALLOWLIST"
        + (f" (allowed now: {', '.join(_origin(a) for a in allowed)})" if allowed else ""))


def require_allowed_registry(params) -> None:
    """check_registry_allowed for the registry vqa.registry.configure_tracking will use (checked
    before it, so a refused registry is never contacted)."""
    uri = os.environ.get("MLFLOW_REGISTRY_URI") or os.environ.get("MLFLOW_TRACKING_URI") or params.mlflow.tracking_uri
    check_registry_allowed(uri, params.teachers.registry_allowlist)

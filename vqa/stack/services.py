"""The team stack's services, defined once: `vqa stack up` runs them as native processes and
`vqa stack compose` writes docker/compose.yaml from the same definitions, so both run the same
commands with the same settings; only the placeholders differ (a state folder and free loopback
ports here, volumes, container paths and service names in compose).

Placeholders in argv and env: {bind} (listen address), {self} (the address a service advertises),
{data} (its data folder), {secrets} (the credential files), {results} (Prefect's shared result
storage), {name}, and {<x>_host} / {<x>_port} of every port below.

No secret is ever in an argv, an env value or a URI: PostgreSQL clients read a pgpass file, S3
clients an AWS credentials file, SeaweedFS an identities file, all under {secrets}.
"""
from __future__ import annotations

from dataclasses import dataclass, field

DB_USER = "w2s"
DATABASES = ("mlflow", "prefect")
MLFLOW_BUCKET = "w2s-mlflow"
DVC_BUCKET = "w2s-dvc"
BUCKETS = (MLFLOW_BUCKET, DVC_BUCKET)
DVC_REMOTE_URL = f"s3://{DVC_BUCKET}/w2s-vqa"
REGION = "us-east-1"  # SeaweedFS accepts any; boto3 needs one to sign requests
SECRETS = ("pg_password", "pgpass", "s3_identities", "aws_credentials")
WORK_POOLS = ("cpu", "gpu")  # flows/orchestrate.py POOLS

# Port name -> (service that owns it, port inside compose). Natively each gets a free port.
PORTS = {
    "postgres": ("postgres", 5432),
    "s3": ("seaweedfs", 8333),
    "s3_grpc": ("seaweedfs", 18333),
    "weed_master": ("seaweedfs", 9333),
    "weed_master_grpc": ("seaweedfs", 19333),
    "weed_volume": ("seaweedfs", 8080),
    "weed_volume_grpc": ("seaweedfs", 18080),
    "weed_filer": ("seaweedfs", 8888),
    "weed_filer_grpc": ("seaweedfs", 18888),
    "mlflow": ("mlflow", 5000),
    "prefect": ("prefect-server", 4200),
    "dask": ("dask-scheduler", 8786),
}
PUBLISHED = ("postgres", "s3", "mlflow", "prefect", "dask")  # compose: published on the host's loopback

# What a pipeline process needs to use the stack (`vqa stack env`; the Prefect workers get it too).
CLIENT_ENV = {
    "MLFLOW_TRACKING_URI": "http://{mlflow_host}:{mlflow_port}",
    "PREFECT_API_URL": "http://{prefect_host}:{prefect_port}/api",
    "DASK_SCHEDULER_ADDRESS": "tcp://{dask_host}:{dask_port}",
    "W2S_DVC_REMOTE": DVC_REMOTE_URL,
    "W2S_DVC_ENDPOINT_URL": "http://{s3_host}:{s3_port}",
    "AWS_SHARED_CREDENTIALS_FILE": "{secrets}/aws_credentials",
    "AWS_DEFAULT_REGION": REGION,
    "PREFECT_LOCAL_STORAGE_PATH": "{results}",
    "W2S_REGISTRY_ALLOWLIST": "http://{mlflow_host}:{mlflow_port}",
}
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
             "DVC_NO_ANALYTICS": "1"}


@dataclass(frozen=True)
class Service:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    health: tuple = ()  # ("http", port, path) | ("tcp", port) | ("postgres",) | ("dask-worker",) | ("prefect-worker", pool)
    image: str = "app"  # compose: app (CPU image), cuda (GPU image), postgres
    after: tuple[str, ...] = ()  # started once these are healthy (compose: depends_on)
    data: bool = False  # has a data folder that outlives `vqa stack down` (compose: a named volume)
    secrets: tuple[str, ...] = ()
    results: bool = False  # mounts Prefect's shared result storage
    worker: bool = False  # a Prefect worker (`vqa stack up --no-workers` leaves them out)
    stop_signal: str = "SIGTERM"


_PG_URI = "{postgres_host}:{postgres_port}"
_DASK_WORKER = ("dask", "worker", "tcp://{dask_host}:{dask_port}", "--name", "{name}", "--nworkers", "1",
                "--nthreads", "1", "--host", "{self}", "--no-dashboard", "--dashboard-address", "{bind}:0",
                "--death-timeout", "120")  # the address also serves /health and metrics: keep it on {bind}
_DASK_WORKER_ENV = {"PREFECT_API_URL": CLIENT_ENV["PREFECT_API_URL"], "PREFECT_LOCAL_STORAGE_PATH": "{results}"}


def _prefect_worker(pool: str, image: str) -> Service:
    return Service(f"prefect-worker-{pool}", ("prefect", "worker", "start", "--pool", pool, "--type", "process",
                                              "--name", "{name}"),
                   env=dict(CLIENT_ENV), health=("prefect-worker", pool), image=image,
                   after=("prefect-server", "mlflow", "dask-scheduler"), secrets=("aws_credentials",), results=True,
                   worker=True)


SERVICES: tuple[Service, ...] = (
    Service("postgres", ("postgres", "-D", "{data}/pgdata", "-p", "{postgres_port}", "-c", "listen_addresses={bind}",
                         "-c", "unix_socket_directories={pg_sockets}"),
            health=("postgres",), image="postgres", data=True, secrets=("pg_password",),
            stop_signal="SIGINT"),  # PostgreSQL's fast shutdown
    Service("seaweedfs", ("weed", "server", "-dir={data}", "-ip={self}", "-ip.bind={bind}",
                          "-master.port={weed_master_port}", "-master.port.grpc={weed_master_grpc_port}",
                          "-volume.port={weed_volume_port}", "-volume.port.grpc={weed_volume_grpc_port}",
                          "-volume.max=0", "-master.volumeSizeLimitMB=1024", "-master.telemetry=false",
                          "-filer", "-filer.port={weed_filer_port}", "-filer.port.grpc={weed_filer_grpc_port}",
                          "-s3", "-s3.port={s3_port}", "-s3.port.grpc={s3_grpc_port}", "-s3.port.iceberg=0",
                          "-s3.port.lance=0", "-s3.config={secrets}/s3_identities"),
            health=("http", "s3", "/healthz"), data=True, secrets=("s3_identities",)),
    Service("stack-init", ("vqa", "stack", "init", "--postgres", _PG_URI, "--s3", "http://{s3_host}:{s3_port}",
                           "--secrets", "{secrets}"),
            after=("postgres", "seaweedfs"), secrets=("pgpass", "aws_credentials")),
    Service("mlflow", ("mlflow", "server", "--host", "{bind}", "--port", "{mlflow_port}", "--workers", "2",
                       "--backend-store-uri", f"postgresql://{DB_USER}@{_PG_URI}/mlflow",
                       "--artifacts-destination", f"s3://{MLFLOW_BUCKET}/artifacts", "--serve-artifacts"),
            env={"PGPASSFILE": "{secrets}/pgpass", "AWS_SHARED_CREDENTIALS_FILE": "{secrets}/aws_credentials",
                 "AWS_DEFAULT_REGION": REGION, "MLFLOW_S3_ENDPOINT_URL": "http://{s3_host}:{s3_port}",
                 "MLFLOW_SERVER_ALLOWED_HOSTS": "{mlflow_allowed_hosts}"},
            health=("http", "mlflow", "/health"), after=("stack-init",), secrets=("pgpass", "aws_credentials")),
    Service("prefect-server", ("prefect", "server", "start", "--host", "{bind}", "--port", "{prefect_port}"),
            env={"PGPASSFILE": "{secrets}/pgpass", "PREFECT_HOME": "{data}",
                 "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://{DB_USER}@{_PG_URI}/prefect"},
            health=("http", "prefect", "/api/health"), after=("stack-init",), data=True, secrets=("pgpass",)),
    Service("dask-scheduler", ("dask", "scheduler", "--host", "{self}", "--port", "{dask_port}", "--no-dashboard",
                                "--dashboard-address", "{bind}:0"),
            health=("tcp", "dask")),
    Service("dask-worker-1", _DASK_WORKER, env=_DASK_WORKER_ENV, health=("dask-worker",),
            after=("dask-scheduler",), results=True),
    Service("dask-worker-2", _DASK_WORKER, env=_DASK_WORKER_ENV, health=("dask-worker",),
            after=("dask-scheduler",), results=True),
    _prefect_worker("cpu", "app"),
    _prefect_worker("gpu", "cuda"),
)


def by_name() -> dict[str, Service]:
    return {s.name: s for s in SERVICES}


def port_names(service: str) -> list[str]:
    return [p for p, (owner, _) in PORTS.items() if owner == service]


def render(template: str, context: dict) -> str:
    return template.format(**context)


def render_all(items, context: dict):
    return [render(t, context) for t in items]


def order() -> list[list[Service]]:
    """The services in tiers: each tier's services need only earlier tiers."""
    done: set[str] = set()
    tiers, left = [], list(SERVICES)
    while left:
        tier = [s for s in left if all(a in done for a in s.after)]
        if not tier:
            raise ValueError(f"services with unmet or circular dependencies: {[s.name for s in left]}")
        tiers.append(tier)
        done |= {s.name for s in tier}
        left = [s for s in left if s.name not in done]
    return tiers

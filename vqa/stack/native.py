"""`vqa stack up|down|status|env`: the services of vqa.stack.services as native processes under a
state folder, each bound to 127.0.0.1 on a port chosen free the first time and kept after that.

  <state>/stack.json      ports and settings          <state>/logs/<service>.log
  <state>/run/<svc>.pid   running processes           <state>/secrets/   credentials (0600)
  <state>/<service>/      data, kept by `down`        <state>/prefect-results/  Prefect results

`up` starts what is not running and leaves the rest (safe to repeat); `down` stops every process
and keeps the data. PostgreSQL refuses to run as root: under root it runs as an unprivileged user
(W2S_STACK_PG_USER, default `postgres`, which Debian's package creates), with its data under
/var/tmp/w2s-vqa-stack/ (an ancestor of the state folder may be closed to that user) and a link
to it at <state>/postgres.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import pwd
import secrets as _secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from vqa.stack import services as S

STATE_ENV = "W2S_STACK_DIR"
DEFAULT_STATE = ".stack"
PG_USER_ENV = "W2S_STACK_PG_USER"
PG_ROOT_BASE = Path("/var/tmp/w2s-vqa-stack")
LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    """A service could not be started or reached; the message says which and why."""


def state_dir(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get(STATE_ENV) or DEFAULT_STATE).resolve()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def pg_bin_dir() -> Path:
    """PostgreSQL's server programs: W2S_PG_BIN, else initdb on PATH, else Debian's newest."""
    if os.environ.get("W2S_PG_BIN"):
        return Path(os.environ["W2S_PG_BIN"])
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if versions:
        return Path(versions[-1]).parent
    raise StackError("PostgreSQL not found: install Debian's `postgresql` package (or set W2S_PG_BIN)")


def _pg_user() -> pwd.struct_passwd | None:
    """The user PostgreSQL runs as when we are root (it refuses root); None: ourselves."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get(PG_USER_ENV, "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise StackError(f"running as root: PostgreSQL needs an unprivileged user, and {name!r} does not exist "
                         f"(install Debian's postgresql, or `useradd --system {name}`, or set {PG_USER_ENV})") from None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":  # a dead child of this process: reap it
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


class Stack:
    def __init__(self, path: str | os.PathLike | None = None, log: Callable[[str], None] = print):
        self.root = state_dir(path)
        self.log = log
        self.file = self.root / "stack.json"
        self.state = json.loads(self.file.read_text()) if self.file.exists() else {}

    # ------------------------------------------------------------------ layout and placeholders
    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def results(self) -> Path:
        return self.root / "prefect-results"

    def data_dir(self, service: str) -> Path:
        if service == "postgres" and _pg_user() is not None:
            digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
            return PG_ROOT_BASE / digest / "postgres"
        return self.root / service

    def _ports(self) -> dict[str, int]:
        return self.state.get("ports", {})

    def context(self, service: S.Service | None = None) -> dict:
        ctx = {"bind": LOOPBACK, "self": LOOPBACK, "secrets": str(self.secrets), "results": str(self.results),
               "pg_sockets": "", "mlflow_allowed_hosts": f"{LOOPBACK}:*,localhost:*"}
        for name, port in self._ports().items():
            ctx[f"{name}_host"] = LOOPBACK
            ctx[f"{name}_port"] = str(port)
        if service is not None:
            ctx["name"] = service.name
            ctx["data"] = str(self.data_dir(service.name))
        return ctx

    def client_env(self) -> dict[str, str]:
        ctx = self.context()
        return {k: S.render(v, ctx) for k, v in S.CLIENT_ENV.items()}

    def env_lines(self) -> list[str]:
        import shlex

        return [f"export {k}={shlex.quote(v)}" for k, v in self.client_env().items()]

    # ------------------------------------------------------------------ state, ports, secrets
    def _save(self) -> None:
        from vqa.io import atomic_write_json

        atomic_write_json(self.file, self.state)

    def _allocate_ports(self) -> None:
        ports = self._ports()
        for name in S.PORTS:
            if name not in ports:
                taken = set(ports.values())
                port = _free_port()
                while port in taken:
                    port = _free_port()
                ports[name] = port
        self.state["ports"] = ports
        self._save()

    def _write_secrets(self) -> None:
        write_secrets(self.secrets)

    # ------------------------------------------------------------------ processes
    def _pidfile(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        path = self._pidfile(name)
        if not path.exists():
            return None
        pid = int(json.loads(path.read_text())["pid"])
        return pid if _alive(pid) else None

    def _argv(self, svc: S.Service) -> list[str]:
        argv = S.render_all(svc.argv, self.context(svc))
        if svc.name == "postgres":
            argv[0] = str(pg_bin_dir() / argv[0])
        else:
            local = Path(sys.executable).parent / argv[0]  # this environment's tools first
            argv[0] = str(local) if local.exists() else (shutil.which(argv[0]) or argv[0])
        return argv

    def _env(self, svc: S.Service) -> dict[str, str]:
        env = dict(os.environ)
        env.update(S.QUIET_ENV)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        ctx = self.context(svc)
        env.update({k: S.render(v, ctx) for k, v in svc.env.items()})
        return env

    def _spawn(self, svc: S.Service) -> int:
        for port in S.port_names(svc.name):
            number = self._ports()[port]
            if not _port_free(number):
                raise StackError(f"{svc.name}: port {number} ({port}) is taken by another program; stop it, or "
                                 f"remove {self.file} to choose new ports")
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        (self.root / "run").mkdir(parents=True, exist_ok=True)
        extra = {}
        user = _pg_user() if svc.name == "postgres" else None
        if user is not None:
            extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        elif svc.data:
            self.data_dir(svc.name).mkdir(parents=True, exist_ok=True)
        argv = self._argv(svc)
        with open(self.root / "logs" / f"{svc.name}.log", "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} start\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, env=self._env(svc), cwd=self.root, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, **extra)
        from vqa.io import atomic_write_json

        atomic_write_json(self._pidfile(svc.name), {"pid": proc.pid, "argv": argv, "started": time.time()})
        return proc.pid

    def _prepare_postgres(self) -> None:
        """initdb once, as the user PostgreSQL runs as, with the superuser's password from a file."""
        data = self.data_dir("postgres")
        user = _pg_user()
        if user is not None:
            PG_ROOT_BASE.mkdir(mode=0o755, exist_ok=True)
            data.mkdir(parents=True, exist_ok=True)
            os.chown(data.parent, user.pw_uid, user.pw_gid)
            os.chmod(data.parent, 0o700)
            os.chown(data, user.pw_uid, user.pw_gid)
            link = self.root / "postgres"
            if not link.is_symlink():
                link.symlink_to(data, target_is_directory=True)
        else:
            data.mkdir(parents=True, exist_ok=True)
        pgdata = data / "pgdata"
        if (pgdata / "PG_VERSION").exists():
            return
        pwfile = data / ".pwfile"
        pwfile.write_text((self.secrets / "pg_password").read_text().strip() + "\n")
        os.chmod(pwfile, 0o600)
        extra = {}
        if user is not None:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
            extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        try:
            proc = subprocess.run([str(pg_bin_dir() / "initdb"), "-D", str(pgdata), "-U", S.DB_USER, "-E", "UTF8",
                                   "--locale=C", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                                   f"--pwfile={pwfile}", "--no-instructions"],
                                  cwd=data, capture_output=True, text=True, **extra)
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise StackError(f"postgres: initdb failed: {(proc.stdout + proc.stderr).strip()[-1500:]}")

    # ------------------------------------------------------------------ health
    def healthy(self, svc: S.Service) -> bool:
        kind, *args = svc.health or ("none",)
        ports = self._ports()
        try:
            if kind == "http":
                import httpx

                return httpx.get(f"http://{LOOPBACK}:{ports[args[0]]}{args[1]}", timeout=3).status_code == 200
            if kind == "tcp":
                with socket.create_connection((LOOPBACK, ports[args[0]]), timeout=2):
                    return True
            if kind == "postgres":
                with contextlib.closing(self.connect_db("postgres")):
                    return True
            if kind == "dask-worker":
                return svc.name in self._dask_workers()
            if kind == "prefect-worker":
                return svc.name in self._prefect_workers(args[0])
        except Exception:
            return False
        return self.pid(svc.name) is not None

    def connect_db(self, dbname: str):
        return connect_postgres(f"{LOOPBACK}:{self._ports()['postgres']}", self.secrets, dbname, timeout=3)

    def _dask_workers(self) -> set[str]:
        from distributed import Client

        with Client(f"tcp://{LOOPBACK}:{self._ports()['dask']}", timeout=5) as client:
            return {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}

    def _prefect_workers(self, pool: str) -> set[str]:
        import httpx

        url = f"http://{LOOPBACK}:{self._ports()['prefect']}/api/work_pools/{pool}/workers/filter"
        resp = httpx.post(url, json={}, timeout=5)
        return {w["name"] for w in resp.json() if w.get("status") == "ONLINE"} if resp.status_code == 200 else set()

    def _wait(self, names: list[str], timeout: float) -> None:
        by_name = S.by_name()
        left, t0 = list(names), time.monotonic()
        while left:
            for name in list(left):
                if self.pid(name) is None:
                    raise StackError(f"{name} exited during start-up; last lines of {self.root}/logs/{name}.log:\n"
                                     + self.log_tail(name))
                if self.healthy(by_name[name]):
                    left.remove(name)
                    self.log(f"stack: {name} ready ({time.monotonic() - t0:.1f} s)")
            if left and time.monotonic() - t0 > timeout:
                raise StackError(f"not healthy after {timeout:.0f} s: {', '.join(left)} (logs in {self.root}/logs)")
            if left:
                time.sleep(0.3)

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.root / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"

    # ------------------------------------------------------------------ commands
    def up(self, workers: bool = True, only: list[str] | None = None, timeout: float = 600) -> float:
        """Start every service that is not running (or only those named); returns the seconds taken."""
        t0 = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        self._allocate_ports()
        self._write_secrets()
        self.results.mkdir(exist_ok=True)
        for tier in S.order():
            wanted = [s for s in tier if (workers or not s.worker) and (only is None or s.name in only)]
            started = []
            for svc in wanted:
                if svc.name == "stack-init":
                    self._init()
                    continue
                if self.pid(svc.name) is not None:
                    continue
                if svc.name == "postgres":
                    self._prepare_postgres()
                self._spawn(svc)
                started.append(svc.name)
            self._wait([s.name for s in wanted if s.name != "stack-init"], timeout)
        return time.monotonic() - t0

    def _init(self) -> None:
        """The databases and buckets: the same `vqa stack init` command compose runs."""
        svc = S.by_name()["stack-init"]
        argv = S.render_all(svc.argv, self.context(svc))
        args = init_parser().parse_args(argv[3:])
        init(args.postgres, args.s3, args.secrets, log=self.log)

    def stop(self, name: str, timeout: float = 30) -> bool:
        """Stop one service (its whole process group, but PostgreSQL's fast shutdown); data stays."""
        pid = self.pid(name)
        if pid is None:
            self._pidfile(name).unlink(missing_ok=True)
            return False
        svc = S.by_name()[name]
        sig = getattr(signal, svc.stop_signal)
        with contextlib.suppress(ProcessLookupError):
            if svc.stop_signal == "SIGTERM":
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self._pidfile(name).unlink(missing_ok=True)
        self.log(f"stack: {name} stopped")
        return True

    def down(self, purge: bool = False) -> None:
        for tier in reversed(S.order()):
            for svc in tier:
                if svc.name != "stack-init":
                    self.stop(svc.name)
        if purge:  # tests: remove the data too
            if _pg_user() is not None:
                shutil.rmtree(self.data_dir("postgres").parent, ignore_errors=True)
            shutil.rmtree(self.root, ignore_errors=True)

    def status(self) -> list[dict]:
        rows = []
        ports = self._ports()
        for svc in S.SERVICES:
            if svc.name == "stack-init":
                continue
            pid = self.pid(svc.name)
            main = S.port_names(svc.name)[:1]
            address = f"{LOOPBACK}:{ports[main[0]]}" if main and main[0] in ports else ""
            rows.append({"service": svc.name, "pid": pid, "address": address,
                         "state": "healthy" if pid and self.healthy(svc) else ("starting" if pid else "stopped")})
        return rows


# ---------------------------------------------------------------------- credentials and init
def write_secrets(folder: str | os.PathLike) -> list[str]:
    """Fresh credentials in a 0700 folder, each file 0600; existing ones are kept. Returns what
    was created. Both the native stack and compose (docker/secrets) use these files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)

    def read(name: str) -> str | None:
        path = folder / name
        return path.read_text() if path.exists() else None

    created = []

    def write(name: str, text: str) -> None:
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        created.append(name)

    if read("pg_password") is None:
        write("pg_password", _secrets.token_urlsafe(24) + "\n")
    password = read("pg_password").strip()
    if read("pgpass") is None:
        write("pgpass", f"*:*:*:{S.DB_USER}:{password}\n")  # any host and port: native and compose alike
    if read("aws_credentials") is None:
        key, secret = "W2S" + _secrets.token_hex(8).upper(), _secrets.token_urlsafe(30)
        write("aws_credentials", f"[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")
    if read("s3_identities") is None:
        key, secret = s3_keys(folder)
        identities = {"identities": [{"name": S.DB_USER, "credentials": [{"accessKey": key, "secretKey": secret}],
                                      "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        write("s3_identities", json.dumps(identities, indent=1) + "\n")
    return created


def s3_keys(folder: str | os.PathLike) -> tuple[str, str]:
    import configparser

    cp = configparser.ConfigParser()
    cp.read(Path(folder) / "aws_credentials")
    return cp["default"]["aws_access_key_id"], cp["default"]["aws_secret_access_key"]


def s3_client(endpoint: str, secrets_dir: str | os.PathLike):
    import boto3

    key, secret = s3_keys(secrets_dir)
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name=S.REGION)


def connect_postgres(address: str, secrets_dir: str | os.PathLike, dbname: str, timeout: int = 10):
    """psycopg (3) connection as the stack's user; the password comes from the pgpass file."""
    import psycopg

    host, _, port = address.rpartition(":")
    return psycopg.connect(host=host, port=int(port), user=S.DB_USER, dbname=dbname, autocommit=True,
                           passfile=str(Path(secrets_dir) / "pgpass"), connect_timeout=timeout)


def init_parser():
    import argparse

    return add_init_args(argparse.ArgumentParser(prog="vqa stack init"))


def add_init_args(p):
    p.add_argument("--postgres", required=True, help="host:port")
    p.add_argument("--s3", required=True, help="S3 endpoint URL")
    p.add_argument("--secrets", required=True, help="folder of the credential files")
    return p


def init(postgres: str, s3: str, secrets_dir: str, log: Callable[[str], None] = print) -> None:
    """Create the MLflow and Prefect databases and the two buckets if missing (idempotent)."""
    with connect_postgres(postgres, secrets_dir, "postgres") as conn, conn.cursor() as cur:
        for db in S.DATABASES:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{db}" OWNER "{S.DB_USER}"')
                log(f"stack: database {db} created")
    client = s3_client(s3, secrets_dir)
    have = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for bucket in S.BUCKETS:
        if bucket not in have:
            client.create_bucket(Bucket=bucket)
            log(f"stack: bucket {bucket} created")

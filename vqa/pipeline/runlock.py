"""One run of the rounds per project at a time.

Two flows on one project would interleave their `dvc repro` calls: each waits on DVC's
repository lock in turn, and the stages of one round would run against the other's half-written
outputs. The flows take this lock first instead; a second run refuses at once and says who holds
the project. It is a flock in .dvc/tmp (DVC's own scratch folder): the kernel drops
it when its process dies, even by SIGKILL, so a crashed run never leaves a stale lock behind.
Re-entrant within a process (w2s-rounds runs w2s-round as a subflow).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path

_HELD: dict[str, int] = {}  # lock path -> depth, in this process


class ProjectBusy(ValueError):
    """Another run holds the project (a ValueError: not retried, the run stops untouched)."""


def lock_path(project_dir: str | Path) -> Path:
    """In the scratch folder of the DVC repository that holds the project. A project in a subfolder
    (runs/ugc) gets a lock of its own there: creating runs/ugc/.dvc would make DVC take the
    subfolder for a repository of its own, with its own cache and no remote."""
    proj = Path(project_dir).resolve()
    root = next((p for p in (proj, *proj.parents) if (p / ".dvc").is_dir()), proj)
    if root == proj:
        return proj / ".dvc" / "tmp" / "w2s-run.lock"
    tag = hashlib.sha256(proj.relative_to(root).as_posix().encode()).hexdigest()[:12]
    return root / ".dvc" / "tmp" / f"w2s-run-{tag}.lock"


@contextlib.contextmanager
def project_lock(project_dir: str | Path, what: str):
    path = lock_path(project_dir)
    key = str(path)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            raise ProjectBusy(f"{Path(project_dir).resolve()} is busy: {holder}; this run ({what}) stops without "
                              f"changing anything. Wait for that run to finish, or stop it.") from None
        info = {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        with contextlib.suppress(Exception):
            from prefect.runtime import flow_run

            info["flow_run_id"] = str(flow_run.id or "")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another run holds its lock"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    run = f", flow run {info['flow_run_id']}" if info.get("flow_run_id") else ""
    return f"{info.get('what', 'a run')} is running there (pid {info.get('pid')} on {info.get('host')}{run}, since {since})"

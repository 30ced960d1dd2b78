"""The team-mode switches and the stack's pieces that need no running service: nothing set means
the embedded defaults; the DVC remote, the Dask address and the registry allow-list from the
environment; credentials files; the project run lock."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from vqa.stack import services as S
from vqa.stack import team


@pytest.fixture
def no_team_env(monkeypatch):
    for name in S.CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)


def _dvc_repo(path):
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=path, check=True)
    (path / ".dvc" / "config").write_text("[core]\n    remote = local\n['remote \"local\"']\n    url = ../dvc-remote\n")
    return path


def test_nothing_set_keeps_the_embedded_defaults(tmp_path, no_team_env):
    from vqa.config.params import OrchestrationParams
    from vqa.registry.lineage import dvc_remote

    proj = _dvc_repo(tmp_path)
    assert team.apply_dvc_remote(proj) is None
    assert not (proj / ".dvc" / "config.local").exists()
    assert dvc_remote(proj) == {"name": "local", "url": str(tmp_path / "dvc-remote")}
    assert team.dask_address(OrchestrationParams().dask_address) is None
    assert team.dask_address("tcp://10.0.0.1:8786") == "tcp://10.0.0.1:8786"


def test_the_environment_switches_dask_and_the_dvc_remote(tmp_path, monkeypatch, no_team_env):
    from vqa.registry.lineage import dvc_remote

    proj = _dvc_repo(tmp_path)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9999")
    monkeypatch.setenv("W2S_DVC_REMOTE", "s3://bucket/w2s")
    monkeypatch.setenv("W2S_DVC_ENDPOINT_URL", "http://127.0.0.1:8333")
    assert team.dask_address("tcp://params:8786") == "tcp://127.0.0.1:9999"
    assert team.apply_dvc_remote(proj) == "s3://bucket/w2s"
    text = (proj / ".dvc" / "config.local").read_text()
    assert "endpointurl = http://127.0.0.1:8333" in text and "remote = team" in text
    assert dvc_remote(proj) == {"name": "team", "url": "s3://bucket/w2s"}
    mtime = (proj / ".dvc" / "config.local").stat().st_mtime_ns
    team.apply_dvc_remote(proj)  # unchanged: not rewritten
    assert (proj / ".dvc" / "config.local").stat().st_mtime_ns == mtime
    assert ".dvc/config.local" not in subprocess.run(["git", "status", "--porcelain", "-uall"], cwd=proj,
                                                     capture_output=True, text=True).stdout  # never committed


def test_registry_allow_list(monkeypatch, no_team_env):
    team.check_registry_allowed("sqlite:///mlflow.db")  # the embedded registry on this machine
    team.check_registry_allowed("/abs/path/mlruns")
    with pytest.raises(team.RegistryNotAllowed, match="http://models.example.com:5000 is not on the allow-list"):
        team.check_registry_allowed("http://user:hunter2@models.example.com:5000")
    try:
        team.check_registry_allowed("http://user:hunter2@models.example.com:5000")
    except team.RegistryNotAllowed as exc:
        assert "hunter2" not in str(exc)  # credentials in a URI never reach a message
    team.check_registry_allowed("http://models.example.com:5000", ["http://models.example.com:5000/"])
    with pytest.raises(team.RegistryNotAllowed):  # a prefix of the host name is not the host
        team.check_registry_allowed("http://models.example.com.evil:5000", ["http://models.example.com"])
    monkeypatch.setenv("W2S_REGISTRY_ALLOWLIST", "https://a.example, http://127.0.0.1:5001")
    team.check_registry_allowed("http://127.0.0.1:5001")
    with pytest.raises(team.RegistryNotAllowed):
        team.check_registry_allowed("http://127.0.0.1:5002")


def test_registry_teachers_refuse_a_registry_off_the_allow_list(tmp_path, monkeypatch, no_team_env):
    """The teach step checks before it resolves or loads any model (nothing is contacted)."""
    from vqa.config.params import Params
    from vqa.pipeline.steps import _registry_teachers

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    params = Params(rounds={"round1": {"after": "artifacts/corpus/manifest.json"}},
                    teachers={"registry_models": [{"uri": "models:/dover@prod"}]})
    with pytest.raises(team.RegistryNotAllowed, match="teachers.registry_allowlist"):
        _registry_teachers(params, log=print)


def test_secrets_are_private_files_kept_across_calls(tmp_path):
    from vqa.stack.native import s3_keys, write_secrets

    made = write_secrets(tmp_path / "s")
    assert sorted(made) == sorted(S.SECRETS)
    assert oct((tmp_path / "s").stat().st_mode & 0o777) == "0o700"
    for name in S.SECRETS:
        assert oct((tmp_path / "s" / name).stat().st_mode & 0o777) == "0o600"
    before = {n: (tmp_path / "s" / n).read_text() for n in S.SECRETS}
    assert write_secrets(tmp_path / "s") == []
    assert before == {n: (tmp_path / "s" / n).read_text() for n in S.SECRETS}
    key, secret = s3_keys(tmp_path / "s")
    assert secret in before["s3_identities"] and key in before["aws_credentials"]
    password = before["pg_password"].strip()
    assert before["pgpass"] == f"*:*:*:{S.DB_USER}:{password}\n"


def test_no_credential_in_any_command_or_environment_template():
    """Services read credentials from files: no template names a password or key."""
    for svc in S.SERVICES:
        text = " ".join(svc.argv) + " " + " ".join(f"{k}={v}" for k, v in svc.env.items())
        assert "{secrets}" in text or not svc.secrets or svc.image == "postgres", svc.name
        for word in ("password=", "PASSWORD=", "SECRET_ACCESS_KEY", ":{pg"):
            assert word not in text, (svc.name, word)
    assert all("{secrets}" not in v or v.startswith("{secrets}/") for v in S.CLIENT_ENV.values())


def test_services_start_in_dependency_order():
    tiers = [[s.name for s in tier] for tier in S.order()]
    position = {name: i for i, tier in enumerate(tiers) for name in tier}
    for svc in S.SERVICES:
        assert all(position[a] < position[svc.name] for a in svc.after), svc.name
    assert tiers[0][0] == "postgres"


_HOLD = """
import sys, time
from vqa.pipeline.runlock import project_lock
with project_lock(sys.argv[1], "round1"):
    print("HELD", flush=True)
    time.sleep(60)
"""


def test_run_lock_refuses_a_second_run_and_dies_with_its_holder(tmp_path):
    from vqa.pipeline.runlock import ProjectBusy, project_lock

    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        with pytest.raises(ProjectBusy, match=rf"round1 is running there \(pid {holder.pid} on "):
            with project_lock(tmp_path, "round2"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the kernel releases the lock
        holder.wait()
    with project_lock(tmp_path, "round2"):
        with project_lock(tmp_path, "round2 subflow"):  # re-entrant in one process
            pass
    t0 = time.monotonic()
    with project_lock(tmp_path, "again"):
        pass
    assert time.monotonic() - t0 < 1

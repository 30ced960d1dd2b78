"""docker/compose.yaml: generated from the stack's service definitions (so it runs the commands
`vqa stack up` runs), valid for Debian's docker-compose (`config` needs no daemon), with named
volumes, health checks, loopback-only published ports and credentials as secrets."""
from __future__ import annotations

import os
import shutil

import pytest

from vqa.stack import compose
from vqa.stack import services as S


@pytest.fixture(scope="module")
def config():
    if shutil.which("docker-compose") is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: .ci/run installs Debian's docker-compose")
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    return compose.docker_compose_config(compose.COMPOSE_FILE)


def test_committed_file_is_what_the_definitions_give():
    assert compose.COMPOSE_FILE.read_text() == compose.text(), "run `vqa stack compose` and commit docker/compose.yaml"


def test_docker_compose_accepts_it_and_each_service_matches_the_native_stack(config, tmp_path):
    from vqa.stack.native import Stack

    native = Stack(tmp_path / "state")
    native.state["ports"] = {name: 40000 + i for i, name in enumerate(S.PORTS)}
    assert set(config["services"]) == {s.name for s in S.SERVICES}
    for svc in S.SERVICES:
        got = config["services"][svc.name]
        assert got["command"] == S.render_all(svc.argv, compose.context(svc)), svc.name
        # the same template natively: only placeholders differ, position by position
        ours = S.render_all(svc.argv, native.context(svc))
        assert len(ours) == len(got["command"])
        assert [a for a, t in zip(ours, svc.argv) if "{" not in t] == [a for a, t in zip(got["command"], svc.argv)
                                                                         if "{" not in t]
        for key, template in svc.env.items():
            assert got["environment"][key] == S.render(template, compose.context(svc)), (svc.name, key)
        assert [s["source"] for s in got.get("secrets", [])] == list(svc.secrets), svc.name
        for dep in svc.after:
            assert dep in got["depends_on"], (svc.name, dep)


def test_health_checks_volumes_and_loopback_ports(config):
    services = config["services"]
    for svc in S.SERVICES:
        got = services[svc.name]
        if svc.health and svc.health[0] in ("http", "tcp", "postgres"):
            assert got["healthcheck"]["test"][0] == "CMD", svc.name
        assert all(port.startswith("127.0.0.1:") for port in got.get("ports", [])), svc.name
        if svc.data:
            assert any(v.startswith(f"{svc.name}-data:/data") for v in got["volumes"]), svc.name
    assert {f"{s.name}-data" for s in S.SERVICES if s.data} <= set(config["volumes"])
    assert set(config["secrets"]) == set(S.SECRETS)
    gpu = services["prefect-worker-gpu"]
    assert gpu["image"] == "w2s-vqa:cuda" and gpu["build"]["args"]["TORCH_INDEX_URL"].endswith("/cu128")
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["postgres"]["image"] == compose.POSTGRES_IMAGE


def test_images_are_pinned_and_run_as_a_user():
    dockerfile = (compose.ROOT / "docker" / "Dockerfile").read_text()
    base = next(ln.split()[1] for ln in dockerfile.splitlines() if ln.startswith("FROM "))
    assert base.count(":") == 1 and base.split(":")[1][0].isdigit() and base.split(":")[1].count(".") == 2, base
    assert "\nUSER w2s" in dockerfile
    assert compose.POSTGRES_IMAGE.split(":")[1][0].isdigit()
    ignored = (compose.ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".stack", "docker/secrets", "artifacts", "data"):
        assert path in ignored

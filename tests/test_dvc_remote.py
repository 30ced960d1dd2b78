"""The default DVC remote of .dvc/config works in a fresh repo with no set-up: push, lose the cache
and an output, pull, and the output is back byte for byte."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cwd, *args) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, text=True).stdout


def _dvc(cwd, *args) -> str:
    return _run(cwd, sys.executable, "-m", "dvc", *args)


def test_push_then_pull_restores_outputs_byte_identical(tmp_path):
    from vqa.registry.lineage import file_md5, push

    proj = tmp_path / "clone"
    proj.mkdir()
    _run(proj, "git", "init", "-q")
    _dvc(proj, "init", "-q")
    # this project's config and ignore files, as a fresh clone has them
    shutil.copy(ROOT / ".dvc" / "config", proj / ".dvc" / "config")
    for name in (".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, proj / name)
    (proj / "data").mkdir()
    (proj / "data" / "clip.bin").write_bytes(bytes(range(256)) * 40)
    _dvc(proj, "add", "-q", "data")
    # a trivial stage standing in for fuse: a pseudo-label file derived from the data
    (proj / "dvc.yaml").write_text(
        "stages:\n  fuse:\n"
        f"    cmd: {sys.executable} -c \"import os; os.makedirs('artifacts', exist_ok=True); "
        "open('artifacts/pairs.csv', 'wb').write(open('data/clip.bin', 'rb').read()[::7])\"\n"
        "    deps: [data]\n    outs: [artifacts/pairs.csv]\n")
    _dvc(proj, "repro", "-q")
    before = (proj / "artifacts/pairs.csv").read_bytes()

    files, url = push(proj)
    remote = proj / "dvc-remote"
    assert files == 3 and Path(url).resolve() == remote.resolve()  # data/clip.bin, its .dir listing, pairs.csv
    assert _run(proj, "git", "check-ignore", "dvc-remote/x").strip() == "dvc-remote/x"
    assert "dvc-remote" in _dvc(proj, "check-ignore", "dvc-remote/x")
    assert push(proj)[0] == 0  # nothing new
    md5 = file_md5(proj / "artifacts/pairs.csv")  # the md5 lineage tags record addresses the object
    assert (remote / "files" / "md5" / md5[:2] / md5[2:]).read_bytes() == before

    shutil.rmtree(proj / ".dvc" / "cache")
    (proj / "artifacts/pairs.csv").unlink()
    shutil.rmtree(proj / "data")
    _dvc(proj, "pull", "-q")
    assert (proj / "artifacts/pairs.csv").read_bytes() == before
    assert (proj / "data" / "clip.bin").read_bytes() == bytes(range(256)) * 40
    assert "up to date" in _dvc(proj, "status")

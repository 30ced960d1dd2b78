import json

from tests.media import make_clip
from vqa.cli import main


def test_ingest_quarantines_truncated_and_fake_videos_and_exits_0(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        make_clip(src / f"ok{i}.mp4", frames=20, size=(64, 48), seed=i)
    whole = (src / "ok0.mp4").read_bytes()
    (src / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (src / "notes.mp4").write_text("this is a text file, not a video\n")
    manifest, quarantine = tmp_path / "m.json", tmp_path / "q.json"
    rc = main(["corpus", "ingest", str(src), "--manifest", str(manifest), "--quarantine", str(quarantine)])
    assert rc == 0
    q = {e["path"]: e["reason"] for e in json.loads(quarantine.read_text())["videos"]}
    assert set(q) == {"truncated.mp4", "notes.mp4"} and all(q.values())
    assert sorted(v["path"] for v in json.loads(manifest.read_text())["videos"]) == ["ok0.mp4", "ok1.mp4"]


def test_bad_params_fail_with_one_line(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("rounds: {round1: {after: x}}\nstudent: {epochs: many}\n")
    assert main(["--params", str(bad), "report"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "student.epochs: expected an integer" in err


def test_unknown_round_is_named(capsys):
    assert main(["train", "--round", "round9"]) == 2
    assert "round9" in capsys.readouterr().err


def test_teachers_list_shows_both_kinds(capsys):
    assert main(["teachers", "list"]) == 0
    out = capsys.readouterr().out
    assert "niqe" in out and "homogeneous" in out and "h264" in out and "heterogeneous" in out


def test_runtime_failures_exit_3_and_bad_input_exits_2(monkeypatch, capsys):
    """2 is permanent for the flows (no retry); an out-of-memory error (a RuntimeError in torch)
    must be retried, so it exits 3."""
    import argparse

    import torch

    import vqa.cli as cli

    def command_raising(exc):
        def func(args):
            raise exc
        parser = argparse.ArgumentParser()
        parser.set_defaults(func=func)
        return parser

    monkeypatch.setattr(cli, "build_parser", lambda: command_raising(
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")))
    assert main([]) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "OutOfMemoryError" in err and "retrying may succeed" in err
    monkeypatch.setattr(cli, "build_parser", lambda: command_raising(ValueError("params.yaml: student.lr: bad")))
    assert main([]) == 2
    assert capsys.readouterr().err.strip() == "vqa: error: params.yaml: student.lr: bad"

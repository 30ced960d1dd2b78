"""`vqa bench teachers`: runs on a folder and ends with one JSON line of figures."""
from __future__ import annotations

import json

import pytest

from tests.media import make_clip
from vqa.cli import main


def test_bench_teachers_prints_json_last(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml: defaults
    for i in range(3):
        make_clip(tmp_path / "v" / f"c{i}.mp4", frames=12, fps=6, seed=i)
    assert main(["bench", "teachers", "--videos", "v", "--teachers", "brisque", "--workers", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(out[-1])
    assert figures["videos"] == 3 and figures["key_frames"] == 6
    assert figures["statistics_to_decode_ratio"] > 1.0  # the step includes the decode
    assert set(figures["seconds_per_video"]) >= {"decode", "blockiness", "ti", "brisque"}
    assert figures["peak_rss_mb"]["statistics_worker_all"] > 0
    assert not figures["failures"]


def test_bench_teachers_without_videos_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert main(["bench", "teachers", "--videos", "empty"]) == 2
    assert "empty: no video files to benchmark" in capsys.readouterr().err


def test_bench_score_reports_bands_scaling_and_memory(tmp_path, capsys, monkeypatch):
    import torch

    from vqa.student.checkpoint import save_student
    from vqa.student.model import StudentConfig, StudentModel

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VQA_CACHE_DIR", str(tmp_path / "cache"))  # the exported backbone
    for i in range(2):
        make_clip(tmp_path / "v" / f"c{i}.mp4", frames=12, fps=6, seed=i)
    make_clip(tmp_path / "w" / "wide.mp4", frames=12, fps=6, size=(960, 544))
    (tmp_path / "w" / "broken.mp4").write_bytes(b"nope" * 100)
    torch.manual_seed(0)
    save_student(tmp_path / "s.pt", StudentModel(StudentConfig(input_size=64, fragment_grid=4)))
    assert main(["bench", "score", "--videos", "v", "w", "--model", "s.pt", "--workers", "2", "--scaling",
                 "--memory-size", "320x240"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(out[-1])
    assert figures["videos"] == 4 and figures["failed"] == 1 and figures["key_frames"] == 6
    bands = figures["bands"]
    assert set(bands) == {"<=360p", "540p", "unreadable"}
    small, mid = bands["<=360p"], bands["540p"]
    assert small["videos"] == 2 and mid["videos"] == 1 and mid["video_seconds"] == 2.0
    assert mid["target_ratio"] == 2.0 and isinstance(mid["meets_target"], bool) and "target_ratio" not in small
    for b in (small, mid):
        assert b["ratio"] > 0 and b["cpu_ratio"] > 0 and b["failed"] == 0  # tiny clips: start-up dominates
        assert b["cpu_s_per_video"]["score"] > 0 and b["cpu_s_per_video"]["decode_only"] > 0
        assert b["cpu_s_per_video_second"]["score"] == pytest.approx(
            b["cpu_s_per_video"]["score"] * b["videos"] / b["video_seconds"], rel=0.05)
        assert b["peak_rss_mb"] > 0  # forked workers: includes the pages shared with this (big) process
    assert set(figures["scaling"]) == {"1", "2"} and figures["scaling"]["1"]["speedup"] == 1.0
    assert 0 < figures["memory_clip"]["peak_rss_mb"] < 1536 and figures["memory_clip"]["size"] == "320x240"
    assert figures["backbone_runtime"] in ("onnxruntime", "torch")

"""`vqa bench teachers`: runs on a folder and ends with one JSON line of figures."""
from __future__ import annotations

import json

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


def test_bench_score_prints_ratio_and_memory(tmp_path, capsys, monkeypatch):
    import torch

    from vqa.student.checkpoint import save_student
    from vqa.student.model import StudentConfig, StudentModel

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VQA_CACHE_DIR", str(tmp_path / "cache"))  # the exported backbone
    for i in range(2):
        make_clip(tmp_path / "v" / f"c{i}.mp4", frames=12, fps=6, seed=i)
    torch.manual_seed(0)
    save_student(tmp_path / "s.pt", StudentModel(StudentConfig(input_size=64, fragment_grid=4)))
    assert main(["bench", "score", "--videos", "v", "--model", "s.pt", "--workers", "1"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["videos"] == 2 and figures["failed"] == 0 and figures["key_frames"] == 4
    assert figures["score_to_decode_ratio"] > 1.0
    assert 0 < figures["peak_rss_mb_1080p_8s"] < 1536
    assert figures["backbone_runtime"] in ("onnxruntime", "torch")

"""`vqa evaluate --model/--teacher --benchmark`: per-group metrics with CIs, missing videos listed."""
from __future__ import annotations

import json

import pytest
import torch

from tests.media import make_clip
from vqa.cli import main
from vqa.student.checkpoint import save_student
from vqa.student.model import StudentConfig, StudentModel


@pytest.fixture(autouse=True)
def _caches(tmp_path, monkeypatch):
    monkeypatch.setenv("VQA_CACHE_DIR", str(tmp_path / "backbone-cache"))
    monkeypatch.chdir(tmp_path)  # the score and feature caches go under ./artifacts/cache


def test_evaluate_a_student_and_two_teachers_with_three_missing_videos(tmp_path, capsys):
    bench = tmp_path / "bench"
    rows = ["file,mos,dataset"]
    for i in range(8):
        make_clip(bench / f"v{i}.mp4", frames=12, fps=6, seed=i, size=(64 + 8 * i, 48))
        rows.append(f"v{i}.mp4,{1 + i * 0.4:.1f},{'A' if i < 4 else 'B'}")
    rows += ["gone1.mp4,2.0,A", "gone2.mp4,3.0,B", "gone3.mp4,4.0,B"]  # listed, never delivered
    (bench / "labels.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    save_student(tmp_path / "s.pt", StudentModel(StudentConfig(input_size=64, fragment_grid=4, max_key_frames=2)))

    out = tmp_path / "eval.json"
    code = main(["evaluate", "--model", str(tmp_path / "s.pt"), "--teacher", "contrast", "luminance",
                 "--benchmark", str(bench / "labels.csv"), "--boot", "50", "--workers", "1", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "bench: 3 of 11 videos missing (gone1.mp4, gone2.mp4, gone3.mp4)" in captured.out + captured.err
    results = json.loads(out.read_text())
    assert {r["model"] for r in results} == {str(tmp_path / "s.pt"), "contrast", "luminance"}
    for r in results:
        assert r["scored"] == 8 and set(r["groups"]) == {"A", "B"}
        point, low, high = r["groups"]["A"]["srcc"]
        assert -1 <= low <= point <= high <= 1
        assert r["overall"]["n"] == 8 and set(r["overall"]) >= {"srcc", "krcc", "plcc"}
        assert "plcc_fitted" in r["groups"]["B"] and "rmse_fitted" in r["groups"]["B"]
    table = captured.out
    assert "SRCC" in table and "KRCC" in table and "overall" in table

    # Scores are cached per (model, video): a second run decodes nothing.
    main(["evaluate", "--teacher", "contrast", "--benchmark", str(bench / "labels.csv"), "--boot", "10",
          "--workers", "1"])
    assert "decoding" not in capsys.readouterr().err


def test_evaluate_needs_a_benchmark_and_a_configured_paper_benchmark(tmp_path, capsys):
    assert main(["evaluate", "--teacher", "contrast"]) == 2
    assert "--benchmark" in capsys.readouterr().err
    assert main(["evaluate", "--teacher", "contrast", "--benchmark", "KoNViD-1k"]) == 2
    assert "KoNViD-1k" in capsys.readouterr().err

"""Scoring for users: path expansion, failures listed, deterministic, CLI formats and exit codes."""
from __future__ import annotations

import json
import math

import pytest

from tests.media import make_clip
from vqa.cli import main
from vqa.scoring import expand_paths, score_videos
from vqa.student.checkpoint import save_student


pytestmark = pytest.mark.usefixtures("backbone_cache")


@pytest.fixture
def student(tiny_student):
    return tiny_student


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "videos"
    make_clip(d / "a.mp4", frames=12, fps=6, seed=1)
    make_clip(d / "sub" / "b.mkv", frames=12, fps=6, seed=2, size=(48, 64))
    (d / "notes.txt").write_text("not a video")
    (d / ".hidden").mkdir()
    make_clip(d / ".hidden" / "c.mp4", frames=6, seed=3)
    return d


def test_expand_paths_folders_globs_and_list_files(folder, tmp_path):
    assert [p.name for p in expand_paths([folder])] == ["a.mp4", "b.mkv"]  # no .txt, no hidden
    assert [p.name for p in expand_paths([str(folder / "**" / "*.mkv")])] == ["b.mkv"]
    listing = tmp_path / "list.txt"
    listing.write_text("# my videos\nvideos/a.mp4\n\nvideos/a.mp4\n")
    assert expand_paths([f"@{listing}", folder / "a.mp4"]) == [folder / "a.mp4"]  # relative to the list, once
    assert expand_paths([tmp_path / "missing.mp4"]) == [tmp_path / "missing.mp4"]  # reported per file later
    with pytest.raises(FileNotFoundError, match="matches no file"):
        expand_paths([str(tmp_path / "*.webm")])
    with pytest.raises(FileNotFoundError, match="list file"):
        expand_paths([f"@{tmp_path / 'nope.txt'}"])


def test_bad_files_are_listed_and_the_rest_scored_deterministically(folder, student):
    (folder / "broken.mp4").write_bytes((folder / "a.mp4").read_bytes()[:300])
    seen = []
    one = score_videos([folder], model=student, workers=1, progress=lambda d, t, p: seen.append((d, t)))
    two = score_videos([folder], model=student, workers=2)
    assert [r["path"] for r in one] == [str(folder / n) for n in ("a.mp4", "broken.mp4", "sub/b.mkv")]
    bad = one[1]
    assert math.isnan(bad["score"]) and bad["error"]
    assert all(math.isfinite(r["score"]) and not r["error"] for r in (one[0], one[2]))
    assert [r["score"] for r in one if not r["error"]] == [r["score"] for r in two if not r["error"]]
    assert seen[-1] == (3, 3)


def test_torch_fallback_scores_close_to_the_exported_backbone(folder, student, monkeypatch):
    fast = score_videos([folder], model=student, workers=2)
    monkeypatch.setenv("VQA_BACKBONE_RUNTIME", "torch")
    eager = score_videos([folder], model=student, workers=2)
    assert [r["score"] for r in eager] == pytest.approx([r["score"] for r in fast], abs=1e-3)


def test_cli_writes_csv_or_json_and_exit_status_says_if_any_failed(folder, student, tmp_path, capsys):
    ckpt = tmp_path / "student.pt"
    save_student(ckpt, student)
    out = tmp_path / "s.json"
    assert main(["score", str(folder), "--model", str(ckpt), "--out", str(out), "--quiet"]) == 0
    rows = json.loads(out.read_text())
    assert [r["error"] for r in rows] == ["", ""] and all(isinstance(r["score"], float) for r in rows)
    assert "2 of 2 videos scored" in capsys.readouterr().err
    (folder / "zz.mp4").write_text("nope")
    assert main(["score", str(folder), "--model", str(ckpt), "--quiet", "--format", "csv"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "path,score,error" and len(lines) == 4
    assert "zz.mp4" in captured.err and "1 failed" in captured.err


def test_anchored_scores_come_from_the_anchor_set_stored_with_the_student(student, folder, tmp_path):
    """score_0_100: the score placed among the stored anchors at their corpus percentiles."""
    import dataclasses

    import numpy as np

    from vqa.student.anchors import AnchorSet, weights_fingerprint

    rows = score_videos([folder], model=student, workers=1)
    raw = [r["score"] for r in rows]
    lo, hi = min(raw), max(raw)
    # Five synthetic anchors spread over (and beyond) the two videos' scores.
    anchor_scores = list(np.linspace(lo - 0.5 * (hi - lo) - 0.1, hi + 0.5 * (hi - lo) + 0.1, 5))
    anchors = AnchorSet(video_ids=[f"a{i}" for i in range(5)], scores=anchor_scores,
                        model_fingerprint=weights_fingerprint(student), method="test",
                        quantiles=(0.1, 0.3, 0.5, 0.7, 0.9))
    ckpt = tmp_path / "s.pt"
    save_student(ckpt, student, meta={"loss": "five_level", "anchors": dataclasses.asdict(anchors)})
    scored = score_videos([folder], model=ckpt, workers=1, anchored=True)
    values = [r["score_0_100"] for r in scored]
    assert all(10 < v < 90 for v in values)  # inside the anchors' range
    assert (values[0] < values[1]) == (raw[0] < raw[1])
    assert values == pytest.approx(list(anchors.scores_0_100(np.array(raw))), abs=1e-9)

    # Beyond the extreme anchors: towards 0 / 100, never on them, still ordered.
    narrow = dataclasses.replace(anchors, scores=tuple(np.linspace(lo + 0.4 * (hi - lo), lo + 0.6 * (hi - lo), 5)))
    save_student(ckpt, student, meta={"loss": "five_level", "anchors": dataclasses.asdict(narrow)})
    ends = [r["score_0_100"] for r in score_videos([folder], model=ckpt, workers=1, anchored=True)]
    low, high = sorted(ends)
    assert 0 < low < 10 and 90 < high < 100

    out = tmp_path / "s.csv"
    assert main(["score", str(folder), "--model", str(ckpt), "--anchored", "--out", str(out), "--quiet"]) == 0
    assert out.read_text().splitlines()[0] == "path,score,score_0_100,error"

    # Anchors whose weights do not match, or none at all: a one-line error, nothing scored.
    other = dataclasses.replace(anchors, model_fingerprint="weights:0000")
    save_student(ckpt, student, meta={"anchors": dataclasses.asdict(other)})
    with pytest.raises(ValueError, match="belongs to other weights"):
        score_videos([folder], model=ckpt, anchored=True)
    save_student(ckpt, student)
    with pytest.raises(ValueError, match="no anchor set"):
        score_videos([folder], model=ckpt, anchored=True)


def test_score_without_model_uses_the_registered_champion_and_names_it(folder, student, tmp_path, capsys,
                                                                       monkeypatch, temp_mlflow):
    """No --model: the project's champion (params.yaml mlflow section), named on stderr; a wrong
    name lists what the registry has."""
    import mlflow

    from vqa.config.params import MlflowParams
    from vqa.registry import log_and_register_student

    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    (project / "params.yaml").write_text("rounds:\n  round1:\n    after: artifacts/corpus/manifest.json\n")
    # nothing registered yet: a clear error that says what to do
    assert main(["score", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no --model given and no w2s-vqa@champion" in err and "give --model" in err

    ckpt = tmp_path / "s.pt"
    save_student(ckpt, student)
    mlflow.set_experiment("t")
    with mlflow.start_run():
        reg = log_and_register_student(ckpt, MlflowParams(), aliases=["champion", "teacher"])
    assert main(["score", str(folder), "--quiet", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert f"vqa score: model models:/w2s-vqa@champion (version {reg.version}, run {reg.run_id})" in captured.err
    rows = json.loads(captured.out)
    direct = score_videos([folder], model=student, workers=1)
    assert [r["score"] for r in rows] == pytest.approx([r["score"] for r in direct], abs=1e-5)

    assert main(["score", str(folder), "--quiet", "--model", "models:/w2s-vqa@best"]) == 2
    err = capsys.readouterr().err
    assert "models:/w2s-vqa@best: no alias 'best'" in err
    assert "it has: models:/w2s-vqa (version 1; aliases champion -> 1, teacher -> 1)" in err


@pytest.mark.parametrize("teachers", [[], ["contrast"]])
def test_teach_and_evaluate_see_a_video_as_scoring_does(folder, student, tmp_path, teachers):
    """The one-decode analysis behind teach and evaluate samples, makes views and reports bad
    files as scoring does: the same scores from its features, the same reason for a bad file."""
    from vqa.pipeline.analyse import analyse
    from vqa.scoring import scores_from_features
    from vqa.student.features import FeatureStore

    (folder / "broken.mp4").write_bytes((folder / "a.mp4").read_bytes()[:300])
    rows = score_videos([folder], model=student, workers=2)
    items = [(f"v{i}", r["path"]) for i, r in enumerate(rows)]
    cfg = student.config
    res = analyse(items, teacher_names=teachers, cache_root=tmp_path / "cache", key_rate=cfg.key_rate,
                  max_key_frames=cfg.max_key_frames, features=FeatureStore(tmp_path / "cache", student),
                  workers=2, log=lambda m: None)
    scores = scores_from_features(student, res.features)
    for (vid, path), row in zip(items, rows):
        if row["error"]:
            assert res.failures["features"][vid] == f"{path}: {row['error']}"
        else:
            assert scores[vid] == pytest.approx(row["score"], abs=1e-6)

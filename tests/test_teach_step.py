"""The teacher-inference step on a real (tiny) corpus: incremental, per-teacher faults, resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.media import make_clip
from vqa.config import load_params
from vqa.pipeline import layout, steps
from vqa.teachers import registry
from vqa.teachers.base import FrameTeacher, TeacherCard, TeacherError

TEACHERS = ["luminance", "contrast", "si", "ti"]


def _project(root: Path, teachers: list[str], n: int) -> object:
    (root / "params.yaml").write_text(yaml.safe_dump({
        "corpus": {"videos": "data/videos", "workers": 1},
        "video": {"key_rate": 1.0, "max_key_frames": 2},
        "teachers": {"homogeneous": teachers, "workers": 1},
        "fusion": {"homogeneous_pairs": 20},
        "rounds": {"round1": {"after": "artifacts/corpus/manifest.json"}},
    }))
    for i in range(n):
        make_clip(root / "data" / "videos" / f"clip{i}.mp4", frames=12, fps=6, seed=i)
    return load_params(root / "params.yaml")


def _cache_lines(key: str) -> int:
    path = layout.CACHE / "scores" / f"{key}.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_adding_two_videos_scores_only_those_two(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = _project(tmp_path, TEACHERS, 4)
    logs: list[str] = []
    steps.ingest(params, log=logs.append)
    first = steps.teach(params, "round1", log=logs.append)
    assert all(len(first["scores"][t["key"]]) == 4 for t in first["teachers"])
    keys = [t["key"] for t in first["teachers"]]
    assert [_cache_lines(k) for k in keys] == [4] * len(keys)

    for i in (4, 5):
        make_clip(tmp_path / "data" / "videos" / f"clip{i}.mp4", frames=12, fps=6, seed=i)
    steps.ingest(params, log=logs.append)
    logs.clear()
    second = steps.teach(params, "round1", log=logs.append)
    for key in keys:
        assert f"analyse: {key}: scoring 2 of 6 videos (4 cached)" in logs
        assert len(second["scores"][key]) == 6
        assert _cache_lines(key) == 6  # two new lines each, nothing re-scored
        for vid, s in first["scores"][key].items():
            assert second["scores"][key][vid] == s
    assert "analyse: decoding 2 of 6 videos (the rest are cached)" in logs


class _Flaky(FrameTeacher):
    """Fails on dark videos (clip seeds give different brightness), to test per-video faults."""

    card = TeacherCard(name="test-flaky", version="1", higher_is_better=True, score_range=None,
                       needs="key_frames", kind="homogeneous", summary="fails on some videos")
    calls = 0
    interrupt_at = None

    def score_frames(self, frames):
        type(self).calls += 1
        if type(self).interrupt_at == type(self).calls:
            raise KeyboardInterrupt  # a killed step: not caught per video
        if frames.mean() < 128.5:
            raise TeacherError("test-flaky: too dark")
        return frames.reshape(len(frames), -1).mean(1)


@pytest.fixture
def flaky(monkeypatch):
    registry.teacher_names()
    monkeypatch.setitem(registry._TEACHERS, "test-flaky", _Flaky)
    _Flaky.calls, _Flaky.interrupt_at = 0, None
    return _Flaky


def test_failures_are_per_teacher_and_video_and_fusion_skips_them(tmp_path, monkeypatch, flaky):
    monkeypatch.chdir(tmp_path)
    params = _project(tmp_path, ["luminance", "test-flaky"], 6)
    steps.ingest(params, log=print)
    table = steps.teach(params, "round1", log=print)
    failed = table["failures"]["test-flaky@1"]
    scored = table["scores"]["test-flaky@1"]
    assert failed and scored, "the fixture must make some videos fail and some pass"
    assert set(failed) | set(scored) == set(table["scores"]["luminance@v1"])
    assert all(r == "test-flaky: too dark" for r in failed.values())
    assert not table["failures"]["luminance@v1"]
    steps.fuse(params, "round1", log=print)
    pairs = layout.pairs("round1").read_text().splitlines()
    assert len(pairs) > 1  # videos without a flaky score still pair on the other teacher
    # A failure is cached like a score: a re-run does not retry it.
    flaky.calls = 0
    steps.teach(params, "round1", log=print)
    assert flaky.calls == 0


def test_a_killed_step_resumes_without_redoing_finished_videos(tmp_path, monkeypatch, flaky):
    monkeypatch.chdir(tmp_path)
    params = _project(tmp_path, ["test-flaky"], 5)
    steps.ingest(params, log=print)
    flaky.interrupt_at = 3
    with pytest.raises(KeyboardInterrupt):
        steps.teach(params, "round1", log=print)
    assert _cache_lines("test-flaky@1") == 2
    assert not layout.teacher_scores("round1").exists()  # no half-written table
    flaky.calls, flaky.interrupt_at = 0, None
    logs: list[str] = []
    table = steps.teach(params, "round1", log=logs.append)
    assert flaky.calls == 3
    assert "analyse: test-flaky@1: scoring 3 of 5 videos (2 cached)" in logs
    assert len(table["scores"]["test-flaky@1"]) + len(table["failures"]["test-flaky@1"]) == 5


def test_bumping_one_teacher_version_rescores_only_it(tmp_path, monkeypatch, flaky):
    monkeypatch.chdir(tmp_path)
    params = _project(tmp_path, ["luminance", "test-flaky"], 3)
    steps.ingest(params, log=print)
    steps.teach(params, "round1", log=print)
    import dataclasses

    monkeypatch.setattr(_Flaky, "card", dataclasses.replace(_Flaky.card, version="2"))
    logs: list[str] = []
    table = steps.teach(params, "round1", log=logs.append)
    assert "analyse: luminance@v1: scoring 0 of 3 videos (3 cached)" in logs
    assert "analyse: test-flaky@2: scoring 3 of 3 videos (0 cached)" in logs
    assert "test-flaky@2" in table["scores"] and "test-flaky@1" not in table["scores"]


def test_unknown_teacher_in_params_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = _project(tmp_path, ["luminanse"], 1)
    steps.ingest(params, log=print)
    with pytest.raises(ValueError, match=r"teachers.homogeneous: unknown teacher 'luminanse'; did you mean luminance"):
        steps.teach(params, "round1", log=print)


def test_exported_model_from_params_runs_in_worker_processes(tmp_path, monkeypatch):
    """teachers.external: a TorchScript clip model + spec joins the step, scored by 2 workers."""
    import torch

    class LastMinusFirst(torch.nn.Module):  # [B,3,T,H,W] -> [B]: mean brightness change over the clip
        def forward(self, x):
            return (x[:, :, -1] - x[:, :, 0]).mean(dim=(1, 2, 3))

    monkeypatch.chdir(tmp_path)
    (tmp_path / "teachers").mkdir()
    torch.jit.script(LastMinusFirst()).save(str(tmp_path / "teachers" / "motion.pt"))
    (tmp_path / "teachers" / "motion.yaml").write_text(yaml.safe_dump({
        "name": "motion-ts", "version": "1", "model": "motion.pt", "higher_is_better": False,
        "input": {"frames": 3, "size": [32, 32], "resize": "stretch", "layout": "NCTHW",
                  "scale": 255, "mean": [0, 0, 0], "std": [1, 1, 1], "batch": 4},
    }))
    params = _project(tmp_path, ["luminance"], 4)
    params = params.model_copy(update={"teachers": params.teachers.model_copy(
        update={"external": ["teachers/motion.yaml"], "workers": 2})})
    steps.ingest(params, log=print)
    table = steps.teach(params, "round1", log=print)
    ext = next(t for t in table["teachers"] if t["name"] == "motion-ts")
    assert ext["origin"] == "teachers/motion.yaml" and ext["needs"] == "clips" and not ext["higher_is_better"]
    scores = table["scores"][ext["key"]]
    assert len(scores) == 4 and all(np.isfinite(list(scores.values())))
    assert len(set(scores.values())) > 1  # the clips differ, so do the scores

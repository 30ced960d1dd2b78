"""Small videos: every teacher and the student score any video from 32x32 up, and each teacher's
card says what it does with frames below its analysis window."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.media import clip_frames, make_clip
from vqa.cli import main
from vqa.teachers import create_teacher, teacher_cards, teacher_names
from vqa.teachers.base import ClipTeacher, upscale_short_side


def _decoded(w: int, h: int, t: int = 2, length: int = 8):
    frames = np.stack(clip_frames(t * length, (w, h), seed=3))
    clips = frames.reshape(t, length, h, w, 3)
    return np.ascontiguousarray(clips[:, 0]), clips


@pytest.mark.parametrize("size", [(32, 32), (48, 32), (288, 160)])
def test_every_built_in_teacher_scores_small_frames(size):
    keys, clips = _decoded(*size)
    for name in teacher_names():
        teacher = create_teacher(name)
        if teacher.card.origin != "built-in":
            continue
        out = teacher.score_decoded(keys, clips[:, : getattr(teacher, "clip_len", 8)]
                                    if isinstance(teacher, ClipTeacher) else None, "x.mp4")
        assert np.isfinite(out["score"]), name


def test_cards_say_what_happens_to_small_frames():
    built_in = [c for c in teacher_cards() if c.kind == "homogeneous" and c.origin == "built-in"]
    assert len(built_in) >= 12 and all(c.small_frames for c in built_in)
    niqe = next(c for c in built_in if c.name == "niqe")
    assert "upscaled" in niqe.small_frames and "194" in niqe.small_frames


def test_upscale_keeps_aspect_and_leaves_large_frames_alone():
    frames = np.stack(clip_frames(2, (288, 160), seed=1))
    up = upscale_short_side(frames, 194)
    assert up.shape == (2, 194, 349, 3) and up.dtype == np.uint8
    assert upscale_short_side(frames, 160) is frames
    clips = upscale_short_side(frames[None], 194)
    assert clips.shape == (1, 2, 194, 349, 3)


def test_evaluate_niqe_scores_every_288x160_clip(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = ["file,mos"]
    for i in range(5):
        make_clip(tmp_path / "b" / f"c{i}.mp4", frames=12, fps=6, seed=i, size=(288, 160))
        rows.append(f"c{i}.mp4,{1 + 0.5 * i}")
    (tmp_path / "b" / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "e.json"
    assert main(["evaluate", "--teacher", "niqe", "--benchmark", str(tmp_path / "b" / "labels.csv"),
                 "--boot", "20", "--workers", "1", "--out", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    assert result["scored"] == 5 and result["failed"] == {}

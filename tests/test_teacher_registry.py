"""The teacher registry: built-ins, entry-point plug-ins, did-you-mean, the CLI listing."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

from vqa.teachers import registry
from vqa.teachers.base import ClipTeacher, FrameTeacher, TeacherCard, TeacherError


@pytest.fixture
def fresh_registry(monkeypatch):
    """An empty registry that reloads built-ins and entry points on first use."""
    monkeypatch.setattr(registry, "_TEACHERS", {})
    monkeypatch.setattr(registry, "_BROKEN", {})
    monkeypatch.setattr(registry, "_SPECS", {})
    monkeypatch.setattr(registry, "_LOADED", False)
    return registry


def _plugin(tmp_path, body: str, entry: str, module: str):
    """A fake installed distribution exposing `entry` in the w2s_vqa.teachers group."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    info = tmp_path / "fakeplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[w2s_vqa.teachers]\n{entry}\n")


def test_builtins_cover_the_issue(fresh_registry):
    cards = fresh_registry.teacher_cards()
    homo = [c for c in cards if c.kind == "homogeneous"]
    sims = [c for c in cards if c.kind == "heterogeneous"]
    names = {c.name for c in homo}
    assert {"niqe", "brisque", "viideo", "blockiness", "blur", "contrast", "noise", "flicker", "colourfulness",
            "luminance", "si", "ti"} <= names
    assert len(homo) >= 12
    assert {c.name for c in sims} == {"resize", "blur", "noise", "darken", "brighten", "jitter", "stutter", "h264", "h265"}
    for c in cards:
        assert c.needs in ("key_frames", "clips", "file") and isinstance(c.higher_is_better, bool)
    assert len({c.key for c in homo}) == len(homo)


def test_unknown_name_suggests_the_closest(fresh_registry):
    with pytest.raises(KeyError, match="did you mean niqe"):
        fresh_registry.create_teacher("nique")


def test_entry_point_plugin_registers_and_scores(fresh_registry, tmp_path, monkeypatch):
    _plugin(tmp_path, """
        import numpy as np
        from vqa.teachers.base import FrameTeacher, TeacherCard

        class FakeTeacher(FrameTeacher):
            card = TeacherCard(name="fake-mean", version="1", higher_is_better=True, score_range=(0, 255),
                               needs="key_frames", kind="homogeneous", summary="mean pixel")

            def score_frames(self, frames):
                return frames.reshape(len(frames), -1).mean(1)
        """, "fake-mean = fakeplug_mod:FakeTeacher", "fakeplug_mod")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "fake-mean" in fresh_registry.teacher_names()
    t = fresh_registry.create_teacher("fake-mean")
    assert t.card.origin == "fakeplug_mod:FakeTeacher"
    frames = np.full((3, 8, 8, 3), 10, np.uint8)
    assert t.score_decoded(frames, None, "x.mp4")["score"] == pytest.approx(10.0)


def test_broken_plugin_is_reported_not_fatal(fresh_registry, tmp_path, monkeypatch):
    _plugin(tmp_path, "raise ImportError('missing dependency torchvision')\n", "broken = brokenplug_mod:Nothing", "brokenplug_mod")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "niqe" in fresh_registry.teacher_names()
    assert "torchvision" in fresh_registry.broken_plugins()["broken"]
    with pytest.raises(KeyError, match="plug-in failed to load"):
        fresh_registry.create_teacher("broken")


def test_name_clash_and_bad_class_are_refused(fresh_registry):
    class Other(FrameTeacher):
        card = TeacherCard(name="niqe", version="9", higher_is_better=True, score_range=None,
                           needs="key_frames", kind="homogeneous", summary="impostor")

    fresh_registry.teacher_names()
    with pytest.raises(ValueError, match="taken"):
        fresh_registry.register_teacher(Other)
    with pytest.raises(TypeError):
        fresh_registry.register_teacher(object)


def test_card_validation():
    with pytest.raises(ValueError, match="needs"):
        TeacherCard(name="x", version="1", higher_is_better=True, score_range=None, needs="frames",
                    kind="homogeneous", summary="")
    with pytest.raises(ValueError, match="name"):
        TeacherCard(name="a@b", version="1", higher_is_better=True, score_range=None, needs="clips",
                    kind="homogeneous", summary="")


def test_clip_teacher_checks_clip_length():
    class Diff(ClipTeacher):
        card = TeacherCard(name="diff", version="1", higher_is_better=False, score_range=None, needs="clips",
                           kind="homogeneous", summary="")
        clip_len = 3

        def score_clips(self, clips):
            return np.abs(np.diff(clips.astype(float), axis=1)).mean(axis=(1, 2, 3, 4))

    clips = np.zeros((2, 2, 4, 4, 3), np.uint8)
    with pytest.raises(TeacherError, match="3 frames"):
        Diff().score_decoded(clips[:, 0], clips, "x")
    clips = np.zeros((2, 5, 4, 4, 3), np.uint8)
    clips[:, 1] = 6
    res = Diff().score_decoded(clips[:, 0], clips, "x")  # uses the first 3 frames only
    assert res["score"] == pytest.approx(6.0) and len(res["clips"]) == 2  # 5 frames would give 3.0


def test_cli_lists_everything(capsys, tmp_path, monkeypatch):
    from vqa.cli import main

    monkeypatch.chdir(tmp_path)  # no params.yaml here: built-ins only
    assert main(["teachers", "list"]) == 0
    out = capsys.readouterr().out
    assert "brisque" in out and "h265" in out and "lower=better" in out
    assert "simulator types" in out.splitlines()[-1]
    assert main(["teachers", "list", "--json"]) == 0
    import json

    cards = json.loads(capsys.readouterr().out)
    assert sum(c["kind"] == "homogeneous" for c in cards) >= 12

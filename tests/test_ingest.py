import json
import os
import shutil

import pytest

from tests.media import make_audio, make_clip
from vqa.corpus import VIDEO_EXTENSIONS, IngestReport, ingest, load_manifest, resolve
from vqa.io import sha256_file


@pytest.fixture(scope="module")
def masters(tmp_path_factory):
    """Four distinct tiny clips, made once and copied into each test's folder."""
    d = tmp_path_factory.mktemp("masters")
    return [make_clip(d / f"m{i}.mp4", frames=10, fps=10, size=(32, 24), seed=i) for i in range(4)]


def _corpus(tmp_path, masters):
    src = tmp_path / "videos"
    (src / "sub").mkdir(parents=True)
    shutil.copy(masters[0], src / "a.mp4")
    shutil.copy(masters[1], src / "sub" / "b.MOV")  # extensions are case-insensitive
    shutil.copy(masters[0], src / "sub" / "a_copy.mp4")  # byte-identical to a.mp4
    (src / "notes.mp4").write_text("not a video\n")  # a text file renamed .mp4
    data = masters[2].read_bytes()
    (src / "cut.mp4").write_bytes(data[: len(data) // 2])
    (src / "readme.txt").write_text("ignored: not a video extension\n")
    (src / ".hidden.mp4").write_bytes(masters[3].read_bytes())  # hidden: skipped
    (src / ".cache").mkdir()
    shutil.copy(masters[3], src / ".cache" / "x.mp4")  # in a hidden dir: skipped
    return src


def _run(src, tmp_path, workers=1):
    lines = []
    rep = ingest(src, tmp_path / "manifest.json", tmp_path / "quarantine.json", workers=workers, log=lines.append)
    return rep, json.loads((tmp_path / "manifest.json").read_text()), json.loads((tmp_path / "quarantine.json").read_text()), lines


def test_ingest_manifest_and_quarantine(tmp_path, masters):
    src = _corpus(tmp_path, masters)
    rep, man, quar, lines = _run(src, tmp_path)
    assert rep == IngestReport(added=2, reused=0, duplicates=1, quarantined=2, total=2, probed=4)
    assert man["root"] == src.as_posix()
    paths = [v["path"] for v in man["videos"]]
    assert paths == ["a.mp4", "sub/b.MOV"]
    a, b = man["videos"]
    assert a["id"] == sha256_file(src / "a.mp4") and b["id"] == sha256_file(src / "sub" / "b.MOV")
    assert a["aliases"] == ["sub/a_copy.mp4"] and b["aliases"] == []
    assert (a["codec"], a["width"], a["height"], a["frame_count"], a["rotation"]) == ("h264", 32, 24, 10, 0)
    assert a["size_bytes"] == (src / "a.mp4").stat().st_size
    # nothing machine-specific in the DVC outputs: the stat index holds the mtimes
    assert "mtime_ns" not in json.dumps([man, quar])
    index = json.loads((tmp_path / "manifest.stat.json").read_text())
    assert index["files"]["a.mp4"] == [a["size_bytes"], (src / "a.mp4").stat().st_mtime_ns, a["id"], None]
    q = {r["path"]: r for r in quar["videos"]}
    assert list(q) == ["cut.mp4", "notes.mp4"]
    assert q["notes.mp4"]["id"] == sha256_file(src / "notes.mp4")
    assert all(r["reason"] for r in q.values())
    assert lines[-1] == "ingest: 2 videos (2 new, 0 unchanged, 1 duplicates), 2 quarantined, probed 4 files"
    assert load_manifest(tmp_path / "manifest.json") == man["videos"]


def test_incremental(tmp_path, masters):
    src = _corpus(tmp_path, masters)
    _run(src, tmp_path)
    rep, man, quar, _ = _run(src, tmp_path)  # nothing changed: nothing probed
    assert (rep.probed, rep.added, rep.reused, rep.quarantined) == (0, 0, 2, 2)
    shutil.copy(masters[2], src / "sub" / "c.mkv")
    shutil.copy(masters[3], src / "d.webm")
    rep, man2, _, _ = _run(src, tmp_path)
    assert rep.probed == 2 and rep.added == 2 and rep.total == 4
    assert [v["path"] for v in man2["videos"]] == ["a.mp4", "d.webm", "sub/b.MOV", "sub/c.mkv"]
    # a changed file is hashed again (mtime differs) but its known content is not re-probed
    os.utime(src / "a.mp4", ns=(1, 1))
    rep, man3, _, _ = _run(src, tmp_path)
    assert rep.probed == 0 and man3 == man2
    assert json.loads((tmp_path / "manifest.stat.json").read_text())["files"]["a.mp4"][1] == 1
    # removal drops the entry; removing the primary path promotes its alias
    (src / "sub" / "c.mkv").unlink()
    (src / "a.mp4").unlink()
    rep, man4, _, _ = _run(src, tmp_path)
    assert [v["path"] for v in man4["videos"]] == ["d.webm", "sub/a_copy.mp4", "sub/b.MOV"]
    assert man4["videos"][1]["aliases"] == [] and rep.duplicates == 0 and rep.probed == 0
    # a fixed file leaves the quarantine
    shutil.copy(masters[2], src / "cut.mp4")
    rep, man5, quar5, _ = _run(src, tmp_path)
    assert [r["path"] for r in quar5["videos"]] == ["notes.mp4"] and "cut.mp4" in [v["path"] for v in man5["videos"]]


def test_workers_give_identical_files(tmp_path, masters):
    src = _corpus(tmp_path, masters)
    make_audio(src / "sound.mp4")  # audio-only: quarantined, no video stream
    out1, out2 = tmp_path / "w1", tmp_path / "w2"
    r1 = ingest(src, out1 / "m.json", out1 / "q.json", workers=1, log=lambda m: None)
    r2 = ingest(src, out2 / "m.json", out2 / "q.json", workers=2, log=lambda m: None)
    assert r1 == r2
    assert (out1 / "m.json").read_bytes() == (out2 / "m.json").read_bytes()
    assert (out1 / "q.json").read_bytes() == (out2 / "q.json").read_bytes()
    q = json.loads((out1 / "q.json").read_text())["videos"]
    assert "no video stream" in next(r["reason"] for r in q if r["path"] == "sound.mp4")


def test_resolve_and_errors(tmp_path, masters, monkeypatch):
    src = _corpus(tmp_path, masters)
    monkeypatch.chdir(tmp_path)
    ingest("videos", "m.json", "q.json", workers=1, log=lambda m: None)
    pairs = resolve("m.json")
    assert [p for _, p in pairs] == [src / "a.mp4", src / "sub" / "b.MOV"]
    assert all(p.is_absolute() and p.exists() for _, p in pairs)
    with pytest.raises(ValueError, match="nowhere: not a directory"):
        ingest("nowhere", "m.json", "q.json", log=lambda m: None)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_manifest("missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="bad.json: malformed manifest"):
        load_manifest("bad.json")
    (tmp_path / "bad2.json").write_text('{"videos": 3}')
    with pytest.raises(ValueError, match="bad2.json"):
        resolve("bad2.json")


def test_extensions():
    assert {".mp4", ".mov", ".mkv", ".webm", ".avi", ".y4m"} <= VIDEO_EXTENSIONS


def test_clean_clips_with_a_stale_frame_count_and_animations_are_ingested(tmp_path):
    """AVIs trimmed by stream copy keep their old frame count; they decode cleanly and belong in
    the manifest. Animated GIF and WebP are videos; a cut AVI is still quarantined as truncated."""
    from PIL import Image

    from tests.media import clip_frames
    from tests.test_video import _stale_avi

    src = tmp_path / "videos"
    src.mkdir()
    avi = _stale_avi(src / "trimmed.avi", frames=90)
    (src / "cut.avi").write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    frames = [Image.fromarray(a) for a in clip_frames(12, (64, 48), 2)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(src / "anim.webp", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    rep, man, quar, _ = _run(src, tmp_path)
    assert [v["path"] for v in man["videos"]] == ["anim.gif", "anim.webp", "trimmed.avi"]
    assert man["videos"][2]["frame_count"] == 90
    assert [(q["path"], q["reason"].split(":")[0]) for q in quar["videos"]] == [("cut.avi", "truncated")]

"""Every video gets a score or a clear, named reason, never a crash of the batch (issue 15).

One folder holds the whole matrix of bad and unusual inputs, made here with PyAV and Pillow; one
`score_videos` call scores it. Memory is bounded: an 8K clip is scored in a fresh process whose
peak resident memory is measured.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.media import clip_frames, make_audio, make_clip, make_long_clip
from vqa.scoring import score_videos
from vqa.student.checkpoint import save_student


pytestmark = pytest.mark.usefixtures("backbone_cache")


@pytest.fixture
def student(tiny_student):
    return tiny_student


def _encode(path: Path, frames, *, fps=10, pix_fmt="yuv420p", options=None, pts=None, time_base=None,
            codec="libx264") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(fps), options={"threads": "1", **(options or {})})
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if pts is not None:
                f.pts, f.time_base = pts[i], time_base
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


# name -> None (scored) or a piece of the reason it must give
EXPECTED = {
    "empty.mp4": "empty file",
    "truncated mid-GOP.mkv": "truncated",
    "random bytes.mp4": "not a readable media file",
    "audio_only.mp4": "no video stream",
    "single_frame.mp4": None,
    "damaged packets.mp4": None,
    "variable frame rate.mkv": None,
    "rotated 90.mp4": None,
    "portrait.mp4": None,
    "interlaced.mp4": None,
    "hdr10 yuv420p10le.mkv": None,
    "two hours.mp4": None,
    "tiny 32x32.mp4": None,
    "animated.gif": None,
    "animated.webp": None,
    "ünïcødé clip 名前 with spaces.mp4": None,
    "zz deleted while running.mp4": "no such file",
}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("matrix")
    (d / "empty.mp4").write_bytes(b"")
    whole = make_clip(d / "full.mkv", frames=100, fps=10)
    data = whole.read_bytes()
    (d / "truncated mid-GOP.mkv").write_bytes(data[: len(data) // 2])
    whole.unlink()
    (d / "random bytes.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    make_audio(d / "audio_only.mp4")
    make_clip(d / "single_frame.mp4", frames=1)
    ok = make_clip(d / "ok.mp4", frames=60, fps=10, seed=4)
    raw = bytearray(ok.read_bytes())
    for i in range(int(len(raw) * 0.4), int(len(raw) * 0.6), 97):
        raw[i] ^= 0xFF
    (d / "damaged packets.mp4").write_bytes(bytes(raw))
    ok.unlink()
    gaps = np.cumsum([0, 1, 1, 5, 1, 9, 1, 1, 20, 2, 1, 3, 7, 1, 1, 30, 1, 1, 2, 4])  # ms/10 steps
    _encode(d / "variable frame rate.mkv", clip_frames(len(gaps), (64, 48), 5), pts=list(gaps * 10),
            time_base=Fraction(1, 100))
    make_clip(d / "rotated 90.mp4", frames=20, rotation=90)
    make_clip(d / "portrait.mp4", frames=20, size=(48, 80))
    _encode(d / "interlaced.mp4", clip_frames(20, (64, 48), 6), options={"x264-params": "interlaced=1:tff=1"})
    _encode(d / "hdr10 yuv420p10le.mkv", clip_frames(20, (64, 48), 7), pix_fmt="yuv420p10le",
            options={"x264-params": "colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc"})
    make_long_clip(d / "two hours.mp4")
    make_clip(d / "tiny 32x32.mp4", frames=20, size=(32, 32))
    frames = [Image.fromarray(a) for a in clip_frames(15, (64, 48), 8)]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(d / "animated.webp", save_all=True, append_images=frames[1:], duration=100)
    make_clip(d / "ünïcødé clip 名前 with spaces.mp4", frames=20)
    make_clip(d / "zz deleted while running.mp4", frames=20)
    os.symlink(d, d / "loop")  # a directory symlink loop
    assert sorted(p.name for p in d.iterdir() if p.is_file()) == sorted(EXPECTED)
    return d


def test_every_file_gets_a_score_or_a_named_reason(matrix, student):
    deleted = matrix / "zz deleted while running.mp4"
    backup = deleted.read_bytes()

    def progress(done, total, path):
        if done == 1:  # the batch is running: a later file goes away
            deleted.unlink()

    try:
        rows = score_videos([matrix], model=student, workers=2, progress=progress)
    finally:
        deleted.write_bytes(backup)
    by_name = {Path(r["path"]).name: r for r in rows}
    assert sorted(by_name) == sorted(EXPECTED)  # each file once: the symlink loop is not followed
    for name, reason in EXPECTED.items():
        row = by_name[name]
        if reason is None:
            assert math.isfinite(row["score"]) and row["error"] == "", (name, row["error"])
        else:
            assert math.isnan(row["score"]) and reason in row["error"], (name, row["error"])


def test_an_8k_clip_is_scored_in_bounded_memory(tmp_path, student):
    """Key frames become views as they are decoded: an 8K frame is never kept, so a fresh
    process scores it well under 1.5 GB."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from vqa.bench.score import _score_alone

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (4320 // 16, 7680 // 16, 3), dtype=np.uint8).repeat(16, 0).repeat(16, 1)
    clip = _encode(tmp_path / "8k.mp4", [np.roll(base, 8 * i, axis=1) for i in range(3)], fps=1,
                   options={"preset": "ultrafast"})
    ckpt = tmp_path / "s.pt"
    save_student(ckpt, student)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        seconds, peak_mb = pool.submit(_score_alone, (str(ckpt), str(clip))).result()
    assert peak_mb < 1536, f"8K clip: peak resident memory {peak_mb:.0f} MB"


def test_two_score_processes_sharing_one_cache_agree_with_one(tmp_path, student):
    """Both export the backbone into the same empty cache at once; their scores equal a lone run's."""
    for i in range(3):
        make_clip(tmp_path / "v" / f"c{i}.mp4", frames=20, seed=i)
    ckpt = tmp_path / "s.pt"
    save_student(ckpt, student)
    env = {**os.environ, "VQA_CACHE_DIR": str(tmp_path / "shared-cache")}
    cmd = [sys.executable, "-m", "vqa.cli", "score", str(tmp_path / "v"), "--model", str(ckpt), "--quiet",
           "--workers", "1"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    alone = subprocess.run(cmd, env={**env, "VQA_CACHE_DIR": str(tmp_path / "own-cache")}, capture_output=True,
                           text=True, timeout=300, check=True).stdout
    assert outs[0][0] == outs[1][0] == alone
    assert len(alone.splitlines()) == 4

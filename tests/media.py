"""Tiny synthetic media files for tests (made with PyAV, no fixtures on disk)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def clip_frames(frames: int = 30, size: tuple[int, int] = (64, 48), seed: int = 0) -> list[np.ndarray]:
    """RGB frames [H, W, 3] uint8: seeded texture drifting right plus a bright moving square."""
    w, h = size
    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 256, size=(h, w + frames, 3), dtype=np.uint8)
    out = []
    for i in range(frames):
        img = tex[:, i : i + w].copy()
        x, y = (3 * i) % max(w - 8, 1), (2 * i) % max(h - 8, 1)
        img[y : y + 8, x : x + 8] = 255
        out.append(img)
    return out


def make_clip(
    path,
    *,
    frames: int = 30,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
    codec: str = "libx264",
    rotation: int | None = None,
) -> Path:
    """Encode a synthetic clip (crf 23, yuv420p). ``rotation``: clockwise display rotation in
    degrees (like a phone's ``rotate`` tag: 90 = stored landscape, shown portrait), stored as
    the stream's display matrix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(fps), options={"crf": "23", "threads": "1"})
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        if rotation:
            s.set_display_rotation(-rotation)  # PyAV counts counter-clockwise
        for img in clip_frames(frames, size, seed):
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))
    return path


def make_audio(path, *, seconds: float = 0.5, rate: int = 8000, codec: str = "aac") -> Path:
    """An audio-only file (a sine tone)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate, layout="mono")
        n = int(seconds * rate)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)
        fmt = "fltp" if codec == "aac" else "s16"
        step = 1024
        for i in range(0, n, step):
            chunk = tone[None, i : i + step]
            if fmt == "s16":
                chunk = (chunk * 32767).astype(np.int16)
            f = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
            f.sample_rate, f.pts = rate, i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def make_long_clip(path, *, seconds: int = 7200, fps: int = 1, size: tuple[int, int] = (64, 48), gop: int = 30,
                   container: str | None = None) -> Path:
    """A long, cheap clip (default 2 hours at 1 fps, a key frame every ``gop`` frames): each frame
    is a flat grey level that changes with time plus a moving square, so every instant differs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w", format=container) as c:
        s = c.add_stream("libx264", rate=Fraction(fps),
                         options={"preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "threads": "1"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        img = np.empty((h, w, 3), dtype=np.uint8)
        for i in range(seconds * fps):
            img[:] = (i * 7) % 200 + 20
            x = (i * 3) % (w - 8)
            img[: 8, x : x + 8] = 255
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))
    return path

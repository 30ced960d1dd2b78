"""Deterministic video encoding with PyAV.

Same frames + same settings -> byte-identical file (on one FFmpeg/x264 build): encoders run
single-threaded (threaded x264/x265 rate control depends on thread timing), timestamps come
from a fixed frame counter, and the muxer runs with ``fflags=+bitexact`` (no random
Matroska UIDs, no wall-clock or version tags). Files are written to
a temporary name in the destination folder and renamed, so readers never see half a video.
"""
from __future__ import annotations

import math
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import av
import numpy as np

__all__ = ["write_video", "reencode", "video_fps", "read_frames", "MAX_CRF"]

# Highest CRF each encoder accepts for 8-bit video; larger requests are clamped (x264 clamps
# silently as well, so e.g. CRF 63 encodes like CRF 51).
MAX_CRF = {"libx264": 51, "libx264rgb": 51, "libx265": 51, "libvpx-vp9": 63, "libvpx": 63}

_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}


def _fps_fraction(fps: float | Fraction) -> Fraction:
    if isinstance(fps, Fraction):
        out = fps
    else:
        # 1001 covers NTSC rates (30000/1001) and thirds (25/3) exactly.
        out = Fraction(fps).limit_denominator(1001)
    if out <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return out


def _codec_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    crf = int(min(max(int(crf), 0), MAX_CRF.get(codec, 63)))
    if codec in ("libx264", "libx264rgb"):
        # mbtree off: with it, even single-threaded x264 output varied with heap contents
        # (measured: 2-5 different files in 10 identical encodes); B-frames stay on.
        return {"crf": str(crf), "preset": preset, "threads": "1", "x264-params": "mbtree=0"}
    if codec == "libx265":
        return {
            "crf": str(crf),
            "preset": preset,
            "x265-params": "pools=none:frame-threads=1:log-level=error",
        }
    if codec in ("libvpx-vp9", "libvpx"):
        # presets do not exist for libvpx; "good" deadline with a fixed speed is deterministic
        return {"crf": str(crf), "b": "0", "threads": "1", "row-mt": "0", "deadline": "good", "cpu-used": "4"}
    return {"threads": "1"}


class _Writer:
    """Encoder + muxer writing to a temp file that is renamed over ``path`` on success."""

    def __init__(self, path, *, fps, codec, crf, preset, pix_fmt, metadata):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fmt = _FORMATS.get(self.path.suffix.lower())
        if self.fmt is None:
            raise ValueError(f"unsupported container extension: {self.path.suffix!r}")
        self.rate = _fps_fraction(fps)
        self.codec, self.crf, self.preset, self.pix_fmt = codec, crf, preset, pix_fmt
        self.metadata = dict(metadata or {})
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.container = None
        self.stream = None
        self.n = 0

    def _open(self, width: int, height: int) -> None:
        # bitexact: no random Matroska segment UID and no library-version tags in the file
        self.container = av.open(self.tmp, "w", format=self.fmt, options={"fflags": "+bitexact"})
        for k, v in self.metadata.items():
            self.container.metadata[str(k)] = str(v)
        stream = self.container.add_stream(
            self.codec, rate=self.rate, options=_codec_options(self.codec, self.crf, self.preset)
        )
        stream.width, stream.height, stream.pix_fmt = width, height, self.pix_fmt
        stream.codec_context.time_base = 1 / self.rate
        stream.codec_context.thread_count = 1
        self.stream = stream

    def add(self, frame: av.VideoFrame) -> None:
        if self.stream is None:
            self._open(frame.width, frame.height)
        elif (frame.width, frame.height) != (self.stream.width, self.stream.height):
            raise ValueError(
                f"frame {self.n} is {frame.width}x{frame.height}, "
                f"expected {self.stream.width}x{self.stream.height}"
            )
        if frame.format.name != self.pix_fmt:
            frame = frame.reformat(format=self.pix_fmt, threads=1)
        frame.pts = self.n
        frame.time_base = 1 / self.rate
        frame.pict_type = 0  # NONE: a decoded frame's I/P/B type would force the encoder's choice
        self.container.mux(self.stream.encode(frame))
        self.n += 1

    def finish(self) -> None:
        if self.n == 0:
            raise ValueError("no frames to encode")
        self.container.mux(self.stream.encode(None))
        self.container.close()
        self.container = None
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            if self.container is not None:
                self.container.close()
        except Exception:  # the original error matters, not the cleanup one
            pass
        Path(self.tmp).unlink(missing_ok=True)


def _even_rgb(frame: np.ndarray) -> np.ndarray:
    """uint8 RGB with even width/height (the last odd row/column is cropped: yuv420p needs even)."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected RGB frames [H, W, 3], got shape {frame.shape}")
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating):
            frame = np.rint(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)
        else:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
    h, w = frame.shape[:2]
    if h < 2 or w < 2:
        raise ValueError(f"frame too small: {w}x{h}")
    return np.ascontiguousarray(frame[: h - h % 2, : w - w % 2])


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    *,
    fps: float | Fraction,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = "medium",
    pix_fmt: str = "yuv420p",
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Encode RGB frames ([H, W, 3] uint8, or float in [0, 1]) to ``path`` atomically.

    Odd widths/heights are cropped by one pixel. ``metadata`` goes into the container tags
    (e.g. ``{"comment": ...}``; the demo corpus stores its clip-spec hash there).
    """
    w = _Writer(path, fps=fps, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, metadata=metadata)
    try:
        for arr in frames:
            w.add(av.VideoFrame.from_ndarray(_even_rgb(arr), format="rgb24"))
        w.finish()
    except BaseException:
        w.abort()
        raise


def video_fps(path: str | os.PathLike) -> Fraction:
    """Nominal frame rate of the first video stream (average rate, else guessed, else 25)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate or s.base_rate
        return Fraction(rate) if rate else Fraction(25)


def read_frames(path: str | os.PathLike, *, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Decode frames ``start``..``stop``-1 of the first video stream as RGB uint8 arrays."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        for i, frame in enumerate(c.decode(s)):
            if stop is not None and i >= stop:
                break
            if i >= start:
                yield frame.to_ndarray(format="rgb24")


def _fit(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Size after shrinking so the longer side is <= max_side, rounded down to even numbers."""
    if max_side and max(width, height) > max_side:
        s = max_side / max(width, height)
        width, height = round(width * s), round(height * s)
    return max(2, width - width % 2), max(2, height - height % 2)


def reencode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    codec: str = "libx264",
    crf: int,
    preset: str = "medium",
    max_side: int | None = None,
    max_seconds: float | None = None,
    pix_fmt: str = "yuv420p",
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Decode ``src`` and encode it again to ``dst`` at the same nominal frame rate.

    Frames stay in YUV (no RGB round trip) and are retimed to a constant rate; ``max_side``
    shrinks (area filter) so that the longer side fits; ``max_seconds`` keeps the frames of the
    first that many seconds (at the nominal rate). For libx264, CRF above 51 is clamped
    to 51, so e.g. levels 24/36/48/63 give strictly decreasing quality with 63 == 51.
    ``metadata``: container tags, as in ``write_video``.
    """
    rate = video_fps(src)
    w = _Writer(dst, fps=rate, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, metadata=metadata)
    try:
        with av.open(str(src)) as c:
            s = c.streams.video[0]
            s.codec_context.thread_count = 1
            size = None
            limit = None if max_seconds is None else max(1, int(math.ceil(max_seconds * rate)))
            for index, frame in enumerate(c.decode(s)):
                if limit is not None and index >= limit:
                    break
                if size is None:
                    size = _fit(frame.width, frame.height, max_side)
                if (frame.width, frame.height) != size or frame.format.name != pix_fmt:
                    frame = frame.reformat(
                        width=size[0], height=size[1], format=pix_fmt, interpolation="AREA", threads=1
                    )
                w.add(frame)
        w.finish()
    except BaseException:
        w.abort()
        raise

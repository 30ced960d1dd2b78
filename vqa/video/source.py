"""Where decoded frames come from: FFmpeg through PyAV (every container and codec it has), or
Pillow for WebP (FFmpeg decodes still WebP but not animated WebP). Both give ``av.VideoFrame``
objects with timestamps, so sampling and conversion do not care which.

The FFmpeg source is tolerant the way a player is: a damaged packet is skipped (counted in
``damaged``) and decoding goes on; a demuxer error ends the data there, and whoever reads the
frames decides from the timestamps whether the file is truncated. It can also jump ahead
(:meth:`AVSource.seek`) to the key frame before a far instant, so a long video costs what its
samples cost, not its length.
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Iterator

import av
import numpy as np

from vqa.video.errors import VideoCorrupt, VideoEmpty
from vqa.video.probe import _AV_ERRORS, _Meta, _check_file, _meta, _open, _reason, check_size, is_webp

# Containers whose index makes a seek land on the key frame before the target (others, e.g.
# MPEG-TS, seek by bytes and can land anywhere: they are read straight through).
_INDEXED = ("mov", "mp4", "matroska", "webm", "avi")
# More damaged packets than this (and than this share of all packets) make the file corrupt.
_MAX_DAMAGED, _MAX_DAMAGED_SHARE = 8, 0.1


class AVSource:
    """Frames of the first video stream of a file, decoded by FFmpeg."""

    def __init__(self, path: str):
        self.path = path
        self.container, self.stream = _open(path)
        try:
            check_size(path)  # a cut file can look like a complete shorter one (AVI without its index)
        except BaseException:
            self.container.close()
            raise
        try:
            self.meta: _Meta = _meta(path, self.container, self.stream)
        except BaseException:
            self.container.close()
            raise
        fmt = self.container.format.name.split(",")
        self.can_seek = any(f in _INDEXED for f in fmt)
        self.decoded = self.damaged = self.packets = 0
        self.seeks = 0
        self._seek_to: float | None = None

    def close(self) -> None:
        self.container.close()

    def threads(self, auto: bool) -> None:
        """Frame and slice threads (h264/hevc output stays bit-exact), or one thread."""
        if auto:
            self.stream.thread_type = "AUTO"
        else:
            self.stream.codec_context.thread_count = 1

    def seek(self, t: float) -> None:
        """Continue from the key frame at or before ``t`` seconds (from the stream start) once
        the frame in hand has been used. Frames before ``t`` may still come: callers skip them."""
        if self.can_seek:
            self._seek_to = t

    def _damaged(self, exc: BaseException) -> None:
        self.damaged += 1
        if self.damaged > max(_MAX_DAMAGED, _MAX_DAMAGED_SHARE * self.packets):
            raise VideoCorrupt(self.path, f"{self.damaged} damaged packets of {self.packets} "
                                          f"(last: {_reason(exc)})")

    def frames(self) -> Iterator[av.VideoFrame]:
        cc = self.stream.codec_context
        tb = self.stream.time_base
        start = self.stream.start_time or 0
        landing = None  # after a seek: the first frame must not come after this target
        while True:
            target = None
            packets = iter(self.container.demux(self.stream))
            while target is None:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except _AV_ERRORS:  # the data ends here (cut file, broken container): drain the decoder
                    packet, packets = None, iter(())
                if packet is not None and packet.size:
                    self.packets += 1
                try:
                    out = cc.decode(packet)
                except av.error.FFmpegError as exc:
                    self._damaged(exc)
                    continue
                for frame in out:
                    if landing is not None:
                        if frame.time is not None and frame.time - float(start * tb) > landing + 1e-6:
                            # the index lied (its key frame lies past the target): read the file
                            # straight through from the start; the caller skips what it has used
                            self.can_seek, target = False, -1.0
                            break
                        landing = None
                    self.decoded += 1
                    yield frame
                    if self._seek_to is not None:
                        # frames left in ``out`` come before the target: not needed
                        target = self._seek_to
                        break
            if target is None:
                return
            self._seek_to = None
            # PyAV's seek flushes the decoder: the next frame comes from the key frame before target
            self.container.seek(start + max(0, int(target / tb)), stream=self.stream, backward=True)
            if target >= 0:
                self.seeks += 1
                landing = target


class PillowSource:
    """Frames of a WebP (still or animated) decoded by Pillow, timed by each frame's duration."""

    can_seek = False

    def __init__(self, path: str):
        from PIL import Image, UnidentifiedImageError

        _check_file(path)
        self.path = path
        try:
            self.image = Image.open(path)
            n = int(getattr(self.image, "n_frames", 1))
            durations = []
            for i in range(n):
                self.image.seek(i)
                self.image.load()  # Pillow sets a WebP frame's duration when it decodes it
                durations.append(max(0, int(self.image.info.get("duration", 0) or 0)))
            self.image.seek(0)
        except (UnidentifiedImageError, OSError, ValueError, EOFError, SyntaxError) as exc:
            raise VideoCorrupt(path, f"not a readable WebP ({_reason(exc)})") from None
        if n < 1:
            raise VideoEmpty(path, "no frames")
        self.starts = np.concatenate(([0], np.cumsum(durations)[:-1])).astype(int).tolist()
        total = sum(durations) / 1000.0
        w, h = self.image.size
        self.meta = _Meta(codec="webp", width=w, height=h, fps=n / total if total > 0 else 0.0, frames=n,
                          duration=total, start=0.0)
        self.decoded = self.damaged = self.packets = self.seeks = 0

    def close(self) -> None:
        self.image.close()

    def threads(self, auto: bool) -> None:
        pass

    def seek(self, t: float) -> None:
        pass

    def frames(self) -> Iterator[av.VideoFrame]:
        for i, start in enumerate(self.starts):
            try:
                self.image.seek(i)
                rgb = np.asarray(self.image.convert("RGB"))
            except (OSError, ValueError, EOFError) as exc:
                if self.decoded:  # the rest is damaged: the frames so far are the video
                    return
                raise VideoCorrupt(self.path, f"cannot decode frame {i + 1}: {_reason(exc)}") from None
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = start, Fraction(1, 1000)
            self.decoded += 1
            yield frame


def open_source(path: str | os.PathLike) -> AVSource | PillowSource:
    p = os.fspath(path)
    _check_file(p)
    return PillowSource(p) if is_webp(p) else AVSource(p)

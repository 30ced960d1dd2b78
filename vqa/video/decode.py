"""Single-pass decoding of key frames (and short motion clips) in display orientation."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from vqa.video.errors import VideoCorrupt, VideoEmpty
from vqa.video.probe import _AV_ERRORS, VideoInfo, _decode_error, _info, _meta, _open

__all__ = ["DecodedVideo", "key_frame_times", "read_video", "iter_frames"]

# Frame timestamps are floats from pts * time_base: allow for rounding when comparing.
_EPS = 1e-6


def key_frame_times(duration: float, rate: float = 1.0) -> list[float]:
    """Centres of consecutive 1/rate-second windows that fit in ``duration`` seconds.

    Rate 1 gives 0.5, 1.5, 2.5, ...; a clip shorter than one window gets its midpoint, and a
    zero duration (e.g. a single picture) gets instant 0.
    """
    rate, duration = float(rate), float(duration)
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"key rate must be a positive number, got {rate}")
    if not (duration >= 0 and math.isfinite(duration)):
        raise ValueError(f"duration must be a non-negative number, got {duration}")
    n = math.floor(duration * rate + _EPS)
    if n == 0:
        return [duration / 2.0]
    return [(i + 0.5) / rate for i in range(n)]


def _spread(n: int, m: int) -> list[int]:
    """m evenly spaced indices out of range(n): the centres of m equal bins (m <= n)."""
    return [((2 * i + 1) * n) // (2 * m) for i in range(m)]


def _fit(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Shrink so the longer side is <= max_side (aspect kept, even sizes); else unchanged."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    w, h = round(width * s), round(height * s)
    return max(2, w - w % 2), max(2, h - h % 2)


@dataclass
class DecodedVideo:
    path: str
    info: VideoInfo
    key_frames: np.ndarray  # [T, H, W, 3] uint8 RGB, display orientation
    key_times: list[float]  # the sampling instants (seconds from the stream start)
    clips: np.ndarray | None  # [N, L, H, W, 3] uint8, one clip per key frame; None if clip_len == 0


class _Converter:
    """VideoFrame -> RGB array at one fixed output size, rotated to display orientation."""

    def __init__(self, first, rotation: int, max_side: int | None):
        self.size = _fit(first.width, first.height, max_side)
        self.k = -(rotation // 90)  # rotation is clockwise; np.rot90 with k > 0 turns counter-clockwise

    def __call__(self, frame) -> np.ndarray:
        w, h = self.size
        if (frame.width, frame.height) != (w, h):
            # scaling inside swscale's RGB conversion: one pass, no full-size RGB copy
            arr = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
        else:
            arr = frame.to_ndarray(format="rgb24")
        if self.k:
            arr = np.rot90(arr, self.k)
        return np.ascontiguousarray(arr)


def _frame_time(frame, index: int, start: float, fps: float) -> float:
    t = frame.time
    if t is None:  # no pts: fall back to the nominal frame rate
        return index / fps if fps else float(index)
    return float(t) - start


def _check_truncated(path: str, meta, last_time: float) -> None:
    """A stream whose frames stop well short of its declared duration is a cut-off file."""
    end = last_time + (1.0 / meta.fps if meta.fps else 0.0)
    missing = meta.duration - end
    # slack: containers may round durations, or count a longer audio track
    if meta.duration > 0 and missing > 1.0 and missing > 0.1 * meta.duration:
        raise VideoCorrupt(path, f"truncated: frames stop at {end:.2f} s of {meta.duration:.2f} s")


def _check_args(key_rate, max_key_frames, clip_len, clip_stride, max_side) -> None:
    if max_key_frames is not None and max_key_frames < 1:
        raise ValueError(f"max_key_frames must be >= 1 or None, got {max_key_frames}")
    if clip_len < 0:
        raise ValueError(f"clip_len must be >= 0, got {clip_len}")
    if clip_stride < 1:
        raise ValueError(f"clip_stride must be >= 1, got {clip_stride}")
    if max_side is not None and max_side < 2:
        raise ValueError(f"max_side must be >= 2 or None, got {max_side}")
    if not (key_rate > 0 and math.isfinite(key_rate)):
        raise ValueError(f"key_rate must be a positive number, got {key_rate}")


def read_video(
    path: str | os.PathLike,
    *,
    key_rate: float = 1.0,
    max_key_frames: int | None = None,
    clip_len: int = 0,
    clip_stride: int = 1,
    max_side: int | None = None,
) -> DecodedVideo:
    """Decode the video once and keep the frames at ``key_frame_times`` (plus motion clips).

    Each key instant takes the first frame whose timestamp is >= the instant (the last frame
    if the stream ends first). With ``clip_len > 0`` each key frame also starts a clip of
    ``clip_len`` frames, every ``clip_stride``-th decoded frame, padded with its last frame at
    the end of the stream. Decoding stops as soon as everything needed is collected.
    """
    _check_args(key_rate, max_key_frames, clip_len, clip_stride, max_side)
    p = os.fspath(path)
    container, stream = _open(p)
    try:
        meta = _meta(p, container, stream)
        times = key_frame_times(meta.duration, key_rate)
        if max_key_frames is not None and len(times) > max_key_frames:
            times = [times[i] for i in _spread(len(times), max_key_frames)]
        stream.thread_type = "AUTO"  # frame + slice threads; h264/hevc output stays bit-exact

        n = len(times)
        keys: list[np.ndarray | None] = [None] * n
        clips: list[list[np.ndarray]] = [[] for _ in range(n)] if clip_len else []
        active: list[tuple[int, int]] = []  # (start frame index, key index) of open clips
        info = convert = None
        nxt = 0  # next key instant to fill
        last = None  # (frame, its array if converted, its time)
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                if convert is None:
                    info = _info(meta, frame)
                    convert = _Converter(frame, info.rotation, max_side)
                arr = None  # converted lazily: most frames are not kept
                t = _frame_time(frame, index, meta.start, meta.fps)
                while nxt < n and t >= times[nxt] - _EPS:
                    arr = convert(frame) if arr is None else arr
                    keys[nxt] = arr
                    if clip_len:
                        clips[nxt].append(arr)
                        if clip_len > 1:
                            active.append((index, nxt))
                    nxt += 1
                still = []
                for start, k in active:
                    if index > start and (index - start) % clip_stride == 0:
                        arr = convert(frame) if arr is None else arr
                        clips[k].append(arr)
                    if len(clips[k]) < clip_len:
                        still.append((start, k))
                active = still
                if nxt == n and not active:
                    break
                last = (frame, arr, t)
        except _AV_ERRORS as exc:
            raise _decode_error(p, exc, f"frame {index + 1}") from None
        if convert is None:
            raise VideoEmpty(p, "no decodable video frames")
        if nxt < n:  # stream ended before the last instants: they get the last frame
            frame, arr, t = last
            _check_truncated(p, meta, t)
            arr = convert(frame) if arr is None else arr
            for k in range(nxt, n):
                keys[k] = arr
                if clip_len:
                    clips[k].append(arr)
        for clip in clips:
            clip.extend([clip[-1]] * (clip_len - len(clip)))
    finally:
        container.close()
    return DecodedVideo(
        path=p,
        info=info,
        key_frames=np.stack(keys),
        key_times=times,
        clips=np.stack([np.stack(c) for c in clips]) if clip_len else None,
    )


def iter_frames(path: str | os.PathLike, *, max_side: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Every frame as (seconds from the stream start, RGB uint8 [H, W, 3] in display orientation).

    The file is opened (and missing/corrupt files reported) when this is called, not on the
    first ``next()``.
    """
    if max_side is not None and max_side < 2:
        raise ValueError(f"max_side must be >= 2 or None, got {max_side}")
    p = os.fspath(path)
    container, stream = _open(p)
    try:
        meta = _meta(p, container, stream)
        stream.thread_type = "AUTO"
    except BaseException:
        container.close()
        raise
    return _frames(p, container, stream, meta, max_side)


def _frames(p, container, stream, meta, max_side) -> Iterator[tuple[float, np.ndarray]]:
    convert = None
    index, t = -1, 0.0
    try:
        try:
            for index, frame in enumerate(container.decode(stream)):
                if convert is None:
                    convert = _Converter(frame, _info(meta, frame).rotation, max_side)
                t = _frame_time(frame, index, meta.start, meta.fps)
                yield t, convert(frame)
        except _AV_ERRORS as exc:
            raise _decode_error(p, exc, f"frame {index + 1}") from None
        if convert is None:
            raise VideoEmpty(p, "no decodable video frames")
        _check_truncated(p, meta, t)
    finally:
        container.close()

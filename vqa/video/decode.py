"""Single-pass decoding of key frames (and short motion clips) in display orientation."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from vqa.video.errors import VideoCorrupt, VideoEmpty
from vqa.video.probe import _AV_ERRORS, VideoInfo, _decode_error, _info
from vqa.video.source import open_source

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
    key_frames: np.ndarray  # [T, H, W, 3] uint8 RGB, display orientation (or key_fn's results)
    key_times: list[float]  # the sampling instants (seconds from the stream start)
    clips: np.ndarray | None  # [N, L, H, W, 3] uint8, one clip per key frame; None if clip_len == 0
    # [N, L, h, w] uint8 luma at a short side of motion_side: small clips for motion measures
    # (a 1080p video's full-size clips would take ~400 MB); None if motion_len == 0
    motion: np.ndarray | None = None
    decoded_frames: int = 0  # frames the decoder produced (what the sampling cost)
    damaged: int = 0  # damaged packets skipped


class _Converter:
    """VideoFrame -> RGB array at one fixed output size, rotated to display orientation."""

    def __init__(self, first, rotation: int, max_side: int | None):
        from av.video.reformatter import VideoReformatter

        self.size = _fit(first.width, first.height, max_side)
        self.k = -(rotation // 90)  # rotation is clockwise; np.rot90 with k > 0 turns counter-clockwise
        self.scaler = VideoReformatter()  # one swscale context per stream, not one per frame

    def __call__(self, frame) -> np.ndarray:
        w, h = self.size
        if (frame.width, frame.height) != (w, h):
            # scaling inside swscale's RGB conversion: one pass, no full-size RGB copy
            arr = self.scaler.reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
        else:
            arr = self.scaler.reformat(frame, format="rgb24").to_ndarray()
        if self.k:
            arr = np.rot90(arr, self.k)
        return np.ascontiguousarray(arr)


class _GrayConverter:
    """VideoFrame -> small luma array (short side ~``side``), rotated to display orientation."""

    def __init__(self, first, rotation: int, side: int):
        w, h = first.width, first.height
        s = min(1.0, side / min(w, h))
        self.size = (max(2, round(w * s)), max(2, round(h * s)))
        self.k = -(rotation // 90)
        from av.video.reformatter import VideoReformatter

        # One scaler for the whole stream: a new one per frame costs ~2 ms, reuse ~0.15 ms.
        self.scaler = VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        w, h = self.size
        # swscale bilinear widens its filter when shrinking (anti-aliased); cheaper than AREA
        arr = self.scaler.reformat(frame, width=w, height=h, format="gray", interpolation="BILINEAR").to_ndarray()
        return np.ascontiguousarray(np.rot90(arr, self.k) if self.k else arr)


class _Track:
    """Clips of ``length`` frames (every ``stride``-th decoded frame) starting at each key frame."""

    def __init__(self, n: int, length: int, stride: int):
        self.length, self.stride = length, stride
        self.clips: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.active: list[tuple[int, int]] = []  # (start frame index, key index) of open clips

    def start(self, k: int, index: int, arr: np.ndarray) -> None:
        self.clips[k].append(arr)
        if self.length > 1:
            self.active.append((index, k))

    def feed(self, index: int, get) -> None:
        """get() converts the current frame (once, shared with the caller)."""
        still = []
        for start, k in self.active:
            if index > start and (index - start) % self.stride == 0:
                self.clips[k].append(get())
            if len(self.clips[k]) < self.length:
                still.append((start, k))
        self.active = still

    def stack(self) -> np.ndarray:
        for clip in self.clips:  # clips cut short by the end of the stream repeat their last frame
            clip.extend([clip[-1]] * (self.length - len(clip)))
        return np.stack([np.stack(c) for c in self.clips])


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


# Jump ahead (to the key frame before the next instant) when that instant is this far past the
# frame in hand: long videos then cost what their samples cost. Nearer instants are reached by
# decoding on, as most videos have a key frame every 1-10 s.
SEEK_GAP = 8.0


def read_video(
    path: str | os.PathLike,
    *,
    key_rate: float = 1.0,
    max_key_frames: int | None = None,
    clip_len: int = 0,
    clip_stride: int = 1,
    max_side: int | None = None,
    motion_len: int = 0,
    motion_side: int = 96,
    key_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    seek: bool = True,
) -> DecodedVideo:
    """Decode the video once and keep the frames at ``key_frame_times`` (plus motion clips).

    Each key instant takes the first frame whose timestamp is >= the instant (the last frame
    if the stream ends first). With ``clip_len > 0`` each key frame also starts a clip of
    ``clip_len`` frames, every ``clip_stride``-th decoded frame, padded with its last frame at
    the end of the stream. ``motion_len > 0`` adds clips of that many consecutive frames as small
    luma (short side ``motion_side``), scaled by swscale as they are decoded. Decoding stops as
    soon as everything needed is collected, and jumps over long stretches between instants
    (``seek``; see SEEK_GAP). ``key_fn`` maps each RGB key frame as it is decoded (e.g. to the
    student's views) and ``key_frames`` holds its results: a large video's frames are then never
    all in memory at once. Damaged packets are skipped (``DecodedVideo.damaged``).
    """
    _check_args(key_rate, max_key_frames, clip_len, clip_stride, max_side)
    if motion_len < 0 or motion_side < 2:
        raise ValueError(f"motion_len must be >= 0 and motion_side >= 2, got {motion_len}, {motion_side}")
    p = os.fspath(path)
    src = open_source(p)
    try:
        meta = src.meta
        times = key_frame_times(meta.duration, key_rate)
        if max_key_frames is not None and len(times) > max_key_frames:
            times = [times[i] for i in _spread(len(times), max_key_frames)]
        src.threads(auto=True)
        keep = key_fn or (lambda arr: arr)

        n = len(times)
        keys: list[np.ndarray | None] = [None] * n
        clips = _Track(n, clip_len, clip_stride) if clip_len else None
        motion = _Track(n, motion_len, 1) if motion_len else None
        info = convert = gray = None
        nxt = 0  # next key instant to fill
        sought = -1  # the instant last sought
        last = None  # (frame, its array if converted, its time)
        index = -1
        try:
            for frame in src.frames():
                index += 1
                if convert is None:
                    info = _info(meta, frame)
                    convert = _Converter(frame, info.rotation, max_side)
                    gray = _GrayConverter(frame, info.rotation, motion_side) if motion else None
                cache: dict[str, np.ndarray] = {}  # converted lazily: most frames are not kept

                def rgb(frame=frame, cache=cache):
                    if "rgb" not in cache:
                        cache["rgb"] = convert(frame)
                    return cache["rgb"]

                def small(frame=frame, cache=cache):
                    if "gray" not in cache:
                        cache["gray"] = gray(frame)
                    return cache["gray"]

                t = _frame_time(frame, index, meta.start, meta.fps)
                while nxt < n and t >= times[nxt] - _EPS:
                    keys[nxt] = keep(rgb())
                    if clips:
                        clips.start(nxt, index, rgb())
                    if motion:
                        motion.start(nxt, index, small())
                    nxt += 1
                if clips:
                    clips.feed(index, rgb)
                if motion:
                    motion.feed(index, small)
                busy = (clips and clips.active) or (motion and motion.active)
                if nxt == n and not busy:
                    break
                last = (frame, cache.get("rgb"), t)
                if seek and not busy and nxt != sought and frame.time is not None and times[nxt] - t > SEEK_GAP:
                    src.seek(times[nxt])
                    sought = nxt  # once per instant: the key frame before it may lie far back
        except _AV_ERRORS as exc:
            raise _decode_error(p, exc, f"frame {index + 1}") from None
        if convert is None:
            raise VideoEmpty(p, "no decodable video frames")
        if nxt < n:  # stream ended before the last instants: they get the last frame
            frame, arr, t = last
            _check_truncated(p, meta, t)
            arr = convert(frame) if arr is None else arr
            kept = keep(arr)
            small_last = gray(frame) if motion else None
            for k in range(nxt, n):
                keys[k] = kept
                if clips:
                    clips.clips[k].append(arr)
                if motion:
                    motion.clips[k].append(small_last)
    finally:
        src.close()
    return DecodedVideo(
        path=p,
        info=info,
        key_frames=np.stack(keys),
        key_times=times,
        clips=clips.stack() if clips else None,
        motion=motion.stack() if motion else None,
        decoded_frames=src.decoded,
        damaged=src.damaged,
    )


def iter_frames(path: str | os.PathLike, *, max_side: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Every frame as (seconds from the stream start, RGB uint8 [H, W, 3] in display orientation).

    The file is opened (and missing/corrupt files reported) when this is called, not on the
    first ``next()``.
    """
    if max_side is not None and max_side < 2:
        raise ValueError(f"max_side must be >= 2 or None, got {max_side}")
    p = os.fspath(path)
    src = open_source(p)
    try:
        src.threads(auto=True)
    except BaseException:
        src.close()
        raise
    return _frames(p, src, max_side)


def _frames(p, src, max_side) -> Iterator[tuple[float, np.ndarray]]:
    convert = None
    index, t = -1, 0.0
    meta = src.meta
    try:
        try:
            for frame in src.frames():
                index += 1
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
        src.close()

"""Video metadata that is checked against a real decode: ``probe(path) -> VideoInfo``."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import asdict, dataclass

import av

from vqa.video.errors import NoVideoStream, VideoCorrupt, VideoEmpty, VideoError, VideoNotFound

__all__ = ["VideoInfo", "probe"]

# What PyAV raises while opening or decoding (av.error.* subclass FFmpegError; plain OS errors
# come from the file system).
_AV_ERRORS = (av.error.FFmpegError, OSError, EOFError)


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of the first video stream.

    width/height are display dimensions (rotation applied). rotation is the clockwise turn, in
    degrees (0, 90, 180 or 270), that displays the stored frames upright: the convention of the
    legacy ``rotate`` tag, so a portrait phone video stored 1920x1080 has rotation 90. (PyAV's
    ``VideoFrame.rotation`` counts counter-clockwise: rotation == -frame.rotation mod 360.)
    """

    codec: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    rotation: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Meta:
    """Container/stream metadata, before anything is decoded."""

    codec: str
    width: int  # stored (coded) size
    height: int
    fps: float
    frames: int  # 0 when the container does not say
    duration: float  # 0.0 when unknown
    start: float  # stream start time in seconds; frame times are made relative to it


def _reason(exc: BaseException) -> str:
    """Short message without the path (VideoError adds it)."""
    msg = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(msg)


def _check_file(path: str) -> None:
    if not os.path.lexists(path):
        raise VideoNotFound(path, "no such file")
    if os.path.isdir(path):
        raise VideoCorrupt(path, "is a directory, not a video file")
    try:
        size = os.path.getsize(path)
    except OSError as exc:  # e.g. a dangling symlink
        raise VideoNotFound(path, f"cannot stat: {_reason(exc)}") from None
    if size == 0:
        raise VideoEmpty(path, "empty file (0 bytes)")


def _open(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` and pick its first real video stream; every failure is a VideoError."""
    _check_file(path)
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.error.InvalidDataError as exc:
        raise VideoCorrupt(path, f"not a readable media file ({_reason(exc)})") from None
    except _AV_ERRORS as exc:
        raise VideoCorrupt(path, f"cannot open: {_reason(exc)}") from None
    try:
        # cover art is exposed as a one-picture "video" stream: it is not a video
        videos = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not videos:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            extra = " (cover art only)" if container.streams.video else ""
            raise NoVideoStream(path, f"no video stream{extra}; streams: {', '.join(kinds)}")
        stream = videos[0]
        if stream.codec_context is None:
            raise VideoCorrupt(path, f"no decoder for codec id of stream {stream.index}")
    except BaseException:
        container.close()
        raise
    return container, stream


def is_webp(path: str) -> bool:
    """RIFF....WEBP: FFmpeg decodes still WebP but not animated WebP, so these go to Pillow."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _rate(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return 0.0


def _scan_packets(path: str, index: int, start: float) -> tuple[int, float]:
    """(packet count, end time) by demuxing only: for containers without a duration."""
    count, end = 0, 0.0
    try:
        with av.open(path, metadata_errors="ignore") as c:
            s = c.streams[index]
            for pkt in c.demux(s):
                if pkt.size == 0:  # the flush packet
                    continue
                count += 1
                if pkt.pts is not None and pkt.time_base:
                    t = float((pkt.pts + (pkt.duration or 0)) * pkt.time_base) - start
                    end = max(end, t)
    except _AV_ERRORS:
        pass  # whatever was counted is the best estimate; decoding reports real damage
    return count, end


def _meta(path: str, container, stream) -> _Meta:
    cc = stream.codec_context
    tb = stream.time_base
    fps = _rate(stream)
    frames = int(stream.frames or 0)
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    duration = 0.0
    if stream.duration and tb:
        duration = float(stream.duration * tb)
    elif container.duration:
        duration = container.duration / av.time_base
    elif frames and fps:
        duration = frames / fps
    if not (duration > 0 and math.isfinite(duration)):
        count, end = _scan_packets(path, stream.index, start)
        duration = end if end > 0 else (count / fps if count and fps else 0.0)
        frames = frames or count
    if not fps and frames and duration > 0:
        fps = frames / duration
    return _Meta(
        codec=cc.name if cc is not None else "unknown",
        width=int(cc.width or stream.width or 0),
        height=int(cc.height or stream.height or 0),
        fps=fps,
        frames=frames,
        duration=max(duration, 0.0),
        start=start,
    )


def _rotation(frame) -> int:
    """Clockwise display rotation from the frame's display matrix, as 0/90/180/270."""
    try:
        rot = frame.rotation
    except Exception:  # no display matrix side data
        return 0
    if not rot or not math.isfinite(rot):
        return 0
    return -int(round(rot / 90.0)) * 90 % 360


def _info(meta: _Meta, first_frame) -> VideoInfo:
    rotation = _rotation(first_frame)
    w, h = meta.width or first_frame.width, meta.height or first_frame.height
    if rotation in (90, 270):
        w, h = h, w
    frames = meta.frames or (int(round(meta.duration * meta.fps)) if meta.fps else 0)
    return VideoInfo(
        codec=meta.codec,
        width=int(w),
        height=int(h),
        fps=float(meta.fps),
        frame_count=max(int(frames), 1),  # a decodable video has at least its first frame
        duration=float(meta.duration),
        rotation=rotation,
    )


def _decode_error(path: str, exc: BaseException, where: str) -> VideoError:
    if isinstance(exc, VideoError):
        return exc
    return VideoCorrupt(path, f"cannot decode {where}: {_reason(exc)}")


def _read_vint(fh, *, keep_marker: bool) -> tuple[int, bool] | None:
    """One EBML variable-length integer -> (value, all value bits set = "unknown size")."""
    first = fh.read(1)
    if not first:
        return None
    b = first[0]
    length = next((i + 1 for i in range(8) if b & (0x80 >> i)), 0)
    if not length:
        return None
    rest = fh.read(length - 1)
    if len(rest) != length - 1:
        return None
    value = b if keep_marker else b & (0xFF >> length)
    for x in rest:
        value = (value << 8) | x
    unknown = not keep_marker and value == (1 << (7 * length)) - 1
    return value, unknown


def _declared_bytes(path: str) -> int | None:
    """The file size the container's own top-level sizes add up to (RIFF/AVI, MP4/MOV boxes,
    Matroska's Segment), or None when it does not say (other formats, unknown-size segments).
    A file shorter than that was cut off, whatever its timestamps claim."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if head[:4] == b"RIFF" and len(head) == 12:
                return 8 + int.from_bytes(head[4:8], "little")
            if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
                pos = 0
                while pos < size:
                    fh.seek(pos)
                    box = fh.read(16)
                    if len(box) < 8:
                        return pos + 8
                    n = int.from_bytes(box[:4], "big")
                    if n == 1 and len(box) == 16:
                        n = int.from_bytes(box[8:16], "big")
                    elif n == 0:  # the last box runs to the end of the file
                        return size
                    if n < 8:
                        return None
                    pos += n
                return pos
            if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: header element, then the Segment
                fh.seek(0)
                pos = 0
                for _ in range(2):
                    eid = _read_vint(fh, keep_marker=True)
                    length = _read_vint(fh, keep_marker=False)
                    if eid is None or length is None:
                        return None
                    if eid[0] == 0x18538067:  # Segment
                        return None if length[1] else fh.tell() + length[0]
                    pos = fh.tell() + length[0]
                    fh.seek(pos)
    except OSError:
        return None
    return None


def check_size(path: str) -> None:
    declared = _declared_bytes(path)
    if declared is not None and os.path.getsize(path) < declared:
        raise VideoCorrupt(path, f"truncated: {os.path.getsize(path)} of the {declared} bytes its container declares")


def _check_complete(path: str, index: int, meta: _Meta) -> tuple[int, float]:
    """A cut-off file whose index sits at the front (faststart MP4, MKV) still opens and decodes
    its first frame; demuxing (not decoding) every packet shows the data that is missing.
    Judged by time when packets carry timestamps: a header's frame count can be stale (an AVI
    trimmed by stream copy keeps the old count, or counts time-base ticks of a VFR stream) while
    every frame up to the declared duration is there. Returns (packets, data end in seconds)."""
    count, end = _scan_packets(path, index, meta.start)
    if end > 0:
        if end < 0.9 * meta.duration - 1.0:
            raise VideoCorrupt(path, f"truncated: data ends at {end:.1f} s of a declared {meta.duration:.1f} s")
    elif meta.frames and count < 0.9 * meta.frames - 1:  # no timestamps: only the count can tell
        raise VideoCorrupt(path, f"truncated: {count} of {meta.frames} declared frames present")
    return count, end


def probe(path: str | os.PathLike) -> VideoInfo:
    """Metadata of the first video stream, after checking that its first frame decodes."""
    from vqa.video.source import AVSource, open_source

    p = os.fspath(path)
    src = open_source(p)
    try:
        meta = src.meta
        src.threads(auto=False)  # one frame: threads cost more than they save
        first = None
        try:
            for first in src.frames():
                break
        except _AV_ERRORS as exc:
            raise _decode_error(p, exc, "first frame") from None
        if first is None:
            raise VideoEmpty(p, "no decodable video frames")
        if isinstance(src, AVSource):
            count, end = _check_complete(p, src.stream.index, meta)
            if count and meta.frames and abs(count - meta.frames) > 0.1 * meta.frames:
                # the header's count is stale (see _check_complete): report what is there
                span = end if end > 0 else meta.duration
                meta = dataclasses.replace(meta, frames=count, fps=count / span if span > 0 else meta.fps)
        return _info(meta, first)
    finally:
        src.close()

"""Video errors: every failure to read a video surfaces as one of these, naming the file."""
from __future__ import annotations

import os

__all__ = ["VideoError", "VideoNotFound", "VideoCorrupt", "VideoEmpty", "NoVideoStream", "failure_reason"]


class VideoError(Exception):
    """A video that cannot be used. ``str(e)`` is ``"<path>: <reason>"`` on one line."""

    def __init__(self, path: str | os.PathLike, reason: str):
        path = os.fspath(path)
        # one line: FFmpeg messages sometimes carry newlines
        reason = " ".join(str(reason).split())
        # args = (path, reason) so the exception pickles across process pools
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class VideoNotFound(VideoError):
    """The file does not exist."""


class VideoCorrupt(VideoError):
    """Not a media file, truncated, or undecodable."""


class VideoEmpty(VideoError):
    """Zero-byte file, or a video stream with no decodable frames."""


class NoVideoStream(VideoError):
    """A media file without a video stream (e.g. audio only)."""


def failure_reason(exc: BaseException) -> str:
    """One line saying why a video could not be used, for any exception a worker met on it: each
    step (ingest, teach, evaluate, score) records this per file and goes on with the others."""
    if isinstance(exc, VideoError):
        return exc.reason
    if isinstance(exc, FileNotFoundError):
        return "no such file (deleted or moved while the batch ran?)"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    if isinstance(exc, MemoryError):
        return "out of memory while reading it"
    return f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"

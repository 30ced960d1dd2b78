"""Teacher score cache keyed by (teacher name@version, video content hash), as vmaf caches
executor results by (type_version, asset): re-scoring a grown corpus only scores new videos,
and a new teacher version re-scores that teacher only.

One append-only JSON-lines log per teacher key: each finished video is one line written as soon
as it is known, so a killed step loses at most the video in flight and resumes from the rest. The
last line for a video wins; a torn last line (killed mid-write) is skipped on load. Appending keeps
the cost per video constant on corpora of 10^5 videos, where rewriting one JSON file would not.

Several processes may share one log (Dask workers scoring corpus shards): each line is one
O_APPEND write under a shared flock, so appends never interleave; the compaction rewrite holds an
exclusive flock, re-reads the log under it and replaces the file, and a writer whose open file was
replaced reopens the new one before it appends.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from vqa.io import atomic_write_text


class ScoreCache:
    def __init__(self, root: str | Path, teacher_key: str):
        safe = teacher_key.replace("/", "_").replace(os.sep, "_")
        self.path = Path(root) / f"{safe}.jsonl"
        self.entries: dict[str, dict] = {}
        self._fd: int | None = None  # append handle, opened on the first put
        lines = self._load()
        if lines > 2 * len(self.entries) + 64:  # mostly superseded lines: compact once
            self._rewrite()

    def _locked_fd(self, flags: int, lock: int) -> int | None:
        """An fd on the current file at self.path holding `lock`; None when there is no file (and
        flags cannot create one). Retries when another process replaced the file meanwhile."""
        while True:
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:
                return None
            fcntl.flock(fd, lock)
            if self._current(fd):
                return fd
            os.close(fd)  # replaced (compacted) before we got the lock: open the new file

    def _current(self, fd: int) -> bool:
        """Is fd still the file at self.path (not replaced or removed by another process)?"""
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _read(self, fd: int) -> int:
        """Entries of the whole file behind fd; returns its number of lines."""
        lines = 0
        with os.fdopen(os.dup(fd), encoding="utf-8") as fh:
            fh.seek(0)
            for line in fh:
                lines += 1
                try:
                    row = json.loads(line)
                    vid = row.pop("id")
                except (ValueError, KeyError, AttributeError, TypeError):
                    continue  # a torn or foreign line is only a lost cache entry
                self.entries[vid] = row
        return lines

    def _load(self) -> int:
        fd = self._locked_fd(os.O_RDONLY, fcntl.LOCK_SH)  # no half-written line of a concurrent writer
        if fd is None:
            return 0
        try:
            return self._read(fd)
        finally:
            os.close(fd)

    def _rewrite(self) -> None:
        fd = self._locked_fd(os.O_RDONLY, fcntl.LOCK_EX)
        if fd is None:
            return
        try:
            self.entries = {}
            self._read(fd)  # under the lock: lines other processes appended since our load count
            text = "".join(json.dumps({"id": k, **v}, sort_keys=True) + "\n" for k, v in self.entries.items())
            atomic_write_text(self.path, text)
        finally:
            os.close(fd)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, video_id: str) -> dict | None:
        return self.entries.get(video_id)

    def put(self, video_id: str, entry: dict) -> None:
        self.entries[video_id] = entry
        line = (json.dumps({"id": video_id, **entry}, sort_keys=True) + "\n").encode("utf-8")
        while True:
            opened = self._fd is None
            if opened:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            # Shared among appenders, excluding a compaction; exclusive once per handle, so the torn
            # line check below never sees another writer's line half-written.
            fcntl.flock(self._fd, fcntl.LOCK_EX if opened else fcntl.LOCK_SH)
            try:
                if self._current(self._fd):
                    size = os.fstat(self._fd).st_size if opened else 0
                    if size and os.pread(self._fd, 1, size - 1) != b"\n":
                        line = b"\n" + line  # a killed writer left a torn line: start a new one
                    os.write(self._fd, line)  # one O_APPEND write: in the OS's hands, survives a kill
                    return
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)  # another process replaced the file (compaction): append to the new one
            self._fd = None

    def flush(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    close = flush

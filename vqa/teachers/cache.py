"""Teacher score cache keyed by (teacher name@version, video content hash), as vmaf caches
executor results by (type_version, asset): re-scoring a grown corpus only scores new videos,
and a new teacher version re-scores that teacher only.

One append-only JSON-lines log per teacher key: each finished video is one line written as soon
as it is known, so a killed step loses at most the video in flight and resumes from the rest. The
last line for a video wins; a torn last line (killed mid-write) is skipped on load. Appending keeps
the cost per video constant on corpora of 10^5 videos, where rewriting one JSON file would not.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from vqa.io import atomic_write_text


class ScoreCache:
    def __init__(self, root: str | Path, teacher_key: str):
        safe = teacher_key.replace("/", "_").replace(os.sep, "_")
        self.path = Path(root) / f"{safe}.jsonl"
        self.entries: dict[str, dict] = {}
        self._fh = None
        self._torn = False  # the log ends mid-line (a killed write): start appending on a new line
        lines = self._load()
        if lines > 2 * len(self.entries) + 64:  # mostly superseded lines: compact once
            self._rewrite()

    def _load(self) -> int:
        lines = 0
        if not self.path.exists():
            return 0
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                lines += 1
                self._torn = not line.endswith("\n")
                try:
                    row = json.loads(line)
                    vid = row.pop("id")
                except (ValueError, KeyError, AttributeError, TypeError):
                    continue  # a torn or foreign line is only a lost cache entry
                self.entries[vid] = row
        return lines

    def _rewrite(self) -> None:
        text = "".join(json.dumps({"id": k, **v}, sort_keys=True) + "\n" for k, v in self.entries.items())
        atomic_write_text(self.path, text)
        self._torn = False

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, video_id: str) -> dict | None:
        return self.entries.get(video_id)

    def put(self, video_id: str, entry: dict) -> None:
        self.entries[video_id] = entry
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
            if self._torn:
                self._fh.write("\n")
                self._torn = False
        self._fh.write(json.dumps({"id": video_id, **entry}, sort_keys=True) + "\n")
        self._fh.flush()  # in the OS's hands now: survives a killed process

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    close = flush

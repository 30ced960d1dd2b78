"""Teacher score cache keyed by (teacher name@version, video content hash), as vmaf caches
executor results by (type_version, asset): re-scoring a grown corpus only scores new videos."""
from __future__ import annotations

import json
from pathlib import Path

from vqa.io import atomic_write_json


class ScoreCache:
    def __init__(self, root: str | Path, teacher_key: str):
        self.path = Path(root) / f"{teacher_key.replace('/', '_')}.json"
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            try:
                self.entries = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.entries = {}  # a damaged cache is only a cache: start over
        self._dirty = 0

    def get(self, video_id: str) -> dict | None:
        return self.entries.get(video_id)

    def put(self, video_id: str, entry: dict) -> None:
        self.entries[video_id] = entry
        self._dirty += 1
        if self._dirty >= 32:  # bound the work a killed step loses
            self.flush()

    def flush(self) -> None:
        if self._dirty:
            atomic_write_json(self.path, self.entries)
            self._dirty = 0

"""The per-teacher score cache: append-only, resumable, compacting, keyed by name@version."""
from __future__ import annotations

import json

from vqa.teachers.cache import ScoreCache


def test_entries_survive_without_flush(tmp_path):
    c = ScoreCache(tmp_path, "niqe@1")
    c.put("a", {"score": 1.0})
    c.put("b", {"error": "too small"})
    # no flush(): a killed process still left both lines on disk
    again = ScoreCache(tmp_path, "niqe@1")
    assert again.get("a") == {"score": 1.0} and again.get("b") == {"error": "too small"}
    c.flush()


def test_torn_last_line_is_skipped(tmp_path):
    c = ScoreCache(tmp_path, "t@1")
    c.put("a", {"score": 1.0})
    c.flush()
    with open(c.path, "a") as fh:
        fh.write('{"id": "b", "sco')  # killed mid-write
    again = ScoreCache(tmp_path, "t@1")
    assert len(again) == 1 and again.get("b") is None
    again.put("b", {"score": 2.0})
    again.flush()
    assert ScoreCache(tmp_path, "t@1").get("b") == {"score": 2.0}


def test_last_entry_wins_and_log_compacts(tmp_path):
    c = ScoreCache(tmp_path, "t@1")
    for i in range(200):
        c.put("a", {"score": float(i)})
    c.flush()
    again = ScoreCache(tmp_path, "t@1")
    assert again.get("a") == {"score": 199.0}
    lines = again.path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == {"id": "a", "score": 199.0}


def test_versions_are_separate_caches(tmp_path):
    ScoreCache(tmp_path, "t@1").put("a", {"score": 1.0})
    assert ScoreCache(tmp_path, "t@2").get("a") is None
    assert ScoreCache(tmp_path, "t@1").get("a") == {"score": 1.0}

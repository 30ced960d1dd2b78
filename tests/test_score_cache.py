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


# --------------------------------------------------------------------------- several writer processes
def _append(barrier, root, key, prefix, n, hot_every=0):
    barrier.wait(30)
    c = ScoreCache(root, key)
    for i in range(n):
        c.put(f"{prefix}{i}", {"score": float(i)})
        for j in range(hot_every):  # superseded lines: keep other processes compacting
            c.put("hot", {"score": float(i * hot_every + j)})
    c.flush()


def _compact_repeatedly(barrier, root, key, times):
    barrier.wait(30)
    for _ in range(times):
        ScoreCache(root, key).flush()  # loads, and compacts when most lines are superseded


def _run(*targets):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # plain file I/O in the children: fork is safe and fast
    barrier = ctx.Barrier(len(targets))
    procs = [ctx.Process(target=fn, args=(barrier, *args), daemon=True) for fn, args in targets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_two_processes_appending_concurrently_lose_no_line(tmp_path):
    _run((_append, (tmp_path, "t@1", "a", 400)), (_append, (tmp_path, "t@1", "b", 400)))
    lines = (tmp_path / "t@1.jsonl").read_text().splitlines()
    assert len(lines) == 800 and all(json.loads(line)["id"][0] in "ab" for line in lines)
    c = ScoreCache(tmp_path, "t@1")
    assert len(c) == 800 and c.get("a399") == {"score": 399.0} and c.get("b0") == {"score": 0.0}


def test_compaction_in_another_process_loses_no_append(tmp_path):
    _run((_append, (tmp_path, "t@1", "w", 300, 3)), (_compact_repeatedly, (tmp_path, "t@1", 40)))
    c = ScoreCache(tmp_path, "t@1")
    assert all(c.get(f"w{i}") == {"score": float(i)} for i in range(300))
    assert c.get("hot") == {"score": 899.0} and len(c) == 301


def test_writer_reopens_a_file_replaced_by_compaction(tmp_path):
    c = ScoreCache(tmp_path, "t@1")
    c.put("a", {"score": 1.0})
    other = ScoreCache(tmp_path, "t@1")
    other._rewrite()  # what another process's compaction does: a new file replaces the old one
    c.put("b", {"score": 2.0})  # must land in the new file, not the unlinked old one
    c.flush()
    again = ScoreCache(tmp_path, "t@1")
    assert again.get("a") == {"score": 1.0} and again.get("b") == {"score": 2.0}


def test_torn_line_is_ended_before_the_next_append_of_any_writer(tmp_path):
    (tmp_path / "t@1.jsonl").write_text('{"id": "a", "score": 1.0}\n{"id": "b", "sco')
    c = ScoreCache(tmp_path, "t@1")
    c.put("c", {"score": 3.0})
    c.flush()
    again = ScoreCache(tmp_path, "t@1")
    assert again.get("a") == {"score": 1.0} and again.get("c") == {"score": 3.0} and again.get("b") is None

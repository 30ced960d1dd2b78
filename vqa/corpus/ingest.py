"""Corpus ingest: a content-addressed manifest of the videos in a folder, built incrementally.

Every video file is identified by the sha256 of its bytes. Files whose (relative path, size,
mtime_ns) are unchanged since the last run are taken from the old manifest/quarantine without
being read again; new or changed files are hashed, and only contents never seen before are
probed. Files that fail the probe go to the quarantine list with the reason.

The manifest and the quarantine list hold only what follows from the files' bytes and names, so
the same folder gives the same files on any machine (they are DVC outputs). The stat index that
lets a re-run skip hashing (sizes and mtimes) lives beside them in `<manifest>.stat.json`, which
nothing versions.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Callable

from vqa.io import atomic_write_json, read_json, sha256_file
from vqa.parallel import bounded_map
from vqa.video import VIDEO_EXTENSIONS

__all__ = ["VIDEO_EXTENSIONS", "IngestReport", "ingest", "load_manifest", "resolve"]

_INFO_KEYS = ("codec", "width", "height", "fps", "frame_count", "duration", "rotation")


@dataclass
class IngestReport:
    added: int  # manifest entries whose content was not in the previous manifest
    reused: int  # manifest entries whose content was already there
    duplicates: int  # alias paths (byte-identical copies of another file)
    quarantined: int
    total: int  # manifest entries (distinct contents)
    probed: int  # files actually probed in this run


@dataclass
class _File:
    rel: str
    abs: str
    size: int
    mtime_ns: int
    id: str | None = None
    info: dict | None = None
    reason: str | None = None  # set: quarantined


def is_video_name(name: str) -> bool:
    return PurePath(name).suffix.lower() in VIDEO_EXTENSIONS


def _scan(root: Path) -> tuple[list[_File], list[_File]]:
    """(candidate files, files that cannot even be stat'ed), sorted by relative posix path."""
    found, broken = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or not is_video_name(name):
                continue
            full = os.path.join(dirpath, name)
            rel = Path(full).relative_to(root).as_posix()
            try:
                st = os.stat(full)
            except OSError as exc:  # e.g. a dangling symlink
                broken.append(_File(rel, full, 0, 0, reason=f"cannot read: {exc.strerror or exc}"))
                continue
            found.append(_File(rel, full, st.st_size, st.st_mtime_ns))
    found.sort(key=lambda f: f.rel)
    broken.sort(key=lambda f: f.rel)
    return found, broken


def _hash_job(path: str) -> tuple[str | None, str | None]:
    try:
        return sha256_file(path), None
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"


def _probe_job(path: str) -> tuple[dict | None, str | None]:
    from vqa.video import failure_reason, probe

    try:
        info = probe(path)
    except Exception as exc:  # a bug or an odd file must not stop the run: quarantine it
        return None, failure_reason(exc)
    return info.to_dict(), None


def stat_index_path(manifest_path: Path) -> Path:
    """Where ingest keeps each file's (size, mtime_ns) -> content id, outside the manifest."""
    return manifest_path.with_name(manifest_path.stem + ".stat.json")


def _previous(manifest_path: Path, quarantine_path: Path, root: str, log) -> tuple[dict, dict, dict, dict]:
    """Old state: stat-keyed entries by path (only if the root is the same) and info/reasons by id."""
    by_path, quar_by_path, info_by_id, reason_by_id = {}, {}, {}, {}
    if manifest_path.exists():
        try:
            info_by_id = {v["id"]: {k: v[k] for k in _INFO_KEYS} for v in read_json(manifest_path)["videos"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log(f"ingest: ignoring unreadable previous manifest {manifest_path} ({type(exc).__name__}: {exc})")
            info_by_id = {}
    if quarantine_path.exists():
        try:
            reason_by_id = {q["id"]: q["reason"] for q in read_json(quarantine_path)["videos"] if q["id"] is not None}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log(f"ingest: ignoring unreadable previous quarantine {quarantine_path} ({type(exc).__name__}: {exc})")
            reason_by_id = {}
    index = stat_index_path(manifest_path)
    if index.exists():
        try:
            data = read_json(index)
            if data.get("root") == root:
                for rel, (size, mtime_ns, vid, reason) in data["files"].items():
                    if reason is None and vid in info_by_id:
                        by_path[rel] = (size, mtime_ns, vid)
                    elif reason is not None:
                        quar_by_path[rel] = (size, mtime_ns, vid, reason)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log(f"ingest: ignoring unreadable stat index {index} ({type(exc).__name__}: {exc})")
            by_path, quar_by_path = {}, {}
    return by_path, quar_by_path, info_by_id, reason_by_id


def ingest(
    src_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    quarantine_path: str | os.PathLike,
    *,
    workers: int = 2,
    log: Callable[[str], None] = print,
) -> IngestReport:
    """Scan ``src_dir`` recursively (hidden entries skipped) and write the manifest and quarantine."""
    src = Path(src_dir)
    if not src.is_dir():
        raise ValueError(f"{src_dir}: not a directory")
    root = PurePath(src_dir).as_posix()
    manifest_path, quarantine_path = Path(manifest_path), Path(quarantine_path)
    by_path, quar_by_path, info_by_id, reason_by_id = _previous(manifest_path, quarantine_path, root, log)

    files, broken = _scan(src)
    to_hash: list[_File] = []
    for f in files:
        old = by_path.get(f.rel)
        if old is not None and old[:2] == (f.size, f.mtime_ns):
            f.id, f.info = old[2], info_by_id[old[2]]
            continue
        q = quar_by_path.get(f.rel)
        if q is not None and q[:2] == (f.size, f.mtime_ns):
            f.id, f.reason = q[2], q[3]
            continue
        to_hash.append(f)

    for f, (digest, reason) in zip(to_hash, bounded_map(_hash_job, [f.abs for f in to_hash], workers)):
        f.id, f.reason = digest, reason

    # Probe each unseen content once, through its first path in sorted order.
    to_probe: dict[str, _File] = {}
    for f in to_hash:
        if f.reason is not None:
            continue
        if f.id in info_by_id:
            f.info = info_by_id[f.id]
        elif f.id in reason_by_id:
            f.reason = reason_by_id[f.id]
        else:
            to_probe.setdefault(f.id, f)
    probe_list = list(to_probe.values())
    results: dict[str, tuple[dict | None, str | None]] = {}
    for f, res in zip(probe_list, bounded_map(_probe_job, [f.abs for f in probe_list], workers)):
        results[f.id] = res
    for f in to_hash:
        if f.id in results:
            f.info, f.reason = results[f.id]
        if f.reason is not None:
            log(f"ingest: quarantined {f.rel}: {f.reason}")

    groups: dict[str, list[_File]] = {}
    quarantine = list(broken)
    for f in files:
        if f.reason is not None:
            quarantine.append(f)
        else:
            groups.setdefault(f.id, []).append(f)  # files are sorted: first is the primary path

    videos = []
    for vid, members in groups.items():
        head, rest = members[0], members[1:]
        entry = {"id": vid, "path": head.rel, "size_bytes": head.size}
        entry.update({k: head.info[k] for k in _INFO_KEYS})
        entry["aliases"] = [m.rel for m in rest]
        videos.append(entry)
    videos.sort(key=lambda v: v["path"])
    quarantine.sort(key=lambda f: f.rel)
    qrows = [{"path": f.rel, "id": f.id, "size_bytes": f.size, "reason": f.reason} for f in quarantine]
    atomic_write_json(manifest_path, {"root": root, "videos": videos})
    atomic_write_json(quarantine_path, {"root": root, "videos": qrows})
    # written last: an index newer than a manifest it names ids of is ignored for those ids
    atomic_write_json(stat_index_path(manifest_path), {"root": root, "files": {
        f.rel: [f.size, f.mtime_ns, f.id, f.reason] for f in sorted(files, key=lambda f: f.rel)}})

    old_ids = set(info_by_id)
    added = sum(1 for v in videos if v["id"] not in old_ids)
    report = IngestReport(
        added=added,
        reused=len(videos) - added,
        duplicates=sum(len(v["aliases"]) for v in videos),
        quarantined=len(qrows),
        total=len(videos),
        probed=len(probe_list),
    )
    log(
        f"ingest: {report.total} videos ({report.added} new, {report.reused} unchanged, "
        f"{report.duplicates} duplicates), {report.quarantined} quarantined, probed {report.probed} files"
    )
    return report


def load_manifest(path: str | os.PathLike) -> list[dict]:
    """The manifest's videos list; FileNotFoundError/ValueError naming the file otherwise."""
    return _load(path)[1]


def _load(path: str | os.PathLike) -> tuple[str, list[dict]]:
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: manifest not found (run `vqa corpus ingest` first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: malformed manifest: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise ValueError(f"{path}: malformed manifest: expected an object with a 'videos' list")
    root = data.get("root")
    if not isinstance(root, str):
        raise ValueError(f"{path}: malformed manifest: missing 'root'")
    for i, v in enumerate(data["videos"]):
        if not (isinstance(v, dict) and isinstance(v.get("id"), str) and isinstance(v.get("path"), str)):
            raise ValueError(f"{path}: malformed manifest: videos[{i}] lacks a string 'id' and 'path'")
    return root, data["videos"]


def resolve(manifest_path: str | os.PathLike) -> list[tuple[str, Path]]:
    """(id, absolute path) per manifest entry; a relative root is taken from the current directory."""
    root, videos = _load(manifest_path)
    base = Path(os.path.abspath(root))
    return [(v["id"], base / v["path"]) for v in videos]

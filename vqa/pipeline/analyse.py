"""One decode per video for everything a step needs from its pixels: every homogeneous teacher's
score and the student's inputs (views, motion descriptors). Decoding, teachers and views run in
worker processes (one per core; the GIL would serialise numpy-heavy teachers in threads); the
backbone runs in this process on what they send back. Results stream through a bounded window,
so memory stays flat however large the corpus."""
from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vqa.parallel import bounded_map
from vqa.student.features import FeatureStore
from vqa.teachers import ClipTeacher, TeacherError, register_specs, teacher_class
from vqa.teachers.cache import ScoreCache


@dataclass
class Analysis:
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # teacher key -> id -> score
    failures: dict[str, dict[str, str]] = field(default_factory=dict)  # teacher key / "features" -> id -> reason
    features: dict[str, np.ndarray] = field(default_factory=dict)  # id -> [T, D]
    decoded: int = 0
    scored: dict[str, int] = field(default_factory=dict)  # teacher key -> videos scored now (not cached)
    seconds: dict[str, float] = field(default_factory=dict)  # "decode" / teacher key -> worker CPU seconds


@dataclass(frozen=True)
class _Job:
    vid: str
    path: str
    teachers: tuple[str, ...]
    specs: tuple[str, ...]  # external teacher spec files the worker must register first
    key_rate: float
    max_key_frames: int
    clip_len: int
    view_size: int | None  # None: no views wanted
    view_grid: int
    motion_frames: int = 0  # the student's motion branch: descriptors of clips this long


_INSTANCES: dict = {}  # per worker process: a teacher (and any model it loads) is built once


def _teacher(name: str):
    if name not in _INSTANCES:
        _INSTANCES[name] = teacher_class(name)()
    return _INSTANCES[name]


def _work(job: _Job) -> tuple[str, dict, dict, np.ndarray | None, dict]:
    import torch

    from vqa.student.views import read_for_student, student_inputs
    from vqa.video import failure_reason, read_video

    if multiprocessing.parent_process() is not None:
        # One worker per core already. Only in workers: run in-process (workers=1), this would
        # change the caller's thread count for good.
        torch.set_num_threads(1)
    register_specs(job.specs)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    views = None
    try:
        if job.view_size is None:
            video = read_video(job.path, key_rate=job.key_rate, max_key_frames=job.max_key_frames,
                               clip_len=job.clip_len)
        elif job.teachers:  # teachers need the frames: views are made from them below
            video = read_video(job.path, key_rate=job.key_rate, max_key_frames=job.max_key_frames,
                               clip_len=job.clip_len, motion_len=job.motion_frames)
        else:  # scoring's exact path (vqa.scoring): views made as frames are decoded
            video, *views = read_for_student(job.path, key_rate=job.key_rate, max_key_frames=job.max_key_frames,
                                             size=job.view_size, grid=job.view_grid, motion_frames=job.motion_frames)
    except Exception as exc:  # the same per-file handling as scoring: recorded, the corpus goes on
        return job.vid, {}, {"*": f"{job.path}: {failure_reason(exc)}"}, None, seconds
    seconds["decode"] = time.perf_counter() - t0
    scores, failures = {}, {}
    for name in job.teachers:
        t0 = time.perf_counter()
        teacher = _teacher(name)
        try:
            scores[teacher.card.key] = teacher.score_decoded(video.key_frames, video.clips, job.path)
        except TeacherError as exc:
            failures[teacher.card.key] = str(exc)
        except Exception as exc:  # a teacher bug must not sink the corpus: record and go on
            failures[teacher.card.key] = f"{type(exc).__name__}: {exc}"
        seconds[teacher.card.key] = time.perf_counter() - t0
    if job.view_size is not None and views is None:
        t0 = time.perf_counter()
        views = student_inputs(video.key_frames, video.motion, job.view_size, job.view_grid, job.motion_frames)
        seconds["views"] = time.perf_counter() - t0
    return job.vid, scores, failures, None if views is None else tuple(views), seconds


def _crashed(job: _Job) -> tuple[str, dict, dict, None, dict]:
    return job.vid, {}, {"*": f"{job.path}: its worker process died (out of memory, or a crash in the decoder)"}, None, {}


def analyse(
    items: list[tuple[str, str]],
    *,
    teacher_names: list[str],
    cache_root: str | Path,
    key_rate: float,
    max_key_frames: int,
    features: FeatureStore | None = None,
    external_specs: list[str] | tuple[str, ...] = (),
    workers: int = 2,
    log: Callable[[str], None] = print,
) -> Analysis:
    """items: (video_id, path). Cached results are reused; only missing work decodes a video, and
    only the teachers missing a score for it run on it."""
    specs = tuple(str(s) for s in external_specs)
    register_specs(specs)
    classes = [teacher_class(n) for n in teacher_names]
    caches = {c.card.key: ScoreCache(Path(cache_root) / "scores", c.card.key) for c in classes}
    out = Analysis()
    for c in classes:
        out.scores[c.card.key], out.failures[c.card.key], out.scored[c.card.key] = {}, {}, 0
    out.failures["features"] = {}
    jobs = []
    for vid, path in items:
        need = []
        for c in classes:
            hit = caches[c.card.key].get(vid)
            if hit is None:
                need.append(c)
            elif "score" in hit:
                out.scores[c.card.key][vid] = hit["score"]
            else:
                out.failures[c.card.key][vid] = hit["error"]
        feats = features.cached(vid) if features is not None else None
        if feats is not None:
            out.features[vid] = feats
        want_views = features is not None and feats is None
        if need or want_views:
            cfg = features.config if features is not None else None
            # Clips are decoded only when a teacher that needs them still has to run.
            clip_len = max([c.clip_len for c in need if issubclass(c, ClipTeacher)], default=0)
            jobs.append(
                _Job(vid, str(path), tuple(c.card.name for c in need), specs, key_rate, max_key_frames, clip_len,
                     cfg.input_size if want_views else None, cfg.fragment_grid if cfg else 0,
                     cfg.motion_frames if cfg else 0)
            )
    for c in classes:
        todo = sum(1 for j in jobs if c.card.name in j.teachers)
        if classes:
            log(f"analyse: {c.card.key}: scoring {todo} of {len(items)} videos ({len(items) - todo} cached)")
    if jobs:
        log(f"analyse: decoding {len(jobs)} of {len(items)} videos (the rest are cached)")
    try:
        for vid, scores, failures, views, seconds in bounded_map(_work, jobs, workers, on_crash=_crashed):
            out.decoded += 1
            for key, s in seconds.items():
                out.seconds[key] = out.seconds.get(key, 0.0) + s
            if "*" in failures:  # undecodable: every teacher and the student fail on it
                for c in classes:
                    caches[c.card.key].put(vid, {"error": failures["*"]})
                    out.failures[c.card.key][vid] = failures["*"]
                out.failures["features"][vid] = failures["*"]
                continue
            for key, res in scores.items():
                caches[key].put(vid, res)
                out.scores[key][vid] = res["score"]
                out.scored[key] += 1
            for key, reason in failures.items():
                caches[key].put(vid, {"error": reason})
                out.failures[key][vid] = reason
                out.scored[key] += 1
            if views is not None:
                out.features[vid] = features.add_views(vid, *views)  # (views, motion or None)
    finally:
        for c in caches.values():
            c.flush()  # a killed step keeps what it finished
    for key, fails in out.failures.items():
        if fails:
            log(f"analyse: {key} failed on {len(fails)} videos, e.g. {next(iter(fails.values()))}")
    return out

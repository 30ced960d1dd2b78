"""One decode per video for everything a step needs from its pixels: the frame teachers' scores
and the student's views. Decoding, teachers and views run in worker processes; the backbone runs
in this process on what they send back."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vqa.parallel import bounded_map
from vqa.student.features import FeatureStore
from vqa.teachers import TeacherError, create_teacher
from vqa.teachers.cache import ScoreCache


@dataclass
class Analysis:
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # teacher key -> id -> score
    failures: dict[str, dict[str, str]] = field(default_factory=dict)  # teacher key / "features" -> id -> reason
    features: dict[str, np.ndarray] = field(default_factory=dict)  # id -> [T, D]
    decoded: int = 0


@dataclass(frozen=True)
class _Job:
    vid: str
    path: str
    teachers: tuple[str, ...]
    key_rate: float
    max_key_frames: int
    view_size: int | None  # None: no views wanted
    view_grid: int


def _work(job: _Job) -> tuple[str, dict, dict, np.ndarray | None]:
    import torch

    from vqa.student.views import make_views
    from vqa.video import VideoError, read_video

    torch.set_num_threads(1)  # one worker per core already
    try:
        video = read_video(job.path, key_rate=job.key_rate, max_key_frames=job.max_key_frames)
    except VideoError as exc:
        return job.vid, {}, {"*": str(exc)}, None
    scores, failures = {}, {}
    for name in job.teachers:
        teacher = create_teacher(name)
        try:
            scores[teacher.card.key] = teacher.score_video(video.key_frames)
        except TeacherError as exc:
            failures[teacher.card.key] = str(exc)
        except Exception as exc:  # a teacher bug must not sink the corpus: record and go on
            failures[teacher.card.key] = f"{type(exc).__name__}: {exc}"
    views = None
    if job.view_size is not None:
        views = make_views(video.key_frames, job.view_size, job.view_grid).numpy()
    return job.vid, scores, failures, views


def analyse(
    items: list[tuple[str, str]],
    *,
    teacher_names: list[str],
    cache_root: str | Path,
    key_rate: float,
    max_key_frames: int,
    features: FeatureStore | None = None,
    workers: int = 2,
    log: Callable[[str], None] = print,
) -> Analysis:
    """items: (video_id, path). Cached results are reused; only missing work decodes a video."""
    teachers = [create_teacher(n) for n in teacher_names]
    caches = {t.card.key: ScoreCache(Path(cache_root) / "scores", t.card.key) for t in teachers}
    out = Analysis()
    for t in teachers:
        out.scores[t.card.key], out.failures[t.card.key] = {}, {}
    out.failures["features"] = {}
    jobs = []
    for vid, path in items:
        need = []
        for t in teachers:
            hit = caches[t.card.key].get(vid)
            if hit is None:
                need.append(t.card.name)
            elif "score" in hit:
                out.scores[t.card.key][vid] = hit["score"]
            else:
                out.failures[t.card.key][vid] = hit["error"]
        feats = features.cached(vid) if features is not None else None
        if feats is not None:
            out.features[vid] = feats
        want_views = features is not None and feats is None
        if need or want_views:
            cfg = features.config if features is not None else None
            jobs.append(
                _Job(vid, str(path), tuple(need), key_rate, max_key_frames,
                     cfg.input_size if want_views else None, cfg.fragment_grid if cfg else 0)
            )
    if jobs:
        log(f"analyse: decoding {len(jobs)} of {len(items)} videos (the rest are cached)")
    try:
        for vid, scores, failures, views in bounded_map(_work, jobs, workers):
            out.decoded += 1
            if "*" in failures:  # undecodable: every teacher and the student fail on it
                for t in teachers:
                    caches[t.card.key].put(vid, {"error": failures["*"]})
                    out.failures[t.card.key][vid] = failures["*"]
                out.failures["features"][vid] = failures["*"]
                continue
            for key, res in scores.items():
                caches[key].put(vid, res)
                out.scores[key][vid] = res["score"]
            for key, reason in failures.items():
                caches[key].put(vid, {"error": reason})
                out.failures[key][vid] = reason
            if views is not None:
                out.features[vid] = features.add_views(vid, views)
    finally:
        for c in caches.values():
            c.flush()  # a killed step keeps what it finished
    for key, fails in out.failures.items():
        if fails:
            log(f"analyse: {key} failed on {len(fails)} videos, e.g. {next(iter(fails.values()))}")
    return out

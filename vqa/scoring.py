"""Scoring videos with a trained student (higher score = better quality).

`score_videos` is the user-facing API behind `vqa score`: paths may be files, folders (searched
recursively for video files), glob patterns or list files (``@list.txt``: one path per line).
Decoding and view-making run in worker processes, one video each, streamed through a bounded
window (a long 1080p video never sits in memory whole: only its key frames do). The backbone runs
through vqa.student.runtime: with ONNX Runtime each worker runs it on its own video (one thread
each), otherwise it runs here, one call per video. Results come back in input order, and are the
same whatever the worker count (ONNX Runtime's features do not depend on threads or batch size).
"""
from __future__ import annotations

import glob
import math
import multiprocessing
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from vqa.parallel import bounded_map
from vqa.student.model import StudentModel
from vqa.student.motion import with_motion
from vqa.student.runtime import backbone_runtime
from vqa.video import VIDEO_EXTENSIONS


def expand_paths(specs: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders -> their video files (recursive, sorted); globs -> their matches;
    ``@file`` -> the paths listed in it (one per line, '#' comments, relative to the list file).
    A spec that matches nothing raises FileNotFoundError naming it. Duplicates are kept once."""
    out: list[Path] = []
    for spec in specs:
        spec = str(spec)
        if spec.startswith("@"):
            listing = Path(spec[1:])
            try:
                lines = listing.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise FileNotFoundError(f"{listing}: cannot read the list file ({exc.strerror})") from None
            entries = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
            out += expand_paths(str(p if Path(p).is_absolute() else listing.parent / p) for p in entries)
            continue
        p = Path(spec)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS
                          and not any(part.startswith(".") for part in q.relative_to(p).parts))
        elif p.exists() or not glob.has_magic(spec):
            out.append(p)  # a missing plain file is reported per file, not fatal
        else:
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True) if Path(m).is_file())
            if not matches:
                raise FileNotFoundError(f"{spec}: the pattern matches no file")
            out += matches
    seen, unique = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


@dataclass(frozen=True)
class _ViewJob:
    path: str
    key_rate: float
    max_key_frames: int
    size: int
    grid: int
    onnx: str = ""  # the exported trunk: the worker computes features itself (one thread)
    motion_frames: int = 0  # the student's motion branch: descriptors of clips this long


def _views_job(job: _ViewJob) -> tuple[str, tuple | None, str, dict]:
    """-> (path, (views, motion), "", stats) or (path, (features, None), "", stats) when ``job.onnx``;
    (path, None, reason, stats) on failure. stats: this worker's peak RSS (MB)."""
    from vqa.bench.score import peak_rss_mb
    from vqa.student.views import read_for_student
    from vqa.video import failure_reason

    if multiprocessing.parent_process() is not None:
        # One worker per core already. Only in workers: run in-process (workers=1), this would
        # change the caller's thread count.
        torch.set_num_threads(1)
    try:
        _, views, motion = read_for_student(job.path, key_rate=job.key_rate, max_key_frames=job.max_key_frames,
                                            size=job.size, grid=job.grid, motion_frames=job.motion_frames)
        if job.onnx:
            from vqa.student.runtime import OrtRuntime

            out = (with_motion(OrtRuntime.from_file(job.onnx, threads=1).features(views), motion), None)
        else:
            out = (views, motion)
        error = ""
    except Exception as exc:  # a bad file, or a bug on an odd one: its row says why, the batch goes on
        out, error = None, failure_reason(exc)
    return job.path, out, error, {"peak_rss_mb": peak_rss_mb()}


def _crashed(job: _ViewJob) -> tuple[str, None, str, dict]:
    return job.path, None, "its worker process died (out of memory, or a crash in the decoder)", {}


def resolve_model(model: StudentModel | str | Path, *, tracking_uri: str | None = None) -> StudentModel:
    """A StudentModel, a checkpoint path, or a registry URI (models:/name@alias or /version)."""
    if isinstance(model, StudentModel):
        return model
    if str(model).startswith("models:/"):
        import mlflow

        from vqa.registry import load_registered_student

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(tracking_uri)
        return load_registered_student(str(model))[0]
    from vqa.student.checkpoint import load_student

    return load_student(model)


@torch.no_grad()
def score_videos(
    paths: Iterable[str | Path],
    *,
    model: StudentModel | str | Path,
    workers: int = 2,
    progress: Callable[[int, int, str], None] | None = None,
    tracking_uri: str | None = None,
    cache_dir: str | Path | None = None,
    anchored: bool = False,
    stats: dict | None = None,
) -> list[dict]:
    """Score videos -> one row per file, in input order: {"path", "score", "error"}.

    ``paths`` go through :func:`expand_paths`. Unreadable files get score NaN and the reason in
    ``error``; the others are scored. ``progress(done, total, path)`` is called per video.
    ``cache_dir`` keeps the exported backbone (default: vqa.student.runtime.default_cache_dir()).
    ``anchored``: rows also get "score_0_100", the score placed among the five anchor videos stored
    with the student at their corpus percentiles (vqa.student.anchors.percentile_scores; NaN for
    failed files). ``stats``, if given, gets "peak_rss_mb": the largest peak resident memory of a
    process that decoded (this one when workers=1; a forked worker's includes the pages it shares
    with this process)."""
    student = resolve_model(model, tracking_uri=tracking_uri)
    student.eval()
    anchors = None
    if anchored:
        from vqa.student.anchors import anchors_of

        anchors = anchors_of(student, where=str(model) if not isinstance(model, StudentModel) else "student")
    cfg = student.config
    runtime = backbone_runtime(student, cache_dir=cache_dir)
    files = expand_paths(paths)
    workers = workers if len(files) > 1 else 1
    # Several workers and an exported trunk: each worker runs the backbone on its own video on one
    # thread (no thread hand-offs, no views shipped back); the numbers are the same either way.
    in_workers = workers > 1 and getattr(runtime, "onnx_file", None) is not None
    onnx = str(runtime.onnx_file) if in_workers else ""
    jobs = [_ViewJob(str(p), cfg.key_rate, cfg.max_key_frames, cfg.input_size, cfg.fragment_grid, onnx,
                     cfg.motion_frames) for p in files]
    rows = []
    peak = 0.0
    for done, (path, out, error, job_stats) in enumerate(bounded_map(_views_job, jobs, workers, on_crash=_crashed), 1):
        peak = max(peak, job_stats.get("peak_rss_mb", 0.0))
        if out is None:
            rows.append({"path": path, "score": math.nan, "error": error})
        else:
            feats = out[0] if in_workers else with_motion(runtime.features(out[0]), out[1])
            rows.append({"path": path, "score": float(student.video_scores(torch.from_numpy(feats).unsqueeze(0))[0]),
                         "error": ""})
        if anchors is not None:
            score = rows[-1]["score"]
            rows[-1]["score_0_100"] = math.nan if math.isnan(score) else float(anchors.scores_0_100([score])[0])
        if progress is not None:
            progress(done, len(jobs), path)
    if stats is not None:
        stats["peak_rss_mb"] = peak
    return rows


def score_paths(model: StudentModel, paths: list[str | Path]) -> list[dict]:
    """The pyfunc's entry: score these paths in this process (the serving process owns its cores);
    rows carry "score_0_100" too when the student has its anchor set."""
    has_anchors = bool((getattr(model, "meta", {}) or {}).get("anchors"))
    return score_videos([str(p) for p in paths], model=model, workers=1, anchored=has_anchors)


def progress_bar(stream=sys.stderr) -> Callable[[int, int, str], None]:
    """A one-line progress display on a terminal; a line every 10% (and the last) otherwise."""
    tty = stream.isatty()

    def show(done: int, total: int, path: str) -> None:
        if tty:
            width = 30
            filled = int(width * done / total)
            stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {Path(path).name[:40]:<40}")
            if done == total:
                stream.write("\n")
            stream.flush()
        elif done == total or done % max(1, total // 10) == 0:
            print(f"scored {done}/{total}", file=stream, flush=True)

    return show


@torch.no_grad()
def scores_from_features(model: StudentModel, features: dict) -> dict[str, float]:
    """Video id -> score, from cached backbone features (no decoding)."""
    model.eval()
    out = {}
    for vid, f in features.items():
        out[vid] = float(model.video_scores(torch.from_numpy(f).unsqueeze(0))[0])
    return out

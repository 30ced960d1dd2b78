"""`vqa bench teachers`: seconds per video of every teacher, and the whole frame-statistics step
(one decode + the nine low-level statistics) as a ratio to decode-only time of the same frames.

Both passes run the same worker pool over the same files with the same decode settings (key
frames plus the 2-frame clips the temporal statistics need); the decode-only pass runs twice, before
and after, and the faster one is the baseline (the conservative choice). Files are read once
first so that neither pass pays for a cold disk cache. Peak resident memory is reported for the
main process and for the workers after the first half and after all videos: flat means the
second is about the first (videos are streamed, not accumulated).
"""
from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Callable

from vqa.bench import video_folder
from vqa.parallel import bounded_map
from vqa.pipeline.analyse import _Job, _work

def _bench_job(job: _Job):
    vid, scores, failures, _, seconds = _work(job)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    frames = max((len(v.get("frames", v.get("clips", []))) for v in scores.values()), default=0)
    return vid, frames, failures, seconds, rss_mb


def _pass(paths, teachers, *, clip_len, key_rate, max_key_frames, workers):
    jobs = [_Job(p.name, str(p), tuple(teachers), (), key_rate, max_key_frames, clip_len, None, 0) for p in paths]
    start = time.perf_counter()
    rows = list(bounded_map(_bench_job, jobs, workers))
    return time.perf_counter() - start, rows


def bench_teachers(
    videos: str | Path,
    *,
    teachers: list[str] | None = None,
    key_rate: float = 1.0,
    max_key_frames: int = 8,
    workers: int = 2,
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    from vqa.teachers import ClipTeacher, teacher_class, teacher_names
    from vqa.teachers.statistics import STATISTIC_TEACHERS

    root = Path(videos)
    paths = video_folder(root)[:limit]
    stats = [c.card.name for c in STATISTIC_TEACHERS]
    clip_len = max(c.clip_len for c in STATISTIC_TEACHERS if issubclass(c, ClipTeacher))
    # Load the registry here, as the teach step does, so forked workers inherit it (not timed).
    known = teacher_names()
    others = [n for n in (known if teachers is None else teachers) if n not in stats]
    settings = dict(key_rate=key_rate, max_key_frames=max_key_frames, workers=workers)

    for p in paths:  # warm the OS file cache for every pass alike
        p.read_bytes()
    log(f"bench: {len(paths)} videos from {root}, {workers} workers, clips of {clip_len} frames at each key frame")
    dec1, _ = _pass(paths, [], clip_len=clip_len, **settings)
    step, rows = _pass(paths, stats, clip_len=clip_len, **settings)
    dec2, dec_rows = _pass(paths, [], clip_len=clip_len, **settings)
    decode = min(dec1, dec2)
    frames = 0
    per_teacher: dict[str, list[float]] = {}
    failures: dict[str, int] = {}
    half_rss = all_rss = 0.0
    for i, (vid, n_frames, fails, seconds, rss) in enumerate(rows):
        frames += n_frames
        for key, s in seconds.items():
            per_teacher.setdefault(key.split("@")[0], []).append(s)
        for key in fails:
            failures[key] = failures.get(key, 0) + 1
        all_rss = max(all_rss, rss)
        if i < len(rows) // 2:
            half_rss = max(half_rss, rss)
    other_wall, other_rss = {}, 0.0
    for name in others:  # one pass per other teacher: its own seconds per video
        cls = teacher_class(name)
        wall, orows = _pass(paths, [name], clip_len=max(clip_len, getattr(cls, "clip_len", 0)), **settings)
        other_wall[name] = wall
        for _, _, fails, seconds, rss in orows:
            per_teacher.setdefault(name, []).append(seconds.get(cls.card.key, 0.0))
            for key in fails:
                failures[key] = failures.get(key, 0) + 1
            other_rss = max(other_rss, rss)

    per_video = {k: sum(v) / len(v) for k, v in per_teacher.items()}
    log(f"{'teacher':<14} {'s/video':>9}   (CPU seconds in a worker, mean over {len(paths)} videos)")
    for k in ["decode"] + stats + others:
        if k in per_video:
            log(f"{k:<14} {per_video[k]:>9.4f}")
    ratio = step / decode if decode > 0 else float("nan")
    log(f"decode-only {decode:.2f} s (passes: {dec1:.2f} s, {dec2:.2f} s); decode + nine statistics {step:.2f} s "
        f"-> ratio {ratio:.2f} (target <= 3)")
    if failures:
        log(f"bench: failures per teacher: {failures}")
    result = {
        "videos": len(paths),
        "key_frames": frames,
        "workers": workers,
        "decode_only_s": round(decode, 3),
        "statistics_step_s": round(step, 3),
        "statistics_to_decode_ratio": round(ratio, 3),
        "target_ratio": 3.0,
        "meets_target": bool(ratio <= 3.0),
        "seconds_per_video": {k: round(v, 5) for k, v in per_video.items()},
        "teacher_pass_wall_s": {k: round(v, 2) for k, v in other_wall.items()},
        "failures": failures,
        "peak_rss_mb": {
            "main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            # the statistics pass (fresh workers): after half the videos, and after all of them
            "statistics_worker_first_half": round(half_rss, 1),
            "statistics_worker_all": round(all_rss, 1),
            "other_teachers_worker": round(other_rss, 1),
        },
    }
    return result


def main_json(result: dict) -> str:
    return json.dumps(result, sort_keys=True)

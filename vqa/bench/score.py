"""`vqa bench score`: scoring speed as a ratio to decode-only time of the same videos (same
workers, same run), and the peak resident memory of scoring one 1080p 8 s video.

The decode-only baseline decodes exactly what scoring decodes (the student's key frames and the
motion branch's clips, same settings). Memory is measured in a fresh process that scores only the 1080p clip, so the figure
is the scorer's own peak (model included), not the benchmark's.
"""
from __future__ import annotations

import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np


def _decode_only(job) -> int:
    from vqa.video import VideoError, read_video

    path, key_rate, max_key_frames, motion_len = job
    try:
        return len(read_video(path, key_rate=key_rate, max_key_frames=max_key_frames, motion_len=motion_len).key_times)
    except VideoError:
        return 0


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def make_1080p_clip(path: Path, seconds: float = 8.0, fps: int = 25, seed: int = 0) -> Path:
    """A synthetic 1920x1080 clip (panning seeded texture), x264 ultrafast: a memory test input."""
    from fractions import Fraction

    import av

    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 256, size=(1080 // 8, (1920 + 8 * int(seconds * fps)) // 8, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(tex, 8, axis=0), 8, axis=1)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps), options={"preset": "ultrafast", "crf": "23"})
        s.width, s.height, s.pix_fmt = 1920, 1080, "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(tex[:, 8 * i : 8 * i + 1920]), format="rgb24")
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def _score_alone(args) -> tuple[float, float]:
    """In a fresh process: score one file, return (seconds, peak RSS in MB)."""
    from vqa.scoring import score_videos

    model, path = args
    t0 = time.perf_counter()
    rows = score_videos([path], model=model, workers=1)
    if rows[0]["error"]:
        raise RuntimeError(f"{path}: {rows[0]['error']}")
    return time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_score(videos: str | Path, *, model, workers: int = 2, limit: int | None = None,
                log: Callable[[str], None] = print) -> dict:
    import multiprocessing

    from vqa.parallel import bounded_map
    from vqa.bench import video_folder
    from vqa.scoring import resolve_model, score_videos
    from vqa.student.runtime import backbone_runtime

    student = resolve_model(model)
    cfg = student.config
    runtime = backbone_runtime(student)  # a one-off export (cached on disk) is setup, not scoring
    paths = video_folder(Path(videos))[:limit]
    for p in paths:
        p.read_bytes()  # warm the file cache for both passes alike
    jobs = [(str(p), cfg.key_rate, cfg.max_key_frames, cfg.motion_frames) for p in paths]
    log(f"bench: {len(paths)} videos, {workers} workers, backbone {cfg.backbone} at {cfg.input_size}px, "
        f"runtime {runtime.name}, torch threads {__import__('torch').get_num_threads()}")
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    frames = sum(bounded_map(_decode_only, jobs, workers))
    decode_wall, decode_cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    rows = score_videos(paths, model=student, workers=workers)
    score_wall, score_cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    failed = sum(1 for r in rows if r["error"])
    ratio = score_wall / decode_wall
    log(f"decode-only {decode_wall:.2f} s wall ({decode_cpu / len(paths):.3f} CPU s/video); scoring "
        f"{score_wall:.2f} s wall ({score_cpu / len(paths):.3f} CPU s/video) -> ratio {ratio:.2f} (target <= 2)")

    with tempfile.TemporaryDirectory() as tmp:
        big = make_1080p_clip(Path(tmp) / "1080p_8s.mp4")
        ckpt = Path(tmp) / "student.pt"
        from vqa.student.checkpoint import save_student

        save_student(ckpt, student)
        ctx = multiprocessing.get_context("spawn")  # a clean process: nothing inherited
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            big_s, big_rss = pool.submit(_score_alone, (str(ckpt), str(big))).result()
    log(f"1080p 8 s clip: scored in {big_s:.2f} s, peak resident memory {big_rss:.0f} MB (target < 1536)")
    return {
        "videos": len(paths),
        "key_frames": frames,
        "failed": failed,
        "workers": workers,
        "backbone_runtime": runtime.name,
        "decode_only_s": round(decode_wall, 3),
        "score_s": round(score_wall, 3),
        "score_to_decode_ratio": round(ratio, 3),
        "target_ratio": 2.0,
        "meets_target": bool(ratio <= 2.0),
        "cpu_s_per_video": {"decode_only": round(decode_cpu / len(paths), 4), "score": round(score_cpu / len(paths), 4)},
        "peak_rss_mb_1080p_8s": round(big_rss, 1),
        "seconds_1080p_8s": round(big_s, 2),
        "memory_target_mb": 1536,
    }

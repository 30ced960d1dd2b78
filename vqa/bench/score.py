"""`vqa bench score`: scoring speed per resolution band as a ratio to decode-only time of the same
videos (same workers, same run), CPU seconds per video and per video-second, peak memory; worker
scaling; the peak resident memory of scoring one 4K clip.

Decode-only baseline: exactly the frames scoring decodes (read_video with the student's sampling:
its key instants and motion clips, the same seeks), the key frames converted to RGB at full size
and the motion clips to small luma. Scoring adds the views, the motion descriptors, the backbone
and the head. Bands go by the short side of the picture, each up to about midway to the next
standard height: <=360p (up to 400 px), 540p (401-600: 480p and 544-line encodes too), 720p
(601-800), 1080p (801-1200), >=1440p (above 1200).
"""
from __future__ import annotations

import math
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

BANDS = (("<=360p", 400), ("540p", 600), ("720p", 800), ("1080p", 1200), (">=1440p", math.inf))
# Targets on 2 CPU cores (issue 15): scoring / decode-only at most this per band.
TARGET_RATIO = {"540p": 2.0, "720p": 1.5, "1080p": 1.5, ">=1440p": 1.5}
MEMORY_TARGET_MB = 1536


def band_of(short_side: int) -> str:
    return next(name for name, top in BANDS if short_side <= top)


def _describe(path: str) -> tuple[str, float] | None:
    """(band, duration in seconds) from the container, or None if it does not open."""
    from vqa.video.source import open_source

    try:
        src = open_source(path)
    except Exception:  # scored (and reported) as a failure in both passes
        return None
    try:
        m = src.meta
        return band_of(min(m.width, m.height)), m.duration
    finally:
        src.close()


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB). Linux: VmHWM, the high-water mark of this address
    space. Not ru_maxrss: that keeps the parent's peak across fork and exec, so a fresh process
    started from a big one would report the big one's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _decode_only(job) -> tuple[int, float]:
    from vqa.video import read_video

    path, key_rate, max_key_frames, motion_len = job
    try:
        n = len(read_video(path, key_rate=key_rate, max_key_frames=max_key_frames, motion_len=motion_len).key_times)
    except Exception:  # the same file fails when scored: counted there
        n = 0
    return n, peak_rss_mb()


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def make_clip(path: Path, width: int = 1920, height: int = 1080, seconds: float = 8.0, fps: int = 25,
              seed: int = 0) -> Path:
    """A synthetic clip (panning seeded texture), x264 ultrafast: a memory test input."""
    from fractions import Fraction

    import av

    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    tex = rng.integers(0, 256, size=(height // 8, (width + 8 * n) // 8, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(tex, 8, axis=0), 8, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps), options={"preset": "ultrafast", "crf": "23"})
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(tex[:, 8 * i : 8 * i + width]), format="rgb24")
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    tmp.replace(path)
    return path


def _score_alone(args) -> tuple[float, float]:
    """In a fresh process: score one file, return (seconds, peak RSS in MB)."""
    from vqa.scoring import score_videos

    model, path = args
    t0 = time.perf_counter()
    rows = score_videos([path], model=model, workers=1)
    if rows[0]["error"]:
        raise RuntimeError(f"{path}: {rows[0]['error']}")
    return time.perf_counter() - t0, peak_rss_mb()


def _pass(paths: list[Path], student, jobs, workers: int) -> dict:
    """Decode-only, then scoring, of the same videos: walls, CPU, peaks."""
    from vqa.parallel import bounded_map
    from vqa.scoring import score_videos

    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    decoded = list(bounded_map(_decode_only, jobs, workers))
    decode_wall, decode_cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    stats: dict = {}
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    rows = score_videos(paths, model=student, workers=workers, stats=stats)
    score_wall, score_cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    return {"decode_wall": decode_wall, "decode_cpu": decode_cpu, "score_wall": score_wall, "score_cpu": score_cpu,
            "key_frames": sum(n for n, _ in decoded), "failed": sum(1 for r in rows if r["error"]),
            "errors": [f"{r['path']}: {r['error']}" for r in rows if r["error"]],
            "peak_rss_mb": stats.get("peak_rss_mb", 0.0)}


def _figures(res: dict, n: int, seconds: float, target: float | None) -> dict:
    ratio = res["score_wall"] / res["decode_wall"] if res["decode_wall"] > 0 else math.nan
    out = {
        "videos": n,
        "video_seconds": round(seconds, 1),
        "failed": res["failed"],
        "key_frames": res["key_frames"],
        "decode_only_s": round(res["decode_wall"], 3),
        "score_s": round(res["score_wall"], 3),
        "ratio": round(ratio, 3),
        # the same ratio in CPU seconds: steadier than wall time when other work shares the cores
        "cpu_ratio": round(res["score_cpu"] / res["decode_cpu"], 3) if res["decode_cpu"] > 0 else None,
        "wall_s_per_video": round(res["score_wall"] / n, 4),
        "cpu_s_per_video": {"decode_only": round(res["decode_cpu"] / n, 4), "score": round(res["score_cpu"] / n, 4)},
        "cpu_s_per_video_second": {"decode_only": round(res["decode_cpu"] / seconds, 4) if seconds else None,
                                   "score": round(res["score_cpu"] / seconds, 4) if seconds else None},
        "peak_rss_mb": round(res["peak_rss_mb"], 1),
    }
    if target is not None:
        out["target_ratio"] = target
        out["meets_target"] = bool(ratio <= target)
    return out


def bench_score(videos, *, model, workers: int = 2, limit: int | None = None, scaling: bool = False,
                memory_size: tuple[int, int] | None = (3840, 2160), cache_dir: str | Path | None = None,
                log: Callable[[str], None] = print) -> dict:
    """``videos``: one folder or several. ``memory_size``: (width, height) of the synthetic 8 s clip
    whose scoring memory is measured in a fresh process (None: skip). Returns the figures (also
    logged as a table)."""
    import multiprocessing

    import torch

    from vqa.bench import video_folder
    from vqa.scoring import resolve_model, score_videos
    from vqa.student.runtime import backbone_runtime, default_cache_dir

    student = resolve_model(model)
    cfg = student.config
    runtime = backbone_runtime(student)  # a one-off export (cached on disk) is setup, not scoring
    folders = [videos] if isinstance(videos, (str, Path)) else list(videos)
    paths = [p for f in folders for p in video_folder(Path(f))][:limit]
    described = {p: _describe(str(p)) for p in paths}
    for p in paths:
        p.read_bytes()  # warm the file cache for both passes alike
    log(f"bench: {len(paths)} videos, {workers} workers, backbone {cfg.backbone} at {cfg.input_size}px, "
        f"runtime {runtime.name}, torch threads {torch.get_num_threads()}")

    def job(p: Path):
        return str(p), cfg.key_rate, cfg.max_key_frames, cfg.motion_frames

    # untimed warm-up: the modules both passes import, so the first band's pools start like the rest
    readable = [p for p in paths if described[p]]
    if readable:
        _pass(readable[:1], student, [job(readable[0])], 1)

    bands: dict[str, dict] = {}
    totals = {"decode_wall": 0.0, "decode_cpu": 0.0, "score_wall": 0.0, "score_cpu": 0.0, "key_frames": 0,
              "failed": 0, "peak_rss_mb": 0.0}
    errors: list[str] = []
    unreadable = [p for p in paths if described[p] is None]
    groups = [(name, [p for p in paths if described[p] and described[p][0] == name]) for name, _ in BANDS]
    if unreadable:
        groups.append(("unreadable", unreadable))
    for name, members in groups:
        if not members:
            continue
        res = _pass(members, student, [job(p) for p in members], workers)
        seconds = sum(described[p][1] for p in members if described[p])
        bands[name] = _figures(res, len(members), seconds, TARGET_RATIO.get(name))
        errors += res.pop("errors")
        for k in totals:
            totals[k] = max(totals[k], res[k]) if k == "peak_rss_mb" else totals[k] + res[k]
        b = bands[name]
        log(f"{name:>8}: {b['videos']:3d} videos {b['video_seconds']:7.1f} s | decode-only {b['decode_only_s']:6.2f} s, "
            f"scoring {b['score_s']:6.2f} s -> ratio {b['ratio']:.2f}"
            + (f" (target <= {b['target_ratio']})" if "target_ratio" in b else "")
            + f", in CPU s {b['cpu_ratio']:.2f} | CPU s/video {b['cpu_s_per_video']['score']:.3f} (decode {b['cpu_s_per_video']['decode_only']:.3f})"
            f", per video-second {b['cpu_s_per_video_second']['score'] or 0:.4f} | peak RSS {b['peak_rss_mb']:.0f} MB")
    for e in errors:
        log(f"bench: failed: {e}")
    ratio = totals["score_wall"] / totals["decode_wall"] if totals["decode_wall"] else math.nan
    cpu_ratio = totals["score_cpu"] / totals["decode_cpu"] if totals["decode_cpu"] else math.nan
    log(f" overall: {len(paths)} videos, ratio {ratio:.2f}, in CPU s {cpu_ratio:.2f}; "
        f"scoring process peak RSS {peak_rss_mb():.0f} MB")
    result = {
        "videos": len(paths),
        "key_frames": totals["key_frames"],
        "failed": totals["failed"],
        "workers": workers,
        "backbone_runtime": runtime.name,
        "decode_only_s": round(totals["decode_wall"], 3),
        "score_s": round(totals["score_wall"], 3),
        "score_to_decode_ratio": round(ratio, 3),
        "score_to_decode_cpu_ratio": round(cpu_ratio, 3),
        "cpu_s_per_video": {"decode_only": round(totals["decode_cpu"] / len(paths), 4),
                            "score": round(totals["score_cpu"] / len(paths), 4)},
        "bands": bands,
        "main_process_peak_rss_mb": round(peak_rss_mb(), 1),
    }

    if scaling:  # throughput at 1..workers processes, on every video
        walls = {}
        for w in range(1, workers + 1):
            t0 = time.perf_counter()
            score_videos(paths, model=student, workers=w)
            walls[w] = time.perf_counter() - t0
        result["scaling"] = {str(w): {"wall_s": round(s, 3), "videos_per_s": round(len(paths) / s, 3),
                                      "speedup": round(walls[1] / s, 3)} for w, s in walls.items()}
        log("scaling: " + ", ".join(f"{w} workers {len(paths) / s:.2f} videos/s (x{walls[1] / s:.2f})"
                                    for w, s in walls.items()))

    if memory_size:
        from vqa.student.checkpoint import save_student

        # made once per cache: encoding a 4K clip takes a while
        w, h = memory_size
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        big = root / "bench" / f"synthetic_{w}x{h}_8s.mp4"
        if not big.exists():
            make_clip(big, w, h)
        ckpt = root / "bench" / "student.pt"
        save_student(ckpt, student)
        ctx = multiprocessing.get_context("spawn")  # a clean process: nothing inherited
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            big_s, big_rss = pool.submit(_score_alone, (str(ckpt), str(big))).result()
        log(f"{w}x{h} 8 s clip: scored alone in {big_s:.2f} s, peak resident memory {big_rss:.0f} MB "
            f"(target < {MEMORY_TARGET_MB} for 4K)")
        result["memory_clip"] = {"size": f"{w}x{h}", "seconds": 8, "score_s": round(big_s, 2),
                                 "peak_rss_mb": round(big_rss, 1), "target_mb": MEMORY_TARGET_MB}
    return result

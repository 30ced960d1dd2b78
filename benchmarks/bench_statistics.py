"""Milliseconds per 540p key frame of each low-level statistic teacher, on one core.

Run: .venv/bin/python benchmarks/bench_statistics.py [--frames 8] [--repeats 7] [--height 540 --width 960]

"cold" clears the shared luma cache first (the statistic pays for luma itself), "warm" has luma
already cached (its own marginal cost), "all nine" runs them in order on one decoded video as the
teacher step does. Clip statistics are charged per key frame (one 2-frame clip each).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: before numpy loads BLAS

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from vqa import distortions as D  # noqa: E402
from vqa.teachers import statistics as S  # noqa: E402
from vqa.teachers.base import ClipTeacher  # noqa: E402


def _video(t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Natural-ish key frames (a slow pan over astronaut) and their 2-frame clips."""
    from skimage import data

    photo = D.resize(data.astronaut(), h + 2 * t + 4, w + 2 * t + 4)
    frames = np.stack([photo[i : i + h, 2 * i : 2 * i + w] for i in range(t + 1)])
    clips = np.stack([frames[i : i + 2] for i in range(t)])
    return np.ascontiguousarray(frames[:t]), np.ascontiguousarray(clips)


def _median_ms(fn, repeats: int, per: int, setup=None) -> float:
    times = []
    for _ in range(repeats + 1):  # first run warms imports and allocator
        if setup:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:])) * 1e3 / per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--height", type=int, default=540)
    ap.add_argument("--width", type=int, default=960)
    a = ap.parse_args()
    frames, clips = _video(a.frames, a.height, a.width)
    t = a.frames

    def call(cls):
        teacher = cls()
        if issubclass(cls, ClipTeacher):
            return lambda: teacher.score_clips(clips[:, : cls.clip_len])
        return lambda: teacher.score_frames(frames)

    def warm_luma(cls):
        return lambda: (S.clear_cache(), S.luma(clips[:, :2] if issubclass(cls, ClipTeacher) else frames))

    print(f"{a.width}x{a.height}, {t} key frames (+ one 2-frame clip each), median of {a.repeats}, one core")
    print(f"{'statistic':<14} {'cold ms/frame':>14} {'warm ms/frame':>14}")
    for cls in S.STATISTIC_TEACHERS:
        cold = _median_ms(call(cls), a.repeats, t, setup=S.clear_cache)
        warm = _median_ms(call(cls), a.repeats, t, setup=warm_luma(cls))
        print(f"{cls.card.name:<14} {cold:>14.2f} {warm:>14.2f}")
    luma_ms = _median_ms(lambda: S.luma(frames), a.repeats, t, setup=S.clear_cache)
    fp_ms = _median_ms(lambda: S._fingerprint(frames), a.repeats, t)
    print(f"{'(luma)':<14} {luma_ms:>14.2f}")
    print(f"{'(fingerprint)':<14} {fp_ms:>14.2f}   per cache lookup")
    teachers = [call(cls) for cls in S.STATISTIC_TEACHERS]
    total = _median_ms(lambda: [fn() for fn in teachers], a.repeats, t, setup=S.clear_cache)
    print(f"{'all nine':<14} {total:>14.2f}   (teacher-step order, shared luma)")


if __name__ == "__main__":
    main()

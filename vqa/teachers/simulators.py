"""Heterogeneous teachers: distortion simulators whose quality order is known by construction.

A simulator turns one source video into versions at graded levels (level 1 = least distorted).
Fusion labels pairs of versions of the same source from the level gap alone.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vqa.teachers.base import TeacherCard

SIMULATOR_CARDS = (
    TeacherCard(
        name="h264",
        version="libx264-fast",
        higher_is_better=False,  # a higher level (CRF) is worse
        score_range=None,
        needs="file",
        kind="heterogeneous",
        summary="H.264 re-encoding (preset fast) at graded CRF levels; paper: 24, 36, 48, 63",
    ),
)


@dataclass(frozen=True)
class SimulatedVideo:
    source_id: str
    simulator: str
    level: int  # 1-based rank of the distortion strength
    param: float  # the level's parameter (CRF for h264)
    path: str


def pick_sources(video_ids: list[str], count: int, seed: int) -> list[str]:
    """A seeded subset of the corpus, independent of manifest order."""
    ids = sorted(video_ids)
    if count >= len(ids):
        return ids
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(ids, size=count, replace=False).tolist())


def _h264_one(job: tuple[str, str, str, list[int], str]) -> list[SimulatedVideo]:
    from vqa.video.encode import reencode

    source_id, src, out_dir, crfs, preset = job
    made = []
    for level, crf in enumerate(crfs, start=1):
        dst = Path(out_dir) / f"{source_id[:16]}__h264__crf{crf}.mp4"
        if not dst.exists():  # written atomically, so an existing file is complete
            reencode(src, dst, codec="libx264", crf=crf, preset=preset)
        made.append(SimulatedVideo(source_id, "h264", level, float(crf), dst.as_posix()))
    return made


def simulate_h264(
    sources: list[tuple[str, str]], out_dir: str | Path, *, crfs: list[int], preset: str, workers: int = 2
) -> list[SimulatedVideo]:
    """Re-encode each (source_id, path) at every CRF level; resumes by skipping finished files."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    jobs = [(sid, str(path), str(out_dir), list(crfs), preset) for sid, path in sources]
    if workers <= 1 or len(jobs) <= 1:
        results = [_h264_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_h264_one, jobs))
    return [v for group in results for v in group]

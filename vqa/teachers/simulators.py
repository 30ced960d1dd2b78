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

def _simulator_card(name: str, version: str, summary: str) -> TeacherCard:
    # Every simulator: a higher level is worse, and it works on the whole file.
    return TeacherCard(name=name, version=version, higher_is_better=False, score_range=None,
                       needs="file", kind="heterogeneous", summary=summary)


SIMULATOR_CARDS = (
    _simulator_card("h264", "libx264-fast",
                    "H.264 re-encoding (preset fast) at graded CRF levels; paper: 24, 36, 48, 63"),
    _simulator_card("blur", "gauss-v1",
                    "Gaussian blur of every frame at graded sigma (pixels); paper: 0.1, 0.5, 1, 2, 5"),
    _simulator_card("noise", "gauss-crn-v1",
                    "additive Gaussian noise at graded sigma ([0, 1] pixels); paper: .001, .002, .003, .005, .01"),
    _simulator_card("resize", "bilinear-v1",
                    "downscale then upscale back (antialiased bilinear) by graded factors; paper: 2, 3, 4, 8, 16"),
)

# Simulators that apply a frame op (vqa.distortions) per level; see _apply.
FRAME_SIMULATORS = ("blur", "noise", "resize")


@dataclass(frozen=True)
class SimulatedVideo:
    source_id: str
    simulator: str
    level: int  # 1-based rank of the distortion strength
    param: float  # the level's parameter (CRF for h264, sigma or factor for frame ops)
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


# Each frame simulator is one op of vqa.distortions and the name of its strength parameter.
_FRAME_OPS = {"blur": ("gaussian_blur", "sigma"), "noise": ("gaussian_noise", "sigma"), "resize": ("resize_down_up", "factor")}


def _apply(simulator: str, frame: np.ndarray, value: float, rng: np.random.Generator | None) -> np.ndarray:
    from vqa.distortions import apply_op

    op, param = _FRAME_OPS[simulator]
    return apply_op(frame, {"op": op, param: value}, rng)


def _source_key(source_id: str) -> int:
    """32-bit seed part from the content id (a sha256), so noise does not depend on job order."""
    try:
        return int(source_id[:8], 16)
    except ValueError:  # non-hex ids (hand-made lists): hash them instead
        import hashlib

        return int(hashlib.sha256(source_id.encode()).hexdigest()[:8], 16)


def frame_version_path(out_dir: str | Path, source_id: str, simulator: str, level: int) -> Path:
    return Path(out_dir) / f"{source_id[:16]}__{simulator}__L{level}.mp4"


_TAG = "vqa-simulator "


def _version_tag(source_id: str, simulator: str, value: float, seed: int, crf: int, preset: str) -> str:
    """What made a version, kept in its ``comment`` tag: the file name alone (level index) does
    not change when levels, seed or CRF do, and a stale file must not be resumed."""
    import hashlib
    import json

    version = {c.name: c.version for c in SIMULATOR_CARDS}[simulator]
    spec = {"source": source_id, "simulator": f"{simulator}@{version}", "value": float(value),
            "seed": int(seed) if simulator == "noise" else None, "crf": int(crf), "preset": preset}
    return _TAG + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _is_current(path: Path, tag: str) -> bool:
    if not path.is_file():
        return False
    try:
        import av

        with av.open(str(path)) as c:
            return c.metadata.get("comment") == tag
    except Exception:  # unreadable or foreign file: rebuild it
        return False


def _frames_one(job: tuple) -> list[SimulatedVideo]:
    from vqa.video import iter_frames
    from vqa.video.encode import video_fps, write_video

    source_id, src, out_dir, simulator, levels, seed, crf, preset = job
    tags = {k: _version_tag(source_id, simulator, v, seed, crf, preset) for k, v in enumerate(levels, start=1)}
    # Atomic writes: an existing file with the right tag is complete and current.
    todo = [(k, v) for k, v in enumerate(levels, start=1)
            if not _is_current(frame_version_path(out_dir, source_id, simulator, k), tags[k])]
    if todo:
        # One decode serves every level; a demo clip (~100 frames, <= 540p) fits in memory.
        frames = [f for _, f in iter_frames(src)]
        fps = video_fps(src)
        for k, value in todo:
            # Seeded per (run seed, source), not per job: same bytes whatever the worker count. Every
            # level gets the same field (common random numbers), so a higher level is more of it.
            rng = np.random.default_rng([seed, _source_key(source_id)]) if simulator == "noise" else None
            write_video(frame_version_path(out_dir, source_id, simulator, k),
                        (_apply(simulator, f, value, rng) for f in frames),
                        fps=fps, codec="libx264", crf=crf, preset=preset, metadata={"comment": tags[k]})
        del frames
    return [SimulatedVideo(source_id, simulator, k, float(v), frame_version_path(out_dir, source_id, simulator, k).as_posix())
            for k, v in enumerate(levels, start=1)]


def simulate_frames(
    sources: list[tuple[str, str]],
    out_dir: str | Path,
    *,
    simulator: str,
    levels: list[float],
    seed: int,
    workers: int = 2,
    crf: int = 12,
    preset: str = "fast",
) -> list[SimulatedVideo]:
    """Apply a frame op (blur / noise / resize) at every level to each (source_id, path).

    Each version is encoded near-losslessly (``crf``) so the simulated distortion, not the codec,
    sets the quality order. Existing outputs made from the same settings are skipped (resume);
    ones made from other settings (levels, seed, CRF) are rebuilt.
    """
    if simulator not in FRAME_SIMULATORS:
        raise ValueError(f"unknown frame simulator {simulator!r}; expected one of {FRAME_SIMULATORS}")
    levels = [float(v) for v in levels]
    if not levels or any(b <= a for a, b in zip(levels, levels[1:])):
        raise ValueError(f"{simulator}: levels must be non-empty and strictly increasing, got {levels}")
    from vqa.parallel import bounded_map

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    jobs = [(sid, str(path), str(out_dir), simulator, levels, int(seed), int(crf), preset) for sid, path in sources]
    # Spawning a pool costs more than one small job saves.
    results = bounded_map(_frames_one, jobs, workers if len(jobs) > 1 else 1)
    return [v for group in results for v in group]

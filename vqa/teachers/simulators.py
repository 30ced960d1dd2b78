"""Heterogeneous teachers: distortion simulators whose quality order is known by construction.

A simulator turns one source video into versions at graded levels (level 1 = least distorted).
Fusion labels pairs of versions of the same source from the level gap alone.

Two families: codec simulators (h264, h265) re-encode the source at graded CRF; frame
simulators decode it once, distort the frames at every level and encode each version
near-losslessly. Every output carries its provenance in the container tags: ``comment`` holds
a hash of what made it (resume key), ``description`` the same as readable JSON.
"""
from __future__ import annotations

import json
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
    _simulator_card("h265", "libx265-veryslow",
                    "H.265 re-encoding (preset veryslow) at graded CRF levels; paper: 36, 40, 44, 48"),
    _simulator_card("blur", "gauss-v1",
                    "Gaussian blur of every frame at graded sigma (pixels); paper: 0.1, 0.5, 1, 2, 5"),
    _simulator_card("noise", "gauss-crn-v1",
                    "additive Gaussian noise at graded sigma ([0, 1] pixels); paper: .001, .002, .003, .005, .01"),
    _simulator_card("resize", "bilinear-v1",
                    "downscale then upscale back (antialiased bilinear) by graded factors; paper: 2, 3, 4, 8, 16"),
    _simulator_card("darken", "kadid-power-v1",
                    "under-exposure tone curve (1 - p/2) x ** (1 + 3p) at graded p; paper: .05, .1, .2, .4, .8"),
    _simulator_card("brighten", "kadid-power-v1",
                    "over-exposure tone curve 1 - (1 - x) ** (1 + 3p) at graded p; paper: .1, .2, .4, .7, 1.1"),
    _simulator_card("jitter", "shift-crop-crn-v1",
                    "camera shake: per frame a random integer shift within +-m px, crop a 2m border, scale "
                    "back; m a graded fraction of the short side (paper: 3 levels)"),
    _simulator_card("stutter", "repeat-crn-v1",
                    "frame freezes: each frame replaced by the previous output at graded rate p (paper: 3 levels)"),
)

# Codec simulators: the encoder each uses (vqa.video.encode names).
CODEC_SIMULATORS = {"h264": "libx264", "h265": "libx265"}
# Simulators that apply a vqa.distortions op to decoded frames; see _level_frames.
FRAME_SIMULATORS = ("blur", "noise", "resize", "darken", "brighten", "jitter", "stutter")
# These draw random numbers, seeded per (run seed, source) so bytes do not depend on job order.
RANDOM_SIMULATORS = ("noise", "jitter", "stutter")


@dataclass(frozen=True)
class SimulatedVideo:
    source_id: str
    simulator: str
    level: int  # 1-based rank of the distortion strength
    param: float  # the level's parameter (CRF for codecs, sigma / factor / p / fraction for frame ops)
    path: str


def pick_sources(video_ids: list[str], count: int, seed: int, *, validation: set[str] = frozenset(),
                 validation_share: float = 0.0) -> list[str]:
    """A seeded subset of the corpus, independent of manifest order. With validation videos,
    round(count x validation_share) of the sources are drawn from them (as many as there are)
    and the rest from the other videos, so the validation figure has known-order groups of its own."""
    ids = sorted(video_ids)
    if count >= len(ids):
        return ids
    rng = np.random.default_rng(seed)
    if not validation or validation_share <= 0:
        return sorted(rng.choice(ids, size=count, replace=False).tolist())
    held = [v for v in ids if v in validation]
    rest = [v for v in ids if v not in validation]
    n_val = min(len(held), int(round(count * validation_share)))
    n_train = min(len(rest), count - n_val)
    picked = rng.choice(rest, size=n_train, replace=False).tolist() if n_train else []
    picked += rng.choice(held, size=n_val, replace=False).tolist() if n_val else []
    return sorted(picked)


def _check_levels(simulator: str, levels: list[float]) -> None:
    if not levels or any(b <= a for a, b in zip(levels, levels[1:])):
        raise ValueError(f"{simulator}: levels must be non-empty and strictly increasing, got {levels}")


# ----------------------------------------------------------------------------- provenance / resume

_TAG = "vqa-simulator "


@dataclass(frozen=True)
class Extent:
    """How much of a source a version keeps: the longer side in pixels and the first seconds
    (None: all). Real clips can be long and 1080p; the known order needs neither."""

    max_side: int | None = None
    max_seconds: float | None = None


FULL = Extent()


def _spec(source_id: str, simulator: str, value: float, seed: int, crf: int, preset: str, extent: Extent) -> dict:
    version = {c.name: c.version for c in SIMULATOR_CARDS}[simulator]
    spec = {"source": source_id, "simulator": f"{simulator}@{version}", "value": float(value),
            "seed": int(seed) if simulator in RANDOM_SIMULATORS else None, "crf": int(crf), "preset": preset}
    if extent != FULL:  # only then: versions made before extents existed keep their tags
        spec["extent"] = [extent.max_side, extent.max_seconds]
    return spec


def _version_tag(source_id: str, simulator: str, value: float, seed: int, crf: int, preset: str,
                 extent: Extent = FULL) -> str:
    """What made a version, kept in its ``comment`` tag: the file name alone (level index) does
    not change when levels, seed, CRF or extent do, and a stale file must not be resumed."""
    import hashlib

    spec = _spec(source_id, simulator, value, seed, crf, preset, extent)
    return _TAG + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _metadata(source_id: str, simulator: str, level: int, value: float, seed: int, crf: int, preset: str,
              extent: Extent = FULL, **extra) -> dict[str, str]:
    """Container tags: the resume hash and readable provenance (the file is self-describing)."""
    info = _spec(source_id, simulator, value, seed, crf, preset, extent) | {"level": int(level)} | extra
    return {"comment": _version_tag(source_id, simulator, value, seed, crf, preset, extent),
            "description": json.dumps(info, sort_keys=True)}


def _is_current(path: Path, tag: str) -> bool:
    if not path.is_file():
        return False
    try:
        import av

        with av.open(str(path)) as c:
            return c.metadata.get("comment") == tag
    except Exception:  # unreadable or foreign file: rebuild it
        return False


def provenance(path: str | Path) -> dict | None:
    """The JSON provenance a simulator wrote into ``path`` (None for other files)."""
    import av

    with av.open(str(path)) as c:
        text = c.metadata.get("description")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


# ----------------------------------------------------------------------------- codec simulators

def codec_version_path(out_dir: str | Path, source_id: str, simulator: str, crf: int) -> Path:
    return Path(out_dir) / f"{source_id[:16]}__{simulator}__crf{int(crf)}.mp4"


def _codec_one(job: tuple) -> SimulatedVideo:
    from vqa.video.encode import reencode

    source_id, src, out_dir, simulator, level, crf, preset, extent = job
    dst = codec_version_path(out_dir, source_id, simulator, crf)
    meta = _metadata(source_id, simulator, level, crf, 0, crf, preset, extent)
    # Atomic writes: an existing file with the right tag is complete and current.
    if not _is_current(dst, meta["comment"]):
        reencode(src, dst, codec=CODEC_SIMULATORS[simulator], crf=crf, preset=preset, max_side=extent.max_side,
                 max_seconds=extent.max_seconds, metadata=meta)
    return SimulatedVideo(source_id, simulator, level, float(crf), dst.as_posix())


def simulate_codec(
    sources: list[tuple[str, str]], out_dir: str | Path, *, simulator: str, crfs: list[int], preset: str,
    workers: int = 2, extent: Extent = FULL,
) -> list[SimulatedVideo]:
    """Re-encode each (source_id, path) at every CRF level with the simulator's codec (within
    `extent`).

    Resumes: a version whose tags match (source, CRF, preset, codec version) is skipped.
    """
    if simulator not in CODEC_SIMULATORS:
        raise ValueError(f"unknown codec simulator {simulator!r}; expected one of {tuple(CODEC_SIMULATORS)}")
    crfs = [int(c) for c in crfs]
    _check_levels(simulator, crfs)
    from vqa.parallel import bounded_map

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    # One job per (source, level), not per source: a slow codec (x265 veryslow, seconds per
    # encode) then balances over the workers even with fewer sources than workers.
    jobs = [(sid, str(path), str(out_dir), simulator, k, crf, preset, extent)
            for sid, path in sources for k, crf in enumerate(crfs, start=1)]
    return list(bounded_map(_codec_one, jobs, workers if len(jobs) > 1 else 1))


def simulate_h264(
    sources: list[tuple[str, str]], out_dir: str | Path, *, crfs: list[int], preset: str, workers: int = 2
) -> list[SimulatedVideo]:
    return simulate_codec(sources, out_dir, simulator="h264", crfs=crfs, preset=preset, workers=workers)


def simulate_h265(
    sources: list[tuple[str, str]], out_dir: str | Path, *, crfs: list[int], preset: str = "veryslow",
    workers: int = 2,
) -> list[SimulatedVideo]:
    return simulate_codec(sources, out_dir, simulator="h265", crfs=crfs, preset=preset, workers=workers)


# ----------------------------------------------------------------------------- frame simulators

# Per-frame simulators: one op of vqa.distortions and the name of its strength parameter.
_FRAME_OPS = {
    "blur": ("gaussian_blur", "sigma"),
    "noise": ("gaussian_noise", "sigma"),
    "resize": ("resize_down_up", "factor"),
    "darken": ("darken", "p"),
    "brighten": ("brighten", "p"),
    "jitter": ("jitter", "max_shift"),
}


def _source_key(source_id: str) -> int:
    """32-bit seed part from the content id (a sha256), so noise does not depend on job order."""
    try:
        return int(source_id[:8], 16)
    except ValueError:  # non-hex ids (hand-made lists): hash them instead
        import hashlib

        return int(hashlib.sha256(source_id.encode()).hexdigest()[:8], 16)


def jitter_shifts(fractions: list[float], height: int, width: int) -> list[int]:
    """Max shift in pixels per jitter level: fraction x short side, rounded, at least 1 and at
    least 1 more than the level below (small frames must not merge levels, or the order would
    no longer hold by construction)."""
    short = min(height, width)
    out: list[int] = []
    for f in fractions:
        m = max(int(round(f * short)), 1, (out[-1] + 1) if out else 1)
        out.append(m)
    limit = (short - 1) // 2
    if out and out[-1] > limit:
        raise ValueError(f"jitter: levels {fractions} need shifts {out} px, more than a {width}x{height} frame allows")
    return out


def _level_frames(simulator: str, frames: list[np.ndarray], value: float, rng: np.random.Generator | None):
    """The frames of one version (an iterator for per-frame ops, a list for stutter)."""
    from vqa.distortions import apply_op, stutter

    if simulator == "stutter":
        return stutter(frames, value, rng)
    op, param = _FRAME_OPS[simulator]
    spec = {"op": op, param: int(value) if simulator == "jitter" else value}
    return (apply_op(f, spec, rng) for f in frames)


def frame_version_path(out_dir: str | Path, source_id: str, simulator: str, level: int) -> Path:
    return Path(out_dir) / f"{source_id[:16]}__{simulator}__L{level}.mp4"


def _frames_one(job: tuple) -> list[SimulatedVideo]:
    from vqa.video import iter_frames
    from vqa.video.encode import video_fps, write_video

    source_id, src, out_dir, simulator, levels, seed, crf, preset, extent = job
    tags = {k: _version_tag(source_id, simulator, v, seed, crf, preset, extent) for k, v in enumerate(levels, start=1)}
    # Atomic writes: an existing file with the right tag is complete and current.
    todo = [(k, v) for k, v in enumerate(levels, start=1)
            if not _is_current(frame_version_path(out_dir, source_id, simulator, k), tags[k])]
    if todo:
        # One decode serves every level; a demo clip (~100 frames, <= 540p) fits in memory, and
        # the extent bounds a long or large real clip.
        frames = []
        for t, f in iter_frames(src, max_side=extent.max_side):
            if extent.max_seconds is not None and t >= extent.max_seconds and frames:
                break
            frames.append(f)
        fps = video_fps(src)
        shifts = jitter_shifts(levels, *frames[0].shape[:2]) if simulator == "jitter" else None
        for k, value in todo:
            # Seeded per (run seed, source), not per job: same bytes whatever the worker count. Every
            # level gets the same draws (common random numbers), so a higher level is more of it.
            rng = (np.random.default_rng([seed, _source_key(source_id)])
                   if simulator in RANDOM_SIMULATORS else None)
            extra = {"max_shift_px": shifts[k - 1]} if shifts else {}
            arg = shifts[k - 1] if shifts else value
            write_video(frame_version_path(out_dir, source_id, simulator, k),
                        _level_frames(simulator, frames, arg, rng), fps=fps, codec="libx264", crf=crf,
                        preset=preset, metadata=_metadata(source_id, simulator, k, value, seed, crf, preset, extent,
                                                          **extra))
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
    extent: Extent = FULL,
) -> list[SimulatedVideo]:
    """Apply a frame simulator (FRAME_SIMULATORS) at every level to each (source_id, path).

    Each version is encoded near-losslessly (``crf``) so the simulated distortion, not the codec,
    sets the quality order. Existing outputs made from the same settings are skipped (resume);
    ones made from other settings (levels, seed, CRF) are rebuilt.
    """
    if simulator not in FRAME_SIMULATORS:
        raise ValueError(f"unknown frame simulator {simulator!r}; expected one of {FRAME_SIMULATORS}")
    levels = [float(v) for v in levels]
    _check_levels(simulator, levels)
    from vqa.parallel import bounded_map

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    jobs = [(sid, str(path), str(out_dir), simulator, levels, int(seed), int(crf), preset, extent)
            for sid, path in sources]
    # Spawning a pool costs more than one small job saves.
    results = bounded_map(_frames_one, jobs, workers if len(jobs) > 1 else 1)
    return [v for group in results for v in group]


def run_simulator(
    sources: list[tuple[str, str]], out_dir: str | Path, *, simulator: str, levels: list[float], seed: int = 0,
    workers: int = 2, crf: int = 12, preset: str = "fast",
) -> list[SimulatedVideo]:
    """Any simulator by name: codec ones read ``levels`` as CRFs (and ``preset``), frame ones as
    their strengths (versions encoded with x264 ``crf``/``preset``)."""
    if simulator in CODEC_SIMULATORS:
        return simulate_codec(sources, out_dir, simulator=simulator, crfs=[int(v) for v in levels], preset=preset,
                              workers=workers)
    return simulate_frames(sources, out_dir, simulator=simulator, levels=levels, seed=seed, workers=workers,
                           crf=crf, preset=preset)

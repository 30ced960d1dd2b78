"""What every homogeneous teacher is: a named, versioned scorer with a known direction.

A teacher never decodes: the teacher step decodes each video once (key frames plus short clips)
and hands the same arrays to every teacher, so adding a teacher costs its own compute only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

NEEDS = ("key_frames", "clips", "file")
KINDS = ("homogeneous", "heterogeneous")


class TeacherError(Exception):
    """A teacher could not score one video; recorded per (teacher, video), the run goes on."""


@dataclass(frozen=True)
class TeacherCard:
    name: str
    version: str
    higher_is_better: bool
    score_range: tuple[float | None, float | None] | None
    needs: str  # one of NEEDS: 1 fps key frames, short clips starting at each key frame, the file
    kind: str  # one of KINDS: "homogeneous" (a score) or "heterogeneous" (a distortion simulator)
    summary: str
    origin: str = "built-in"  # "built-in", an entry point ("pkg.module:Class") or a spec file
    # What the teacher does with small frames: every teacher scores any video from 32x32 up.
    small_frames: str = ""

    def __post_init__(self):
        if self.needs not in NEEDS:
            raise ValueError(f"teacher {self.name!r}: needs must be one of {NEEDS}, got {self.needs!r}")
        if self.kind not in KINDS:
            raise ValueError(f"teacher {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.name or "@" in self.name or "/" in self.name:
            raise ValueError(f"teacher name {self.name!r} must be non-empty without '@' or '/'")

    @property
    def key(self) -> str:
        """Cache key: a new version invalidates that teacher's cached scores only."""
        return f"{self.name}@{self.version}"

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


MIN_VIDEO_SIDE = 32  # every teacher and the student score videos from 32x32 up


def upscale_short_side(frames: np.ndarray, min_side: int) -> np.ndarray:
    """[..., H, W, 3] uint8 -> the same frames upscaled (bicubic, aspect kept) so that the short
    side is ``min_side``; unchanged when it already is at least that. For teachers whose analysis
    window does not fit a small frame."""
    h, w = frames.shape[-3:-1]
    if min(h, w) >= min_side:
        return frames
    from PIL import Image

    s = min_side / min(h, w)
    size = (max(min_side, round(w * s)), max(min_side, round(h * s)))  # PIL: (width, height)
    flat = frames.reshape(-1, h, w, 3)
    out = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BICUBIC)) for f in flat])
    return out.reshape(*frames.shape[:-3], size[1], size[0], 3)


def _video_score(card: TeacherCard, per_item: np.ndarray, what: str) -> dict:
    per_item = np.asarray(per_item, dtype=np.float64).reshape(-1)
    if per_item.size == 0:
        raise TeacherError(f"{card.name}: no {what} scores")
    if not np.all(np.isfinite(per_item)):
        raise TeacherError(f"{card.name}: non-finite {what} scores")
    return {"score": float(per_item.mean()), what: [float(x) for x in per_item]}


class Teacher:
    """Base of all homogeneous teachers; subclasses set ``card`` and one ``score_*`` method."""

    card: ClassVar[TeacherCard]

    def score_decoded(self, key_frames: np.ndarray, clips: np.ndarray | None, path: str) -> dict:
        """Score one decoded video -> {"score": float, ...}; raise TeacherError on failure."""
        raise NotImplementedError


class FrameTeacher(Teacher):
    """Scores RGB key frames ([T,H,W,3] uint8 -> [T]); the video score is their mean."""

    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score_video(self, frames: np.ndarray) -> dict:
        return _video_score(self.card, self.score_frames(frames), "frames")

    def score_decoded(self, key_frames, clips, path):
        return self.score_video(key_frames)


class ClipTeacher(Teacher):
    """Scores short clips of consecutive frames ([N,L,H,W,3] uint8 -> [N]), one clip starting at
    each key frame; the video score is their mean. ``clip_len`` is how many frames it needs."""

    clip_len: ClassVar[int] = 2

    def score_clips(self, clips: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score_decoded(self, key_frames, clips, path):
        if clips is None or clips.shape[1] < self.clip_len:
            got = 0 if clips is None else clips.shape[1]
            raise TeacherError(f"{self.card.name}: needs clips of {self.clip_len} frames, got {got}")
        return _video_score(self.card, self.score_clips(clips[:, : self.clip_len]), "clips")


class FileTeacher(Teacher):
    """Scores a whole file itself (e.g. a model that decodes on its own); avoid where possible:
    it decodes the video again."""

    def score_file(self, path: str) -> float:
        raise NotImplementedError

    def score_decoded(self, key_frames, clips, path):
        score = float(self.score_file(path))
        if not np.isfinite(score):
            raise TeacherError(f"{self.card.name}: non-finite score")
        return {"score": score}

"""What every teacher is: a named, versioned scorer with a known direction."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


class TeacherError(Exception):
    """A teacher could not score one video; recorded per (teacher, video), the run goes on."""


@dataclass(frozen=True)
class TeacherCard:
    name: str
    version: str
    higher_is_better: bool
    score_range: tuple[float, float] | None
    needs: str  # "key_frames" (1 fps frames) or "file" (the whole video file)
    kind: str  # "homogeneous" (a score) or "heterogeneous" (a distortion simulator)
    summary: str

    @property
    def key(self) -> str:
        """Cache key: a new version invalidates that teacher's cached scores only."""
        return f"{self.name}@{self.version}"


class FrameTeacher:
    """A homogeneous teacher that scores RGB key frames; the video score is their mean."""

    card: ClassVar[TeacherCard]

    def score_frames(self, frames: np.ndarray) -> np.ndarray:  # [T,H,W,3] uint8 -> [T]
        raise NotImplementedError

    def score_video(self, frames: np.ndarray) -> dict:
        per_frame = np.asarray(self.score_frames(frames), dtype=np.float64)
        if per_frame.size == 0 or not np.all(np.isfinite(per_frame)):
            raise TeacherError(f"{self.card.name}: non-finite frame scores")
        return {"score": float(per_frame.mean()), "frames": [float(x) for x in per_frame]}

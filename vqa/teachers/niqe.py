"""NIQE (Mittal et al. 2013) through scikit-video: a completely blind naturalness distance."""
from __future__ import annotations

import numpy as np

from vqa.teachers.base import FrameTeacher, TeacherCard, upscale_short_side

# skvideo's NIQE model uses 96x96 patches and refuses frames of 193 px or less.
_MIN_SIDE = 2 * 96 + 2


def luma(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma on 0..255, the input NIQE's pristine model was fitted on."""
    f = frames.astype(np.float64)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


class NiqeTeacher(FrameTeacher):
    card = TeacherCard(
        name="niqe",
        version="skvideo-1.1.12-up194",  # -up194: small frames upscaled, no longer failures
        higher_is_better=False,  # a distance from natural-scene statistics
        score_range=(0.0, None),
        needs="key_frames",
        kind="homogeneous",
        summary="NIQE naturalness distance per 1 fps key frame (scikit-video), mean over time",
        small_frames=f"a short side below {_MIN_SIDE} px is upscaled (bicubic, aspect kept) to {_MIN_SIDE} px: "
                     "NIQE needs two 96 px patches per side; the upscale's softness counts against the video",
    )

    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        from skvideo.measure import niqe

        return niqe(luma(upscale_short_side(frames, _MIN_SIDE))[..., None])

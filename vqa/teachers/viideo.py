"""VIIDEO (Mittal, Saad & Bovik 2016), a completely blind video model, through scikit-video."""
from __future__ import annotations

import numpy as np

from vqa.teachers.base import ClipTeacher, TeacherCard, upscale_short_side

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_MIN_SIDE = 36  # two of VIIDEO's 18x18 blocks


class ViideoTeacher(ClipTeacher):
    card = TeacherCard(
        name="viideo",
        version="skvideo-1.1.12-up36",  # -up36: small frames upscaled, no longer failures
        # VIIDEO measures departures from the intrinsic statistics of natural video (it was
        # validated against DMOS): a distortion score.
        higher_is_better=False,
        score_range=(None, None),
        needs="clips",
        kind="homogeneous",
        summary="VIIDEO intrinsic-statistics distortion score on 8-frame clips (scikit-video), at most 2 clips per video",
        small_frames=f"a short side below {_MIN_SIDE} px is upscaled (bicubic, aspect kept) to {_MIN_SIDE} px "
                     "(two of VIIDEO's 18 px blocks)",
    )
    clip_len = 8
    max_clips = 2  # about 1 s of CPU per 8-frame 480x270 clip: bound the cost per video

    def score_clips(self, clips: np.ndarray) -> np.ndarray:
        from skvideo.measure import viideo_score

        clips = upscale_short_side(clips, _MIN_SIDE)
        n = clips.shape[0]
        pick = sorted({((2 * i + 1) * n) // (2 * min(n, self.max_clips)) for i in range(min(n, self.max_clips))})
        out = []
        for i in pick:
            luma = (clips[i].astype(np.float32) @ _LUMA).astype(np.float64)[..., None]
            out.append(float(np.asarray(viideo_score(luma)).reshape(-1)[0]))
        return np.array(out)

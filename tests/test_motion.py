"""The motion branch's clip descriptor: each measure moves with the temporal distortion it names,
and read_video hands it small luma clips in one decode."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tests.media import make_clip
from vqa.student.motion import MOTION_DIM, clip_descriptor, motion_features
from vqa.video import read_video

ENERGY, IRREGULAR, REPEATED, SLOWEST, SPEED, SHAKE, SHAKE_ACCEL, RESIDUAL, RESIDUAL_SHARE, FLICKER, ROUGH = range(11)


@pytest.fixture(scope="module")
def texture():
    rng = np.random.default_rng(0)
    return ndimage.gaussian_filter(rng.random((400, 600)) * 255, 2).astype(np.uint8)


def _clip(texture, offsets, gain=None):
    """Gray 8-frame clip: a 96x160 window of the texture at each (dy, dx)."""
    frames = []
    for i, (dy, dx) in enumerate(offsets):
        f = texture[100 + dy : 196 + dy, 100 + dx : 260 + dx].astype(np.float32)
        if gain is not None:
            f = f * gain[i]
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames)


def test_static_panning_shaking_and_stuttering_clips_are_told_apart(texture):
    rng = np.random.default_rng(1)
    static = clip_descriptor(_clip(texture, [(0, 0)] * 8))
    pan = clip_descriptor(_clip(texture, [(0, 3 * i) for i in range(8)]))
    shake = clip_descriptor(_clip(texture, [tuple(rng.integers(-6, 7, 2)) for _ in range(8)]))
    stutter = clip_descriptor(_clip(texture, [(0, 6 * (i // 2)) for i in range(8)]))  # every frame twice

    assert static.shape == (MOTION_DIM,) and static.dtype == np.float32
    assert static[ENERGY] < pan[ENERGY] and static[REPEATED] == 1.0
    assert pan[SPEED] == pytest.approx(3 / 96, rel=0.1)  # 3 px per frame on a 96 px short side
    assert pan[SHAKE] < 0.005 < shake[SHAKE] and pan[SHAKE_ACCEL] < shake[SHAKE_ACCEL]
    assert pan[REPEATED] == 0 and stutter[REPEATED] >= 3 / 7
    assert stutter[IRREGULAR] > pan[IRREGULAR] + 0.5 and stutter[SLOWEST] < pan[SLOWEST]
    # Global motion is compensated: a pure translation leaves little residual, unlike new content.
    assert pan[RESIDUAL_SHARE] < 0.3


def test_flicker_and_temporal_noise_raise_their_measures(texture):
    still = [(0, 0)] * 8
    steady = clip_descriptor(_clip(texture, still))
    flicker = clip_descriptor(_clip(texture, still, gain=[1.0, 0.8] * 4))
    assert flicker[FLICKER] > steady[FLICKER] + 3  # log scale
    rng = np.random.default_rng(2)
    noisy_frames = _clip(texture, still).astype(np.float32) + rng.normal(0, 6, size=(8, 96, 160))
    noisy = clip_descriptor(np.clip(noisy_frames, 0, 255).astype(np.uint8))
    assert noisy[ROUGH] > steady[ROUGH] + 3 and noisy[RESIDUAL] > steady[RESIDUAL]


def test_rgb_and_luma_clips_agree_and_results_are_deterministic(texture):
    gray = _clip(texture, [(0, 2 * i) for i in range(8)])
    rgb = np.repeat(gray[..., None], 3, axis=3)
    a, b = clip_descriptor(gray), clip_descriptor(rgb)
    assert np.allclose(a, b, atol=1e-3)
    assert np.array_equal(motion_features(gray[None]), motion_features(gray[None]))
    with pytest.raises(ValueError, match="at least 2 frames"):
        clip_descriptor(gray[:1])


def test_read_video_decodes_small_luma_clips_in_the_same_pass(tmp_path):
    path = make_clip(tmp_path / "c.mp4", frames=40, fps=10, size=(320, 240), rotation=90)
    plain = read_video(path, key_rate=1.0, max_key_frames=3)
    video = read_video(path, key_rate=1.0, max_key_frames=3, motion_len=6, motion_side=48)
    assert np.array_equal(video.key_frames, plain.key_frames)  # the motion clips change nothing else
    assert video.motion.shape == (3, 6, 64, 48)  # portrait after rotation, short side 48
    assert video.motion.dtype == np.uint8 and video.clips is None
    feats = motion_features(video.motion)
    assert feats.shape == (3, MOTION_DIM) and np.isfinite(feats).all()
    assert (feats[:, ENERGY] > np.log(1e-3)).all()  # the synthetic clip drifts: motion is seen

"""The student's motion branch input: a compact descriptor of the short clip at each key frame.

The paper adds a SlowFast motion feature per one-second chunk; no pretrained video network ships
offline here, so the motion branch sees measured temporal properties of the clip instead, and the
student learns how they bear on quality (a trainable projection in StudentModel). Frame-level
views cannot see these at all: a stuttering or shaking video has the same key frames as a clean
one. Computed on luma at a short side of about 96 pixels (scaled while decoding), so it costs a few ms per 8-frame clip.

Per clip of L consecutive frames (L >= 2):
  0 log motion energy       mean |g[t+1] - g[t]|
  1 energy irregularity     std/mean of those differences over t (uneven motion: stutter, drops)
  2 repeated frames         fraction of steps with no visible change (< 1 grey level)
  3 slowest step            min/mean of the differences (a repeated frame among moving ones)
  4 global motion           mean global shift per frame (phase correlation), in short sides
  5 shake                   std of the global shift over t (camera or synthetic jitter)
  6 shake acceleration      mean change of the global shift between steps
  7 log residual            mean |g[t+1] - shift(g[t])| after global motion compensation
  8 residual share          residual / energy (local motion and temporal noise vs panning)
  9 log flicker             std of the mean luma over t
 10 log temporal roughness  mean |g[t+1] - 2 g[t] + g[t-1]| (second difference: jerky motion, noise)
"""
from __future__ import annotations

import numpy as np

MOTION_VERSION = 1
MOTION_DIM = 11
_EPS = 1e-4
_SHORT_SIDE = 96


def _luma_small(clip: np.ndarray) -> np.ndarray:
    """[L,h,w] uint8 luma (what read_video's motion_len gives, already small) or [L,H,W,3] uint8
    RGB -> [L,h,w] float32 luma in [0,1] at a short side of about 96 (RGB: plain decimation)."""
    if clip.ndim == 3:
        return clip.astype(np.float32) / 255.0
    f = max(1, min(clip.shape[1:3]) // _SHORT_SIDE)
    small = np.ascontiguousarray(clip[:, ::f, ::f])
    return small.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32) / 255.0


def _shifts(g: np.ndarray) -> np.ndarray:
    """Global translation (dy, dx) from each frame to the next, [L-1, 2] pixels: phase correlation
    (one batched FFT over the clip) with a parabolic sub-pixel peak."""
    n, h, w = g.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    spectra = np.fft.rfft2((g - g.mean(axis=(1, 2), keepdims=True)) * window)
    cross = spectra[1:] * np.conj(spectra[:-1])
    corr = np.fft.irfft2(cross / (np.abs(cross) + 1e-9), s=(h, w))
    out = np.zeros((n - 1, 2))
    for t, r in enumerate(corr):
        iy, ix = np.unravel_index(int(np.argmax(r)), r.shape)
        dy = iy + _vertex(r[iy - 1, ix], r[iy, ix], r[(iy + 1) % h, ix])
        dx = ix + _vertex(r[iy, ix - 1], r[iy, ix], r[iy, (ix + 1) % w])
        out[t] = (dy - h if dy > h / 2 else dy), (dx - w if dx > w / 2 else dx)
    return out


def _vertex(c_m: float, c_0: float, c_p: float) -> float:
    den = c_m - 2 * c_0 + c_p
    return 0.0 if abs(den) < 1e-12 else float(np.clip(0.5 * (c_m - c_p) / den, -0.5, 0.5))


def clip_descriptor(clip: np.ndarray) -> np.ndarray:
    """[L,h,w] uint8 luma or [L,H,W,3] uint8 RGB -> [MOTION_DIM] float32."""
    g = _luma_small(clip)
    if g.shape[0] < 2:
        raise ValueError(f"motion: a clip needs at least 2 frames, got {g.shape[0]}")
    h, w = g.shape[1:]
    diffs = np.abs(np.diff(g, axis=0)).mean(axis=(1, 2))  # [L-1]
    energy = float(diffs.mean())
    shifts = _shifts(g) / min(h, w)
    residuals = []
    for t in range(len(g) - 1):
        dy, dx = np.rint(shifts[t] * min(h, w)).astype(int)
        moved = np.roll(g[t], (dy, dx), axis=(0, 1))
        m = max(abs(dy), abs(dx))  # compare only where the roll did not wrap around
        inner = (slice(m, h - m or None), slice(m, w - m or None))
        residuals.append(float(np.abs(g[t + 1][inner] - moved[inner]).mean()) if m < min(h, w) // 2 else diffs[t])
    residual = float(np.mean(residuals))
    speed = np.hypot(shifts[:, 0], shifts[:, 1])
    accel = np.hypot(*np.diff(shifts, axis=0).T).mean() if len(shifts) > 1 else 0.0
    rough = float(np.abs(g[2:] - 2 * g[1:-1] + g[:-2]).mean()) if len(g) > 2 else 0.0
    return np.array([
        np.log(energy + _EPS),
        diffs.std() / (energy + _EPS),
        float((diffs < 1.0 / 255).mean()),
        diffs.min() / (energy + _EPS),
        speed.mean(),
        shifts.std(axis=0).sum(),
        accel,
        np.log(residual + _EPS),
        residual / (energy + _EPS),
        np.log(g.mean(axis=(1, 2)).std() + _EPS),
        np.log(rough + _EPS),
    ], dtype=np.float32)


def with_motion(feats: np.ndarray, motion: np.ndarray | None) -> np.ndarray:
    """Backbone features [T, 2C] + descriptors [T, MOTION_DIM] -> what the student reads [T, 2C+M]."""
    return feats if motion is None else np.concatenate([feats, motion.astype(np.float32)], axis=1)


def motion_features(clips: np.ndarray) -> np.ndarray:
    """[N,L,h,w] luma or [N,L,H,W,3] RGB uint8 clips (one per key frame) -> [N, MOTION_DIM] float32."""
    return np.stack([clip_descriptor(c) for c in clips]).astype(np.float32)

"""The nine low-level video statistics, each its own weak homogeneous teacher.

Every direction below follows from what the statistic measures (stated next to it), never from a
fit to a benchmark. All maths is float32 numpy on BT.601 luma in [0, 1] (or RGB for colourfulness),
computed per frame so intermediates stay cache-sized. Luma is converted once per frame array and
shared by the statistics through ``_SHARED``; the gradient pass is shared by ``noise`` and ``si``.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import numpy as np

from vqa.teachers.base import ClipTeacher, FrameTeacher, TeacherCard, TeacherError

__all__ = [
    "BlockinessTeacher",
    "BlurTeacher",
    "ContrastTeacher",
    "NoiseTeacher",
    "FlickerTeacher",
    "ColourfulnessTeacher",
    "LuminanceTeacher",
    "SiTeacher",
    "TiTeacher",
    "STATISTIC_TEACHERS",
    "luma",
]

_MIN_SIDE = 16
_BLOCK = 8  # codec transform grid for blockiness
_FLICKER_BLOCK = 16  # block means: fine detail moving inside a block does not count as flicker
_EDGE_FRACTION = 0.10  # noise: strongest Sobel responses left out (Tai & Yang 2008)
_EPS = np.float32(1e-4)  # in luma [0, 1] units, ~0.03 grey levels: keeps flat-frame ratios finite


# ----------------------------------------------------------------------------- input checks

def _check(arr: np.ndarray, ndim: int, name: str, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != ndim or arr.shape[-1] != 3:
        shape = "[T,H,W,3]" if ndim == 4 else "[N,L,H,W,3]"
        raise TeacherError(f"{name}: expected RGB {what} {shape}, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise TeacherError(f"{name}: expected uint8 {what}, got {arr.dtype}")
    h, w = arr.shape[-3:-1]
    if min(h, w) < _MIN_SIDE:
        raise TeacherError(f"{name}: frame {w}x{h} is smaller than the {_MIN_SIDE}x{_MIN_SIDE} minimum")
    return arr


def _frames_of(arr: np.ndarray):
    """Each [H,W,3] frame of an array [..., H, W, 3] as a view (no reshape: that could copy)."""
    for idx in np.ndindex(arr.shape[:-3]):
        yield idx, arr[idx]


# ----------------------------------------------------------------------------- shared luma

# BT.601 weights in 1/65536 steps (sum 65536), applied in uint32: exact integers, then one scale.
_W_INT = (np.uint32(19595), np.uint32(38470), np.uint32(7471))
_INT_SCALE = np.float32(1.0 / (65536.0 * 255.0))


def _luma_frame(frame: np.ndarray, out: np.ndarray) -> None:
    s = frame[..., 0] * _W_INT[0]
    s += frame[..., 1] * _W_INT[1]
    s += frame[..., 2] * _W_INT[2]
    # s <= 255 * 65536 < 2**24: exact in float32
    np.multiply(s, _INT_SCALE, out=out, dtype=np.float32)


def _luma_all(arr: np.ndarray) -> np.ndarray:
    out = np.empty(arr.shape[:-1], dtype=np.float32)
    for idx, frame in _frames_of(arr):
        h, w = frame.shape[:2]
        o = out[idx]
        for a, b in _strips(w, 0, h):
            _luma_frame(frame[a:b], o[a:b])
    out.setflags(write=False)  # shared between teachers: nobody may change it
    return out


_MULT = np.zeros(0, dtype=np.uint64)


def _multipliers(n: int) -> np.ndarray:
    global _MULT
    if _MULT.size < n:
        rng = np.random.default_rng(0x5EED)
        _MULT = rng.integers(0, 2**63, size=max(n, 2 * _MULT.size), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return _MULT[:n]


def _fingerprint(arr: np.ndarray) -> tuple:
    """Multilinear hash (fixed random odd 64-bit multipliers, mod 2**64) of every 8-byte word of
    every frame, plus the tail bytes.

    A change confined to one word always changes it (odd multipliers are invertible); wider
    changes collide only if their weighted sum cancels mod 2**64, which new content practically
    never does. ~0.1 ms per 540p frame, against ~1 ms for luma.
    """
    out = []
    for _, frame in _frames_of(arr):
        b = np.ascontiguousarray(frame).reshape(-1)
        n8 = b.size // 8
        words = b[: n8 * 8].view(np.uint64)
        out.append(int(np.multiply(words, _multipliers(n8)).sum(dtype=np.uint64)))
        out.append(bytes(b[n8 * 8 :]))
    return tuple(out)


class _Shared:
    """Derived data (luma, gradient statistics) of the last few frame arrays, shared by teachers.

    Keyed on the array's memory (data pointer, shape, strides) so that fresh views of the same
    clips (``ClipTeacher`` slices them per call) still hit. An entry holds the array itself, so its
    memory cannot be freed and reused by a different array while cached; and each lookup compares
    a fingerprint of the full content, so an array rewritten in place is recomputed, never stale.
    The last ``size`` arrays stay referenced until replaced or ``clear_cache()``.
    """

    def __init__(self, size: int = 2):  # key frames + clips of the video in hand
        self.size = size
        self._entries: OrderedDict = OrderedDict()

    def clear(self) -> None:
        self._entries.clear()

    def entry(self, arr: np.ndarray) -> dict:
        """The derived-data dict of ``arr`` (empty if new or changed since cached)."""
        key = (arr.__array_interface__["data"][0], arr.shape, arr.strides, arr.dtype.str)
        fp = _fingerprint(arr)
        entry = self._entries.get(key)
        if entry is None or entry[1] != fp:
            entry = (arr, fp, {})
            self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return entry[2]


def _derived(values: dict, what: str, fn: Callable[[], np.ndarray]) -> np.ndarray:
    if what not in values:
        values[what] = fn()
    return values[what]


_SHARED = _Shared()


def luma(arr: np.ndarray) -> np.ndarray:
    """BT.601 luma in [0, 1], float32, shape ``arr.shape[:-1]`` (read-only; shared)."""
    return _luma(arr, _SHARED.entry(arr))


def _luma(arr: np.ndarray, values: dict) -> np.ndarray:
    return _derived(values, "luma", lambda: _luma_all(arr))


def clear_cache() -> None:
    """Drop the shared luma / gradient data (and the references it holds to frame arrays)."""
    _SHARED.clear()


# ----------------------------------------------------------------------------- per-frame maths
# Each frame is processed in row strips (with the halo rows a stencil needs): a strip's float32
# temporaries stay in L2 cache, which is ~2x faster than whole-frame passes at 1080p.

_STRIP_PIXELS = 1 << 16


def _strips(w: int, lo: int, hi: int):
    """Owned row ranges [a, b) covering [lo, hi), cut at multiples of a strip height that is a
    multiple of 16, so 8x8 and 16x16 block grids never straddle two strips."""
    step = max(16, (_STRIP_PIXELS // w) // 16 * 16)
    for r0 in range(0, hi, step):
        a, b = max(r0, lo), min(r0 + step, hi)
        if a < b:
            yield a, b


def _blockiness(y: np.ndarray) -> float:
    # Mean |luma step| across 8-px block boundaries over the mean step inside blocks, both
    # directions pooled (after Wang, Sheikh & Bovik 2002): ~1 without a visible grid.
    h, w = y.shape
    s_b = s_all = 0.0
    for a, b in _strips(w, 0, h):
        dh = np.subtract(y[a:b, 1:], y[a:b, :-1])  # dh[:, j]: step from column j to j + 1
        np.abs(dh, out=dh)
        s_all += float(dh.sum())
        s_b += float(dh[:, _BLOCK - 1 :: _BLOCK].sum())
        e = min(b, h - 1)  # vertical steps i -> i + 1 for i in [a, e)
        dv = np.subtract(y[a + 1 : e + 1], y[a:e])
        np.abs(dv, out=dv)
        s_all += float(dv.sum())
        s_b += float(dv[(_BLOCK - 1 - a) % _BLOCK :: _BLOCK].sum())
    n_b = h * len(range(_BLOCK - 1, w - 1, _BLOCK)) + w * len(range(_BLOCK - 1, h - 1, _BLOCK))
    n_in = h * (w - 1) + (h - 1) * w - n_b
    boundary, inside = s_b / n_b, (s_all - s_b) / n_in
    return (boundary + float(_EPS)) / (inside + float(_EPS))


def _blur_sums(cur: np.ndarray, prev: np.ndarray, ahead: np.ndarray, behind: np.ndarray) -> tuple[float, float]:
    """(sum D_F, sum min(D_F, D_B)) with D_F = |cur - prev|, D_B = |ahead - behind| / 9."""
    d_f = np.subtract(cur, prev)
    np.abs(d_f, out=d_f)
    d_b = np.subtract(ahead, behind)
    np.abs(d_b, out=d_b)
    d_b *= np.float32(1.0 / 9.0)
    s_f = float(d_f.sum())
    np.minimum(d_f, d_b, out=d_b)
    return s_f, float(d_b.sum())


def _blur(y: np.ndarray) -> float:
    # Crete-Roffet et al. 2007: share of neighbour variation that survives a strong 1x9 box blur,
    # b = sum min(D_F, D_B) / sum D_F (= (s_F - s_V) / s_F), the worse of the two directions.
    # The box blur's neighbour difference is (F[i+4] - F[i-5]) / 9, so D_B needs no filtering;
    # only positions where that window fits are used, which avoids any border rule.
    h, w = y.shape
    hor, ver = [0.0, 0.0], [0.0, 0.0]
    for a, b in _strips(w, 0, h):
        ys = y[a:b]
        for k, v in enumerate(_blur_sums(ys[:, 5:-4], ys[:, 4:-5], ys[:, 9:], ys[:, :-9])):
            hor[k] += v
        i0, i1 = max(a, 5), min(b, h - 4)
        if i0 < i1:
            for k, v in enumerate(_blur_sums(y[i0:i1], y[i0 - 1 : i1 - 1], y[i0 + 4 : i1 + 4], y[i0 - 5 : i1 - 5])):
                ver[k] += v
    # no variation at all: nothing is sharp
    return max(s_min / s_f if s_f > 1e-6 else 1.0 for s_f, s_min in (hor, ver))


def _sobel2_sparse(y: np.ndarray) -> np.ndarray:
    """Squared Sobel magnitude at interior pixels (1 + 4a, 1 + 4b) only: 1/16 of the work."""
    h, w = y.shape
    rows = (slice(0, h - 2, 4), slice(1, h - 1, 4), slice(2, h, 4))
    cols = (slice(0, w - 2, 4), slice(1, w - 1, 4), slice(2, w, 4))
    dx = [y[r, cols[2]] - y[r, cols[0]] for r in rows]
    dy = [y[rows[2], c] - y[rows[0], c] for c in cols]
    gx = dx[0] + dx[2] + 2 * dx[1]
    gy = dy[0] + dy[2] + 2 * dy[1]
    return gx * gx + gy * gy


def _gradients(y: np.ndarray) -> tuple[float, float]:
    """(SI, noise sigma), both on 0..255 luma, sharing one Sobel pass over the interior."""
    h, w = y.shape
    # Tai & Yang 2008: leave out the top 10% Sobel responses so edges and texture are not taken
    # for noise. The threshold comes from a 1-in-16 subsample: ~20x cheaper than a full sort.
    sample = _sobel2_sparse(y).ravel()
    k = int((1.0 - _EDGE_FRACTION) * (sample.size - 1))
    thr = np.partition(sample, k)[k]
    s_mag = s_mag2 = s_lap = 0.0
    n_keep = 0
    for a, b in _strips(w, 1, h - 1):
        ys = y[a - 1 : b + 1]
        # Both 3x3 stencils are separable and share the horizontal first difference e:
        # Sobel = [1,2,1]^T (x) [-1,0,1], with [-1,0,1] = e + shifted e and [1,2,1] = [1,1] * [1,1];
        # Immerkaer's N = [1,-2,1]^T (x) [1,-2,1] (sum N^2 = 36), with [1,-2,1] = diff of diff.
        e = np.subtract(ys[:, 1:], ys[:, :-1])
        dx = np.add(e[:, 1:], e[:, :-1])
        p = np.add(dx[1:], dx[:-1])
        gx = np.add(p[1:], p[:-1])
        dy = np.subtract(ys[2:], ys[:-2])
        q = np.add(dy[:, 1:], dy[:, :-1])
        gy = np.add(q[:, 1:], q[:, :-1])
        gx *= gx
        gy *= gy
        mag2 = np.add(gx, gy, out=gx)
        s_mag2 += float(mag2.sum())
        s_mag += float(np.sqrt(mag2, out=gy).sum())
        r = np.subtract(e[:, 1:], e[:, :-1], out=dx)
        u = np.subtract(r[1:], r[:-1], out=p)
        lap = np.subtract(u[1:], u[:-1])
        np.abs(lap, out=lap)
        keep = mag2 <= thr
        n_keep += int(np.count_nonzero(keep))
        lap *= keep
        s_lap += float(lap.sum())
    n = (h - 2) * (w - 2)
    mean = s_mag / n
    si = math.sqrt(max(s_mag2 / n - mean * mean, 0.0)) * 255.0  # ITU-T P.910: std of the magnitude
    # sigma = sqrt(pi / 2) * mean |I * N| / 6 (mean |N(0, 36 s^2)| = 6 s sqrt(2 / pi))
    noise = s_lap / n_keep * math.sqrt(math.pi / 2.0) / 6.0 * 255.0 if n_keep else 0.0
    return si, noise


def _gradients_all(y: np.ndarray) -> np.ndarray:
    out = np.empty(y.shape[:-2] + (2,), dtype=np.float64)
    for idx in np.ndindex(y.shape[:-2]):
        out[idx] = _gradients(y[idx])
    out.setflags(write=False)
    return out


def _gradient_table(frames: np.ndarray) -> np.ndarray:
    """[T, 2] (SI, noise) per frame, computed once per frame array for both teachers."""
    values = _SHARED.entry(frames)
    return _derived(values, "gradients", lambda: _gradients_all(_luma(frames, values)))


def _sums(d: np.ndarray) -> tuple[float, float]:
    """(sum, sum of squares) of a contiguous float32 strip."""
    d = d.reshape(-1)
    return float(d.sum()), float(np.dot(d, d))


def _mean_var(s1: float, s2: float, n: int, centre: float) -> tuple[float, float]:
    """Mean and variance from sums of (value - centre). One pass, yet well conditioned: the
    centre is a subsample mean, close to the true mean."""
    m = s1 / n
    return centre + m, max(s2 / n - m * m, 0.0)


def _colourfulness(frame: np.ndarray) -> float:
    # Hasler & Suesstrunk 2003 on RGB 0..255: M = sqrt(var_rg + var_yb) + 0.3 sqrt(mu_rg^2 + mu_yb^2),
    # rg = R - G, yb = (R + G) / 2 - B.
    h, w = frame.shape[:2]
    sub = frame[::8, ::8].astype(np.float32)
    c_rg = np.float32(np.mean(sub[..., 0] - sub[..., 1]))
    c_yb = np.float32(np.mean(0.5 * (sub[..., 0] + sub[..., 1]) - sub[..., 2]))
    acc = np.zeros(4)
    for a, b in _strips(w, 0, h):
        x = frame[a:b].astype(np.float32)
        rg = np.subtract(x[..., 0], x[..., 1])
        rg -= c_rg
        yb = np.add(x[..., 0], x[..., 1])
        yb *= np.float32(0.5)
        yb -= x[..., 2]
        yb -= c_yb
        acc += _sums(rg) + _sums(yb)
    m_rg, v_rg = _mean_var(acc[0], acc[1], h * w, float(c_rg))
    m_yb, v_yb = _mean_var(acc[2], acc[3], h * w, float(c_yb))
    return math.sqrt(v_rg + v_yb) + 0.3 * math.sqrt(m_rg * m_rg + m_yb * m_yb)


def _contrast(y: np.ndarray) -> float:
    # RMS contrast: std of luma in [0, 1].
    h, w = y.shape
    c = np.float32(y[::8, ::8].mean())
    acc = np.zeros(2)
    for a, b in _strips(w, 0, h):
        acc += _sums(np.subtract(y[a:b], c))
    return math.sqrt(_mean_var(acc[0], acc[1], h * w, float(c))[1])


def _luminance(y: np.ndarray) -> float:
    return float(y.mean())  # one streaming pass, no temporaries


def _flicker(y0: np.ndarray, y1: np.ndarray) -> float:
    # Mean |change of 16x16 block-mean luma| between consecutive frames, 0..255: a brightness
    # change moves every block mean, while detail moving inside a block mostly averages out.
    bs = _FLICKER_BLOCK
    h, w = (y0.shape[0] // bs) * bs, (y0.shape[1] // bs) * bs
    total = 0.0
    for a, b in _strips(w, 0, h):
        d = np.subtract(y1[a:b, :w], y0[a:b, :w])
        # rows first (adds whole rows: vectorised along w), then the 16x narrower column pass
        m = d.reshape((b - a) // bs, bs, w).sum(axis=1).reshape((b - a) // bs, w // bs, bs).sum(axis=2)
        total += float(np.abs(m).sum())
    return total / ((h // bs) * (w // bs) * bs * bs) * 255.0


def _ti(y0: np.ndarray, y1: np.ndarray) -> float:
    # ITU-T P.910: TI = std over space of F_n - F_{n-1}, luma 0..255.
    h, w = y0.shape
    c = np.float32((y1[::8, ::8] - y0[::8, ::8]).mean())
    acc = np.zeros(2)
    for a, b in _strips(w, 0, h):
        d = np.subtract(y1[a:b], y0[a:b])
        d -= c
        acc += _sums(d)
    return math.sqrt(_mean_var(acc[0], acc[1], h * w, float(c))[1]) * 255.0


# ----------------------------------------------------------------------------- teachers

def _per_frame(frames: np.ndarray, name: str, fn: Callable[[np.ndarray], float]) -> np.ndarray:
    frames = _check(frames, 4, name, "frames")
    y = luma(frames)
    return np.array([fn(y[t]) for t in range(y.shape[0])], dtype=np.float64)


def _per_clip(clips: np.ndarray, name: str, fn: Callable[[np.ndarray, np.ndarray], float]) -> np.ndarray:
    clips = _check(clips, 5, name, "clips")
    if clips.shape[1] < 2:
        raise TeacherError(f"{name}: needs clips of at least 2 frames, got {clips.shape[1]}")
    y = luma(clips[:, :2])
    return np.array([fn(y[n, 0], y[n, 1]) for n in range(y.shape[0])], dtype=np.float64)


def _card(name: str, higher_is_better: bool, score_range, needs: str, summary: str) -> TeacherCard:
    return TeacherCard(
        name=name,
        version="v1",
        higher_is_better=higher_is_better,
        score_range=score_range,
        needs=needs,
        kind="homogeneous",
        summary=summary,
        small_frames=f"scored as they are from {_MIN_SIDE}x{_MIN_SIDE} (3x3 to 16x16 stencils)",
    )


class BlockinessTeacher(FrameTeacher):
    card = _card(
        "blockiness",
        False,  # visible 8x8 coding grid is a compression artefact: more is worse
        (0.0, None),
        "key_frames",
        "8x8 block-boundary luma step over within-block step (~1: no grid; after Wang, Sheikh & Bovik 2002)",
    )

    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        return _per_frame(frames, self.card.name, _blockiness)


class BlurTeacher(FrameTeacher):
    card = _card(
        "blur",
        False,  # 0 sharp .. 1 blurry: lost detail is worse
        (0.0, 1.0),
        "key_frames",
        "perceptual blur, re-blur method of Crete-Roffet et al. 2007 (0 sharp .. 1 blurry)",
    )

    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        return _per_frame(frames, self.card.name, _blur)


class ContrastTeacher(FrameTeacher):
    card = _card(
        "contrast",
        True,  # washed-out, low-contrast pictures are worse
        (0.0, 0.5),
        "key_frames",
        "RMS contrast: std of BT.601 luma in [0, 1]",
    )

    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        return _per_frame(frames, self.card.name, _contrast)


class NoiseTeacher(FrameTeacher):
    card = _card(
        "noise",
        False,  # sensor / compression noise is a distortion: more is worse
        (0.0, None),
        "key_frames",
        "noise sigma in grey levels: Immerkaer 1996 Laplacian-difference mask, top 10% Sobel edges excluded (Tai & Yang 2008)",
    )

    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        frames = _check(frames, 4, self.card.name, "frames")
        return np.array(_gradient_table(frames)[:, 1])


class FlickerTeacher(ClipTeacher):
    card = _card(
        "flicker",
        False,  # unstable brightness between frames is an artefact: more is worse
        (0.0, 255.0),
        "clips",
        "temporal luminance instability: mean |change| of 16x16 block-mean luma between consecutive frames (0..255)",
    )
    clip_len = 2

    def score_clips(self, clips: np.ndarray) -> np.ndarray:
        return _per_clip(clips, self.card.name, _flicker)


class ColourfulnessTeacher(FrameTeacher):
    card = _card(
        "colourfulness",
        True,  # faded, desaturated colour is worse
        (0.0, None),
        "key_frames",
        "colourfulness M of Hasler & Suesstrunk 2003 on RGB 0..255",
    )

    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        frames = _check(frames, 4, self.card.name, "frames")
        return np.array([_colourfulness(f) for _, f in _frames_of(frames)], dtype=np.float64)


class LuminanceTeacher(FrameTeacher):
    card = _card(
        "luminance",
        # Under-exposure is far more common than over-exposure in user video (small sensors, indoor
        # and night scenes), so brighter is better on average, though not without limit.
        True,
        (0.0, 1.0),
        "key_frames",
        "mean BT.601 luma in [0, 1]",
    )

    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        return _per_frame(frames, self.card.name, _luminance)


class SiTeacher(FrameTeacher):
    card = _card(
        "si",
        True,  # spatial detail; blur and heavy compression remove it
        (0.0, None),
        "key_frames",
        "ITU-T P.910 spatial information: std of Sobel gradient magnitude of luma (0..255) per frame",
    )

    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        frames = _check(frames, 4, self.card.name, "frames")
        return np.array(_gradient_table(frames)[:, 0])


class TiTeacher(ClipTeacher):
    card = _card(
        "ti",
        # In user video large frame-to-frame change mostly comes from camera shake, not content.
        False,
        (0.0, 255.0),
        "clips",
        "ITU-T P.910 temporal information: std of the luma difference of consecutive frames (0..255)",
    )
    clip_len = 2

    def score_clips(self, clips: np.ndarray) -> np.ndarray:
        return _per_clip(clips, self.card.name, _ti)


STATISTIC_TEACHERS = (
    BlockinessTeacher,
    BlurTeacher,
    ContrastTeacher,
    NoiseTeacher,
    FlickerTeacher,
    ColourfulnessTeacher,
    LuminanceTeacher,
    SiTeacher,
    TiTeacher,
)

"""Frame distortions used by the demo corpus and the known-order evaluation suite.

Every spatial operation takes an RGB frame ``[H, W, 3]`` that is either ``uint8`` or float in
``[0, 1]`` and returns the same dtype kind (uint8 in -> uint8 out, rounded; float in -> float32
out). Random operations take an explicit ``numpy.random.Generator`` and draw the same number of
values whatever their strength parameter, so two calls with equally seeded generators and
different strengths use the same random field ("common random numbers"): the suite relies on
this to make higher levels strictly worse by construction.

Temporal operations take and return lists of frames (any objects; nothing is copied).
Sequence operations (``SEQUENCE_OPS``: ``interlacing``, ``frame_blending``) also work on a list
of frames but build each output frame from several input frames, so they cannot go through the
per-frame ``apply_op``; ``apply_clip_op`` runs either kind on a whole clip.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Iterator, Sequence, TypeVar

import numpy as np
from scipy import ndimage

__all__ = [
    "to_float",
    "from_float",
    "resize",
    "crop_resize",
    "sample_window",
    "prefilter",
    "resize_down_up",
    "downscale",
    "gaussian_blur",
    "gaussian_noise",
    "darken",
    "brighten",
    "jitter",
    "banding",
    "colour_shift",
    "block_corruption",
    "ringing",
    "drop_frame_rate",
    "interlacing",
    "frame_blending",
    "SEQUENCE_OPS",
    "apply_op",
    "apply_clip_op",
    "stutter",
    "laplacian_variance",
]

T = TypeVar("T")


# ----------------------------------------------------------------------------- dtype helpers

def to_float(frame: np.ndarray) -> np.ndarray:
    """float32 copy in [0, 1] (uint8 is divided by 255; float input is clipped)."""
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) * np.float32(1.0 / 255.0)
    return np.clip(np.asarray(frame, dtype=np.float32), 0.0, 1.0)


def from_float(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Back to the dtype kind of ``like``: uint8 (rounded, clipped) or float32 in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    if like.dtype == np.uint8:
        return np.rint(x * 255.0).astype(np.uint8)
    return x.astype(np.float32, copy=False)


def _check(frame: np.ndarray) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB frame [H, W, 3], got shape {frame.shape}")


# ----------------------------------------------------------------------------- resampling

def _axis_weights(coords: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis; samples outside the image repeat the edge pixel."""
    coords = np.clip(coords, 0.0, n - 1)
    i0 = np.floor(coords).astype(np.intp)
    i0 = np.minimum(i0, max(n - 2, 0))
    i1 = np.minimum(i0 + 1, n - 1)
    f = (coords - i0).astype(np.float32)
    return i0, i1, f


def _sample_separable(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear sampling of float image ``img`` [H, W, C] on the grid ys x xs.

    Separable gathers (rows, then columns) instead of a general warp: pan/zoom needs no
    rotation, and this costs a few ms per 540p frame.
    """
    h, w = img.shape[:2]
    y0, y1, fy = _axis_weights(ys, h)
    x0, x1, fx = _axis_weights(xs, w)
    # Only the columns under the window matter: big photos, small windows.
    lo, hi = int(x0.min()), int(x1.max()) + 1
    sub = img[:, lo:hi]
    x0, x1 = x0 - lo, x1 - lo
    # a + (b - a) * f, in place; np.take keeps results C-contiguous (fancy indexing on
    # axis 1 would not, slowing every later op).
    rows = np.take(sub, y1, axis=0)
    a = np.take(sub, y0, axis=0)
    rows -= a
    rows *= fy[:, None, None]
    rows += a
    out = np.take(rows, x1, axis=1)
    a = np.take(rows, x0, axis=1)
    out -= a
    out *= fx[None, :, None]
    out += a
    return out


def _antialias(img: np.ndarray, zy: float, zx: float) -> np.ndarray:
    """Gaussian prefilter before shrinking by zy, zx source pixels per output pixel.

    sigma = (z - 1) / 2 is the same rule as skimage.transform.resize(anti_aliasing=True).
    """
    sy, sx = max(0.0, (zy - 1.0) / 2.0), max(0.0, (zx - 1.0) / 2.0)
    if sy <= 0 and sx <= 0:
        return img
    return ndimage.gaussian_filter(img, sigma=(sy, sx, 0.0), mode="nearest", truncate=3.0)


def sample_window(
    img: np.ndarray,
    top: float,
    left: float,
    height: float,
    width: float,
    out_h: int,
    out_w: int,
) -> np.ndarray:
    """Like ``crop_resize`` on an already float32 image, without antialiasing or conversion.

    For callers that sample many windows from one (pre-filtered) image, e.g. a camera path
    over a photograph.
    """
    ys = top + (np.arange(out_h, dtype=np.float64) + 0.5) * (height / out_h) - 0.5
    xs = left + (np.arange(out_w, dtype=np.float64) + 0.5) * (width / out_w) - 0.5
    return _sample_separable(img, ys, xs)


def prefilter(img: np.ndarray, zoom: float) -> np.ndarray:
    """Antialias float image ``img`` for shrinking by ``zoom`` source pixels per output pixel."""
    return _antialias(img, zoom, zoom)


def crop_resize(
    frame: np.ndarray,
    top: float,
    left: float,
    height: float,
    width: float,
    out_h: int,
    out_w: int,
    *,
    antialias: bool = True,
) -> np.ndarray:
    """Resample the (sub-pixel) window [top, top+height) x [left, left+width) to out_h x out_w.

    Pixel-centre aligned, bilinear; the window may leave the image (edge pixels repeat).
    """
    _check(frame)
    x = to_float(frame)
    if antialias:
        x = _antialias(x, height / out_h, width / out_w)
    return from_float(sample_window(x, top, left, height, width, out_h, out_w), frame)


def resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bilinear resize of the whole frame."""
    h, w = frame.shape[:2]
    return crop_resize(frame, 0.0, 0.0, h, w, int(height), int(width))


def downscale(frame: np.ndarray, factor: float) -> np.ndarray:
    """Shrink by ``factor`` (>= 1) in each dimension (antialiased); returns the smaller frame."""
    if factor < 1:
        raise ValueError("factor must be >= 1")
    h, w = frame.shape[:2]
    return resize(frame, max(1, round(h / factor)), max(1, round(w / factor)))


def resize_down_up(frame: np.ndarray, factor: float) -> np.ndarray:
    """Downscale by ``factor`` then upscale back to the original size (loss of detail)."""
    h, w = frame.shape[:2]
    if factor <= 1:
        return frame.copy()
    return resize(downscale(frame, factor), h, w)


# ----------------------------------------------------------------------------- spatial ops

def gaussian_blur(frame: np.ndarray, sigma: float) -> np.ndarray:
    """Isotropic Gaussian blur with ``sigma`` pixels, each channel separately."""
    _check(frame)
    if sigma <= 0:
        return frame.copy()
    x = ndimage.gaussian_filter(to_float(frame), sigma=(sigma, sigma, 0.0), mode="nearest")
    return from_float(x, frame)


def gaussian_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise, ``sigma`` in [0, 1] pixel units, independent per channel."""
    _check(frame)
    # Always draw the field (even for sigma 0) so levels share one noise realisation.
    noise = rng.standard_normal(frame.shape, dtype=np.float32)
    return from_float(to_float(frame) + np.float32(sigma) * noise, frame)


def darken(frame: np.ndarray, p: float) -> np.ndarray:
    """Under-exposure: y = (1 - p/2) * x ** (1 + 3p), per channel, p in [0, 1].

    KADID-10k style (a monotone tone curve, identity at p = 0): the power crushes shadows and
    mid-tones, the gain lowers highlights. p = 0.5 maps mid-grey 0.5 to about 0.13.
    """
    _check(frame)
    p = float(np.clip(p, 0.0, 1.0))
    x = to_float(frame)
    return from_float(np.float32(1.0 - p / 2.0) * np.power(x, np.float32(1.0 + 3.0 * p)), frame)


BRIGHTEN_MAX_P = 2.0


def brighten(frame: np.ndarray, p: float) -> np.ndarray:
    """Over-exposure: y = 1 - (1 - x) ** (1 + 3p), per channel, p in [0, 2].

    The mirror image of ``darken``'s power curve (KADID-10k style): mid-tones are lifted and
    highlights compress towards white. p = 0.5 maps mid-grey 0.5 to about 0.82. The range goes
    past 1 because the paper's top level is 1.1 (0.5 -> about 0.95); the curve stays identity
    at p = 0 and brighter for every larger p. p outside [0, 2] is an error, not clipped.
    """
    _check(frame)
    p = float(p)
    if not 0.0 <= p <= BRIGHTEN_MAX_P:
        raise ValueError(f"brighten: p must lie in [0, {BRIGHTEN_MAX_P}], got {p}")
    x = to_float(frame)
    return from_float(1.0 - np.power(1.0 - x, np.float32(1.0 + 3.0 * p)), frame)


def jitter_window(height: int, width: int, max_shift: int, u: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, crop_h, crop_w) of one jittered frame: a (H-2m) x (W-2m) window at
    (m + dy, m + dx), dy and dx integers in [-m, m] read from two uniforms ``u`` in [0, 1).
    Mapping fixed uniforms, not drawing integers, keeps common random numbers across m."""
    m = int(max_shift)
    if m < 0 or 2 * m >= min(height, width):
        raise ValueError(f"jitter: max_shift must lie in 0..{(min(height, width) - 1) // 2}, got {m}")
    dy, dx = (np.minimum(np.floor(np.asarray(u, dtype=np.float64) * (2 * m + 1)), 2 * m) - m).astype(int)
    return m + int(dy), m + int(dx), height - 2 * m, width - 2 * m


def jitter(frame: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Camera shake: shift by a random integer (dy, dx) in [-m, m]^2, m = ``max_shift`` pixels.

    The frame is cropped to the window ``jitter_window`` gives and resized back to H x W, so
    every frame of one level loses the same 2m-pixel border (a fixed zoom) and only the
    position moves. Two uniforms are drawn per call whatever m is (common random numbers).
    """
    _check(frame)
    u = rng.random(2)
    h, w = frame.shape[:2]
    if int(max_shift) == 0:
        return frame.copy()
    top, left, ch, cw = jitter_window(h, w, max_shift, u)
    return crop_resize(frame, top, left, ch, cw, h, w)


def banding(frame: np.ndarray, levels: int) -> np.ndarray:
    """Colour quantisation to ``levels`` evenly spaced values per channel (no dithering)."""
    _check(frame)
    levels = int(levels)
    if levels < 2:
        raise ValueError("levels must be >= 2")
    n = np.float32(levels - 1)
    return from_float(np.rint(to_float(frame) * n) / n, frame)


def colour_shift(frame: np.ndarray, amount: float) -> np.ndarray:
    """Chromatic misregistration: red moves ``amount`` px right and down, blue the opposite way.

    Green stays put, so edges get colour fringes while the luminance layout barely changes
    (similar to KADID-10k's "color shift"). Sub-pixel amounts are linearly interpolated.
    """
    _check(frame)
    x = to_float(frame)
    if amount == 0:
        return from_float(x, frame)
    h, w = x.shape[:2]
    out = x.copy()
    ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    for ch, sign in ((0, 1.0), (2, -1.0)):
        # output pixel (y, x) takes the channel value from (y - d, x - d)
        d = sign * amount
        out[:, :, ch : ch + 1] = _sample_separable(x[:, :, ch : ch + 1], ys - d * 0.5, xs - d)
    return from_float(out, frame)


def block_corruption(
    frame: np.ndarray,
    rate: float,
    rng: np.random.Generator,
    *,
    block: int = 16,
    max_shift: int = 24,
) -> np.ndarray:
    """Packet-loss-like damage: a fraction ``rate`` of ``block`` x ``block`` macroblocks is wrong.

    A hit block is either copied from a displaced position (a lost motion vector concealed
    badly; 3 in 4 hits) or flattened to its mean colour (only the DC coefficient survived).
    Random draws do not depend on ``rate``, so with equally seeded generators the damaged set
    at a higher rate contains the set at a lower rate.
    """
    _check(frame)
    h, w = frame.shape[:2]
    by, bx = -(-h // block), -(-w // block)
    u = rng.random((by, bx))
    kind_dc = rng.random((by, bx)) < 0.25
    dy = rng.integers(-max_shift, max_shift + 1, (by, bx))
    dx = rng.integers(-max_shift, max_shift + 1, (by, bx))
    hit = u < rate
    if not hit.any():
        return frame.copy()
    yb = np.arange(h) // block
    xb = np.arange(w) // block
    # Per-pixel source coordinates (identity outside hit blocks).
    shift_y = np.where(hit & ~kind_dc, dy, 0)[yb][:, xb]
    shift_x = np.where(hit & ~kind_dc, dx, 0)[yb][:, xb]
    src_y = np.clip(np.arange(h)[:, None] + shift_y, 0, h - 1)
    src_x = np.clip(np.arange(w)[None, :] + shift_x, 0, w - 1)
    out = frame[src_y, src_x]
    dc = hit & kind_dc
    if dc.any():
        pad = np.pad(to_float(frame), ((0, by * block - h), (0, bx * block - w), (0, 0)), mode="edge")
        means = pad.reshape(by, block, bx, block, 3).mean(axis=(1, 3))
        mask = dc[yb][:, xb]
        fill = from_float(means[yb][:, xb], frame)
        out = np.where(mask[:, :, None], fill, out)
    return out


def ringing(frame: np.ndarray, amount: float, *, sigma: float = 2.0) -> np.ndarray:
    """Edge halos from over-sharpening: luma unsharp mask y + amount * (y - blur_sigma(y)).

    Chosen over a sharp-cutoff (Gibbs) low-pass because that also blurs, mixing the artefact
    with the in-domain gaussian_blur; the unsharp mask only adds overshoot/undershoot bands
    ~2 sigma wide on both sides of every edge, growing linearly with ``amount`` (until clipped),
    like a TV's or camera's sharpening turned up. The same offset goes to R, G and B.
    """
    _check(frame)
    x = to_float(frame)
    if amount == 0:
        return from_float(x, frame)
    y = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    detail = y - ndimage.gaussian_filter(y, sigma=sigma, mode="nearest")
    return from_float(x + np.float32(amount) * detail[:, :, None], frame)


# ----------------------------------------------------------------------------- temporal ops

def _fraction(x: float | Fraction) -> Fraction:
    return x if isinstance(x, Fraction) else Fraction(x).limit_denominator(1001)


def drop_frame_rate(frames: Sequence[T], src_fps: float | Fraction, dst_fps: float | Fraction) -> list[T]:
    """Keep the frames nearest (at or before) each output instant k / dst_fps.

    The result, played at ``dst_fps``, lasts as long as the input at ``src_fps``. Exact
    rational arithmetic, so e.g. 25 -> 12.5 keeps every second frame.
    """
    src, dst = _fraction(src_fps), _fraction(dst_fps)
    if dst <= 0 or src <= 0:
        raise ValueError("frame rates must be positive")
    if dst >= src:
        return list(frames)
    n_out = max(1, int(len(frames) * dst / src))
    return [frames[int(k * src / dst)] for k in range(n_out)]


def stutter(frames: Sequence[T], p: float, rng: np.random.Generator) -> list[T]:
    """Frame freezes: each frame after the first repeats the previous output with probability p.

    Length and frame rate are unchanged; consecutive repeats make longer freezes.
    """
    frames = list(frames)
    if not frames:
        return []
    repeat = rng.random(len(frames)) < p
    out = [frames[0]]
    for i in range(1, len(frames)):
        out.append(out[-1] if repeat[i] else frames[i])
    return out


def _partner(t: int, n: int, k: int) -> int:
    """The frame k instants after t (before t near the end; the farthest one if the clip is
    shorter than k), so each frame is paired at distance min(k, max(t, n-1-t)): never less
    for a larger k."""
    if t + k <= n - 1:
        return t + k
    if t - k >= 0:
        return t - k
    return n - 1 if n - 1 - t >= t else 0


def interlacing(frames: Sequence[np.ndarray], offset: int) -> list[np.ndarray]:
    """Combing: even rows of output frame t come from frame t, odd rows from frame t + offset.

    A badly deinterlaced (woven) video whose two fields are ``offset`` frames apart; moving
    edges get comb teeth as wide as the motion over ``offset`` frames. Length is unchanged.
    """
    frames = list(frames)
    k = int(offset)
    if k < 0:
        raise ValueError(f"interlacing: offset must be >= 0, got {offset}")
    out = []
    for t, x in enumerate(frames):
        _check(x)
        y = x.copy()
        if k:
            y[1::2] = frames[_partner(t, len(frames), k)][1::2]
        out.append(y)
    return out


def frame_blending(frames: Sequence[np.ndarray], span: int, *, weight: float = 0.5) -> list[np.ndarray]:
    """Ghosting of blend-based frame-rate conversion: frame t mixed with frame t + ``span``.

    Output t = (1 - weight) * x_t + weight * x_{t+span} (before t near the end), so every
    moving object shows a semi-transparent double ``span`` frames of motion away. Unlike the
    simulators' drop_frame_rate/stutter (which repeat whole frames) no frame stays clean.
    """
    frames = list(frames)
    k = int(span)
    if k < 0:
        raise ValueError(f"frame_blending: span must be >= 0, got {span}")
    w = np.float32(weight)
    out = []
    for t, x in enumerate(frames):
        _check(x)
        if k == 0:
            out.append(x.copy())
            continue
        y = (1 - w) * to_float(x) + w * to_float(frames[_partner(t, len(frames), k)])
        out.append(from_float(y, x))
    return out


# Ops that need the whole clip (name -> function(frames, value)); see apply_clip_op.
SEQUENCE_OPS = {"interlacing": ("offset", interlacing), "frame_blending": ("span", frame_blending)}


# ----------------------------------------------------------------------------- measures

def laplacian_variance(frame: np.ndarray) -> float:
    """Variance of the Laplacian of the luma: a simple sharpness measure (higher = sharper)."""
    x = to_float(frame) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return float(ndimage.laplace(x, mode="nearest").var())


def apply_op(x: np.ndarray, op: dict, rng: np.random.Generator | None = None) -> np.ndarray:
    """Apply one spatial op described as {"op": name, <its parameter>: value} (as recorded in
    provenance) to a frame; `rng` is needed by the random ops."""
    name = op["op"]
    if name == "resize_down_up":
        return resize_down_up(x, op["factor"])
    if name == "gaussian_blur":
        return gaussian_blur(x, op["sigma"])
    if name == "gaussian_noise":
        return gaussian_noise(x, op["sigma"], rng)
    if name == "darken":
        return darken(x, op["p"])
    if name == "brighten":
        return brighten(x, op["p"])
    if name == "jitter":
        return jitter(x, op["max_shift"], rng)
    if name == "banding":
        return banding(x, op["levels"])
    if name == "colour_shift":
        return colour_shift(x, op["amount"])
    if name == "block_corruption":
        return block_corruption(x, op["rate"], rng)
    if name == "ringing":
        return ringing(x, op["amount"])
    if name in SEQUENCE_OPS:
        raise ValueError(f"{name!r} needs the whole clip: use apply_clip_op")
    raise ValueError(f"unknown spatial op {name!r}")


def apply_clip_op(
    frames: Sequence[np.ndarray], op: dict, rng: np.random.Generator | None = None
) -> Iterator[np.ndarray]:
    """Apply one op to a clip: a sequence op (``SEQUENCE_OPS``) to the list of frames, any
    other op frame by frame through ``apply_op`` (lazily, drawing from ``rng`` in frame order)."""
    if op["op"] in SEQUENCE_OPS:
        pname, fn = SEQUENCE_OPS[op["op"]]
        return iter(fn(frames, op[pname]))
    return (apply_op(x, op, rng) for x in frames)

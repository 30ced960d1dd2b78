"""BRISQUE (Mittal, Moorthy & Bovik 2012) as a real score: the pre-trained epsilon-SVR that ships
offline inside the ``brisque`` package (Apache-2.0), applied to natural-scene features computed
here. Only the model files are taken from that package: its own code needs OpenCV and breaks
under numpy 2, so the 36 features and the RBF regression are re-implemented in numpy, following
the definitions the shipped model was trained with (checked against the package, see tests).
"""
from __future__ import annotations

import functools
import importlib.util
import pickle
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize, special

from vqa.teachers.base import FrameTeacher, TeacherCard, TeacherError

# The package's pre-processing: skimage's rgb2gray weights (Rec. 709), image on [0, 1].
_GRAY = np.array([0.2125, 0.7154, 0.0721])
_C = 1.0 / 255.0
_MIN_SIDE = 32


def _model_dir() -> Path:
    spec = importlib.util.find_spec("brisque")  # locate without importing (its __init__ needs cv2)
    if spec is None or not spec.submodule_search_locations:
        raise TeacherError("brisque: the 'brisque' package (which ships the SVR model) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@functools.lru_cache(maxsize=1)
def _model() -> tuple[np.ndarray, np.ndarray, float, float, np.ndarray, np.ndarray]:
    """(support vectors [S,36], coefficients [S], gamma, rho, feature min, feature max)."""
    root = _model_dir()
    lines = (root / "svm.txt").read_text(encoding="ascii").splitlines()
    header, start = {}, 0
    for i, line in enumerate(lines):
        if line.strip() == "SV":
            start = i + 1
            break
        key, _, value = line.partition(" ")
        header[key] = value
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise TeacherError(f"brisque: {root / 'svm.txt'} is not an RBF epsilon-SVR")
    coef, svs = [], []
    for line in lines[start:]:
        parts = line.split()
        if not parts:
            continue
        coef.append(float(parts[0]))
        row = np.zeros(36)
        for item in parts[1:]:
            idx, _, val = item.partition(":")
            row[int(idx) - 1] = float(val)
        svs.append(row)
    with open(root / "normalize.pickle", "rb") as fh:
        scale = pickle.load(fh)
    lo = np.array([float(np.asarray(v).reshape(-1)[0]) for v in scale["min_"]])
    hi = np.array([float(np.asarray(v).reshape(-1)[0]) for v in scale["max_"]])
    return np.array(svs), np.array(coef), float(header["gamma"]), float(header["rho"]), lo, hi


def _gauss_1d(n: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    x = np.arange(n) - n // 2
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()  # the 2-D normalised Gaussian is the outer product of this with itself


def _blur(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    # zero padding, as scipy.signal.convolve2d(..., "same") in the reference
    return ndimage.correlate1d(ndimage.correlate1d(img, k, axis=0, mode="constant"), k, axis=1, mode="constant")


def mscn(gray: np.ndarray) -> np.ndarray:
    k = _gauss_1d()
    mu = _blur(gray, k)
    sd = np.sqrt(np.abs(mu * mu - _blur(gray * gray, k)))
    return (gray - mu) / (sd + _C)


def _phi(alpha):
    return special.gamma(2 / alpha) ** 2 / (special.gamma(1 / alpha) * special.gamma(3 / alpha))


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian by moment matching -> (alpha, mean, sigma_l, sigma_r)."""
    x = x.reshape(-1)
    neg, pos = x[x < 0], x[x >= 0]
    if neg.size == 0 or pos.size == 0:
        raise TeacherError("brisque: flat image (no MSCN variation)")
    sl, sr = np.sqrt(np.mean(neg * neg)), np.sqrt(np.mean(pos * pos))
    if sr == 0 or sl == 0:
        raise TeacherError("brisque: flat image (no MSCN variation)")
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x * x)
    g = sl / sr
    big_r = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    # phi rises monotonically from 0 (alpha -> 0) to 0.75 (alpha -> inf): one root.
    lo, hi = 0.03, 20.0
    target = float(np.clip(big_r, _phi(lo) + 1e-12, _phi(hi) - 1e-12))
    alpha = optimize.brentq(lambda a: _phi(a) - target, lo, hi, xtol=1e-12)
    const = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (sr - sl) * const * special.gamma(2 / alpha) / special.gamma(1 / alpha)
    return float(alpha), float(mean), float(sl), float(sr)


def _scale_features(gray: np.ndarray) -> list[float]:
    m = mscn(gray)
    a, _, sl, sr = aggd_fit(m)
    out = [a, (sl * sl + sr * sr) / 2]
    for prod in (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]):
        a, mean, sl, sr = aggd_fit(prod)
        out += [a, mean, sl * sl, sr * sr]
    return out


_CUBIC_HALF = np.array([-0.09375, 0.59375, 0.59375, -0.09375])  # Keys a=-0.75 at offsets +-0.5, +-1.5


def half_size(gray: np.ndarray) -> np.ndarray:
    """Bicubic (a = -0.75) 2x downscale, border replicated, no antialiasing: OpenCV's INTER_CUBIC
    at fx = fy = 1/2, which the shipped model's features were computed with."""
    def along(x: np.ndarray, axis: int) -> np.ndarray:
        n = x.shape[axis]
        m = (n + 1) // 2  # OpenCV rounds the output size
        # output j samples source 2j + 0.5: taps 2j-1 .. 2j+2, clamped at the borders
        base = 2 * np.arange(m)
        idx = np.clip(base[:, None] + np.arange(-1, 3)[None, :], 0, n - 1)
        taps = np.take(x, idx, axis=axis)  # axis becomes [m, 4]
        shape = [1] * taps.ndim
        shape[axis + 1] = 4
        return (taps * _CUBIC_HALF.reshape(shape)).sum(axis=axis + 1)

    return along(along(gray, 0), 1)


def features(rgb: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of one RGB uint8 frame (18 at full size, 18 at half size)."""
    gray = rgb.astype(np.float64) @ _GRAY / 255.0
    return np.array(_scale_features(gray) + _scale_features(half_size(gray)))


def predict(feats: np.ndarray) -> np.ndarray:
    """The shipped SVR on [N, 36] features -> [N] scores (about 0 best .. 100 worst)."""
    svs, coef, gamma, rho, lo, hi = _model()
    x = -1 + 2.0 * (feats - lo) / (hi - lo)
    d2 = (x * x).sum(1)[:, None] + (svs * svs).sum(1)[None, :] - 2 * x @ svs.T
    return np.exp(-gamma * np.maximum(d2, 0)) @ coef - rho


class BrisqueTeacher(FrameTeacher):
    card = TeacherCard(
        name="brisque",
        version="svr-brisque0.2.0-v1",
        higher_is_better=False,  # the SVR predicts a distortion score (DMOS-like)
        score_range=(None, None),
        needs="key_frames",
        kind="homogeneous",
        summary="BRISQUE natural-scene features + the SVR shipped offline in the brisque package, mean over key frames",
        small_frames=f"scored as they are from {_MIN_SIDE}x{_MIN_SIDE} (7x7 Gaussian windows at full and half size)",
    )

    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        h, w = frames.shape[1:3]
        if min(h, w) < _MIN_SIDE:
            raise TeacherError(f"brisque: frame {w}x{h} is below {_MIN_SIDE}x{_MIN_SIDE}")
        return predict(np.stack([features(f) for f in frames]))

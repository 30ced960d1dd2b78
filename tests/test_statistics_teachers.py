"""The nine low-level statistic teachers (vqa.teachers.statistics): cards, shapes, the luma cache,
agreement with plain float64 reference implementations, and that each moves in its stated
direction on a matching synthetic distortion."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from vqa import distortions as D
from vqa.teachers import statistics as S
from vqa.teachers.base import ClipTeacher, FrameTeacher, TeacherError

NAMES = {"blockiness", "blur", "contrast", "noise", "flicker", "colourfulness", "luminance", "si", "ti"}
BY_NAME = {cls.card.name: cls for cls in S.STATISTIC_TEACHERS}
# From what each statistic measures (see the module), not from any benchmark.
HIGHER_IS_BETTER = {
    "blockiness": False,
    "blur": False,
    "contrast": True,
    "noise": False,
    "flicker": False,
    "colourfulness": True,
    "luminance": True,
    "si": True,
    "ti": False,
}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())  # 512x512 RGB uint8


@pytest.fixture(scope="module")
def patch(photo) -> np.ndarray:
    return np.ascontiguousarray(photo[64:320, 128:384])  # 256x256 natural patch


@pytest.fixture(autouse=True)
def _fresh_cache():
    S.clear_cache()
    yield
    S.clear_cache()


def frame_score(name: str, frame: np.ndarray) -> float:
    return float(BY_NAME[name]().score_frames(frame[None])[0])


def clip_score(name: str, f0: np.ndarray, f1: np.ndarray) -> float:
    return float(BY_NAME[name]().score_clips(np.stack([f0, f1])[None])[0])


def increasing(values) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


def decreasing(values) -> bool:
    return all(b < a for a, b in zip(values, values[1:]))


def luma64(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.float64) / 255.0
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def gain(frame: np.ndarray, g: float) -> np.ndarray:
    return np.clip(np.rint(frame.astype(np.float64) * g), 0, 255).astype(np.uint8)


def window(photo: np.ndarray, dy: int, dx: int, size: int = 256) -> np.ndarray:
    return np.ascontiguousarray(photo[100 + dy : 100 + dy + size, 100 + dx : 100 + dx + size])


# ----------------------------------------------------------------------------- cards and shapes


def test_cards_are_the_nine_with_valid_fields():
    names = [cls.card.name for cls in S.STATISTIC_TEACHERS]
    assert len(names) == len(set(names)) == 9
    assert set(names) == NAMES
    for cls in S.STATISTIC_TEACHERS:
        card = cls.card
        assert card.higher_is_better is HIGHER_IS_BETTER[card.name], card.name
        assert card.kind == "homogeneous" and card.version == "v1" and card.summary
        if issubclass(cls, ClipTeacher):
            assert card.needs == "clips" and 2 <= cls.clip_len <= 4
        else:
            assert issubclass(cls, FrameTeacher) and card.needs == "key_frames"
        lo, hi = card.score_range
        assert lo is not None and (hi is None or hi > lo)


def _video(photo):
    """Three varied key frames (natural, flat grey, noise) and a 4-frame clip for each."""
    rng = np.random.default_rng(5)
    frames = np.stack([window(photo, 0, 0, 64), np.full((64, 64, 3), 90, np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)])
    clips = np.stack([np.stack([np.roll(f, k, axis=1) for k in range(4)]) for f in frames])
    return frames, clips


@pytest.mark.parametrize("cls", S.STATISTIC_TEACHERS, ids=lambda c: c.card.name)
def test_outputs_have_shape_are_finite_in_range_and_deterministic(cls, photo):
    frames, clips = _video(photo)
    teacher = cls()
    if issubclass(cls, ClipTeacher):
        run = lambda: teacher.score_clips(clips[:, : cls.clip_len])  # noqa: E731
        res = teacher.score_decoded(frames, clips, "unused.mp4")
    else:
        run = lambda: teacher.score_frames(frames)  # noqa: E731
        res = teacher.score_decoded(frames, None, "unused.mp4")
    first = run()
    assert first.shape == (3,) and np.all(np.isfinite(first))
    lo, hi = cls.card.score_range
    assert np.all(first >= lo - 1e-9) and (hi is None or np.all(first <= hi + 1e-9))
    np.testing.assert_array_equal(run(), first)
    S.clear_cache()
    np.testing.assert_array_equal(run(), first)
    assert res["score"] == pytest.approx(float(first.mean()))


@pytest.mark.parametrize("cls", S.STATISTIC_TEACHERS, ids=lambda c: c.card.name)
def test_frames_below_16_pixels_raise_and_16_works(cls):
    small_frames, small_clips = np.zeros((1, 15, 40, 3), np.uint8), np.zeros((1, 2, 40, 15, 3), np.uint8)
    ok_frames, ok_clips = np.full((1, 16, 16, 3), 200, np.uint8), np.full((1, 2, 16, 16, 3), 200, np.uint8)
    teacher = cls()
    score = teacher.score_clips if issubclass(cls, ClipTeacher) else teacher.score_frames
    with pytest.raises(TeacherError, match="16x16"):
        score(small_clips if issubclass(cls, ClipTeacher) else small_frames)
    out = score(ok_clips if issubclass(cls, ClipTeacher) else ok_frames)
    assert out.shape == (1,) and np.all(np.isfinite(out))


def test_wrong_shape_or_dtype_is_a_teacher_error():
    with pytest.raises(TeacherError, match="shape"):
        S.BlurTeacher().score_frames(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(TeacherError, match="uint8"):
        S.BlurTeacher().score_frames(np.zeros((1, 32, 32, 3), np.float32))


# ----------------------------------------------------------------------------- the luma cache


def test_luma_matches_bt601(photo):
    np.testing.assert_allclose(S.luma(photo[None])[0], luma64(photo), atol=1e-5)


def test_luma_cache_cannot_be_fooled(photo, patch):
    a = np.ascontiguousarray(patch[None])
    b = np.ascontiguousarray(255 - a)  # same shape, different content
    teacher = S.LuminanceTeacher()
    ra, rb = teacher.score_frames(a), teacher.score_frames(b)
    assert ra[0] == pytest.approx(luma64(a[0]).mean(), abs=1e-5)
    assert rb[0] == pytest.approx(luma64(b[0]).mean(), abs=1e-5)
    # A buffer rewritten in place (same pointer, shape, strides) must not serve the old luma.
    buf = a.copy()
    assert teacher.score_frames(buf)[0] == pytest.approx(ra[0])
    buf[0, 10, 10, 0] ^= 1  # one byte changed is enough
    assert S.luma(buf)[0, 10, 10] == pytest.approx(luma64(buf[0])[10, 10], abs=1e-6)
    assert S.luma(buf)[0, 10, 10] != pytest.approx(luma64(a[0])[10, 10], abs=1e-4)
    buf[...] = b
    assert teacher.score_frames(buf)[0] == pytest.approx(rb[0])
    # Each teacher's view of the same clips is a fresh view object: it must still be the same data.
    clips = np.stack([np.stack([patch] * 4), np.stack([255 - patch] * 4)])
    ti = S.TiTeacher()
    assert np.all(ti.score_clips(clips[:, :2]) == 0) and np.all(ti.score_clips(clips[:, 1:3]) == 0)
    # The same derived data through two teachers that share the gradient pass, then fresh data.
    g1 = (S.SiTeacher().score_frames(a)[0], S.NoiseTeacher().score_frames(a)[0])
    g2 = (S.SiTeacher().score_frames(b)[0], S.NoiseTeacher().score_frames(b)[0])
    S.clear_cache()
    assert g1 == (S.SiTeacher().score_frames(a)[0], S.NoiseTeacher().score_frames(a)[0])
    assert g2 == (S.SiTeacher().score_frames(b)[0], S.NoiseTeacher().score_frames(b)[0])


def test_cached_luma_is_read_only(patch):
    y = S.luma(patch[None])
    with pytest.raises(ValueError):
        y[0, 0, 0] = 1.0


# ----------------------------------------------------------------------------- reference implementations


def test_blur_matches_crete_roffet_reference(photo):
    def reference(frame):
        f = luma64(frame)
        out = 0.0
        for axis in (0, 1):
            b = ndimage.uniform_filter1d(f, 9, axis=axis, mode="nearest")
            d_f = np.abs(np.diff(f, axis=axis))
            d_b = np.abs(np.diff(b, axis=axis))
            s_f, s_v = d_f.sum(), np.maximum(0, d_f - d_b).sum()
            out = max(out, (s_f - s_v) / s_f)
        return out

    for sigma in (0, 1.5, 4):
        frame = D.gaussian_blur(photo, sigma)
        assert frame_score("blur", frame) == pytest.approx(reference(frame), abs=0.01)


def test_si_and_noise_match_reference(photo):
    rng = np.random.default_rng(0)
    frame = D.gaussian_noise(photo, 6 / 255, rng)
    y = luma64(frame) * 255
    mag = np.hypot(ndimage.sobel(y, axis=1), ndimage.sobel(y, axis=0))[1:-1, 1:-1]
    assert frame_score("si", frame) == pytest.approx(mag.std(), rel=1e-3)  # ITU-T P.910 SI
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float)
    lap = np.abs(ndimage.convolve(y, kernel))[1:-1, 1:-1]
    keep = mag <= np.quantile(mag, 0.9)
    want = math.sqrt(math.pi / 2) / 6 * lap[keep].mean()  # Immerkaer 1996, edges excluded
    assert frame_score("noise", frame) == pytest.approx(want, rel=0.03)


def test_noise_estimate_is_calibrated_on_flat_grey():
    rng = np.random.default_rng(1)
    grey = np.full((256, 256, 3), 128, np.uint8)
    per_channel_to_luma = math.sqrt(0.299**2 + 0.587**2 + 0.114**2)  # independent noise per channel
    for sigma in (3.0, 8.0):
        est = frame_score("noise", D.gaussian_noise(grey, sigma / 255, rng))
        assert est == pytest.approx(sigma * per_channel_to_luma, rel=0.05)


def test_contrast_luminance_colourfulness_match_reference(photo):
    y = luma64(photo)
    assert frame_score("contrast", photo) == pytest.approx(y.std(), rel=1e-4)
    assert frame_score("luminance", photo) == pytest.approx(y.mean(), rel=1e-5)
    x = photo.astype(np.float64)
    rg, yb = x[..., 0] - x[..., 1], 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    m = math.sqrt(rg.var() + yb.var()) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    assert frame_score("colourfulness", photo) == pytest.approx(m, rel=1e-4)


# ----------------------------------------------------------------------------- directions


def test_blur_grows_with_gaussian_blur(patch):
    values = [frame_score("blur", D.gaussian_blur(patch, s)) for s in (0, 0.8, 1.5, 2.5, 4.0)]
    assert increasing(values), values
    assert 0 <= values[0] < 0.5 < values[-1] <= 1


def test_noise_grows_with_added_noise_and_is_small_on_clean(photo):
    clean = frame_score("noise", photo)
    assert clean < 2.0, clean  # grey levels
    noisy = [frame_score("noise", D.gaussian_noise(photo, s / 255, np.random.default_rng(2))) for s in (2, 5, 10, 20)]
    assert increasing([clean] + noisy), (clean, noisy)


def test_blockiness_grows_with_block_means(photo):
    x = photo.astype(np.float64)
    means = x.reshape(64, 8, 64, 8, 3).mean(axis=(1, 3))
    blocky = np.repeat(np.repeat(means, 8, axis=0), 8, axis=1)
    clean = frame_score("blockiness", photo)
    assert clean == pytest.approx(1.0, abs=0.1)
    values = [frame_score("blockiness", np.rint((1 - a) * x + a * blocky).astype(np.uint8)) for a in (0.25, 0.5, 0.75, 1.0)]
    assert increasing([clean] + values), (clean, values)
    assert values[1] > 1.5


def test_contrast_falls_when_contrast_is_reduced(photo):
    x = photo.astype(np.float64)
    values = [frame_score("contrast", np.rint(128 + k * (x - 128)).astype(np.uint8)) for k in (1.0, 0.75, 0.5, 0.25)]
    assert decreasing(values), values


def test_colourfulness_falls_with_desaturation_and_is_zero_on_grey(photo):
    x = photo.astype(np.float64)
    grey = (luma64(photo) * 255)[..., None]
    values = [frame_score("colourfulness", np.rint(grey + k * (x - grey)).astype(np.uint8)) for k in (1.0, 0.6, 0.3, 0.1)]
    assert decreasing(values), values
    flat_grey = np.repeat(np.rint(grey).astype(np.uint8), 3, axis=2)
    assert frame_score("colourfulness", flat_grey) == pytest.approx(0.0, abs=1e-6)


def test_luminance_falls_with_darkening(photo):
    values = [frame_score("luminance", D.darken(photo, p)) for p in (0.0, 0.2, 0.4, 0.7)]
    assert decreasing(values), values
    assert frame_score("luminance", D.brighten(photo, 0.4)) > values[0]


def test_si_falls_with_blur(patch):
    values = [frame_score("si", D.gaussian_blur(patch, s)) for s in (0, 0.8, 1.5, 2.5, 4.0)]
    assert decreasing(values), values


def test_ti_is_zero_when_static_and_grows_with_shift(photo):
    still = window(photo, 0, 0)
    assert clip_score("ti", still, still) == 0.0
    values = [clip_score("ti", still, window(photo, 0, s)) for s in (1, 2, 4, 8)]
    assert increasing(values), values


def test_flicker_is_zero_when_static_and_grows_with_brightness_oscillation(photo):
    still = window(photo, 0, 0)
    assert clip_score("flicker", still, still) == 0.0
    values = [clip_score("flicker", gain(still, 1 - a), gain(still, 1 + a)) for a in (0.02, 0.05, 0.1, 0.2)]
    assert increasing(values), values


def test_flicker_counts_brightness_change_not_motion(photo):
    still = window(photo, 0, 0)
    moved = window(photo, 1, 2)  # small camera shake
    ti_motion = clip_score("ti", still, moved)

    # Gain flicker with the same TI: TI grows with the gain, so bisect on it.
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if clip_score("ti", still, gain(still, 1 + mid)) < ti_motion else (lo, mid)
    flickered = gain(still, 1 + hi)
    assert clip_score("ti", still, flickered) == pytest.approx(ti_motion, rel=0.05)
    f_motion, f_flicker = clip_score("flicker", still, moved), clip_score("flicker", still, flickered)
    assert f_motion < 0.25 * f_flicker, (f_motion, f_flicker)

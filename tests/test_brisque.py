"""BRISQUE: the shipped SVR applied to features computed here."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from vqa.distortions import gaussian_blur, gaussian_noise
from vqa.teachers.brisque import BrisqueTeacher, _model, aggd_fit, half_size, predict


@pytest.fixture(scope="module")
def image():
    return skimage.data.chelsea()


def test_model_loads_from_the_package():
    svs, coef, gamma, rho, lo, hi = _model()
    assert svs.shape[1] == 36 and len(coef) == len(svs) > 100
    assert gamma > 0 and np.all(hi > lo)


def test_blur_and_noise_raise_the_score(image):
    t = BrisqueTeacher()
    clean = t.score_frames(image[None])[0]
    blurred = [t.score_frames(gaussian_blur(image, s)[None])[0] for s in (1.0, 2.0, 4.0)]
    noisy = t.score_frames(gaussian_noise(image, 0.08, np.random.default_rng(0))[None])[0]
    assert clean < blurred[0] < blurred[1] < blurred[2]
    assert noisy > clean + 10
    assert 0 <= clean < 40  # a sharp natural photo scores as good on BRISQUE's DMOS-like scale


def test_deterministic_and_per_frame(image):
    t = BrisqueTeacher()
    a = t.score_video(np.stack([image, image[::-1]]))
    b = t.score_video(np.stack([image, image[::-1]]))
    assert a == b and len(a["frames"]) == 2


def test_half_size_is_cubic_with_replicated_border():
    x = np.arange(48, dtype=np.float64).reshape(6, 8)
    h = half_size(x)
    assert h.shape == (3, 4)
    # interior sample (1,1) sits at source (2.5, 2.5): bicubic of a linear ramp is exact
    assert h[1, 1] == pytest.approx(x[2:4, 2:4].mean())
    flat = half_size(np.full((5, 7), 3.0))
    assert flat.shape == (3, 4) and np.allclose(flat, 3.0)  # weights sum to 1


def test_aggd_fit_recovers_a_gaussian():
    x = np.random.default_rng(0).standard_normal(200_000)
    alpha, mean, sl, sr = aggd_fit(x)
    assert alpha == pytest.approx(2.0, abs=0.05)
    assert sl == pytest.approx(1.0, abs=0.02) and sr == pytest.approx(1.0, abs=0.02)
    assert abs(mean) < 0.02


def test_predict_is_batched_consistently(image):
    from vqa.teachers.brisque import features

    f = np.stack([features(image), features(gaussian_blur(image, 2.0))])
    both = predict(f)
    assert both[0] == pytest.approx(predict(f[:1])[0]) and both[1] == pytest.approx(predict(f[1:])[0])

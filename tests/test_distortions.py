"""Frame distortions and deterministic encoding (vqa.distortions, vqa.video.encode)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from vqa import distortions as D
from vqa.io import sha256_file
from vqa.video.encode import read_frames, reencode, video_fps, write_video


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    from vqa.corpus.demo import load_photo

    return np.ascontiguousarray(load_photo("astronaut")[100:244, 150:342])  # 144x192 natural patch


def _rng() -> np.random.Generator:
    return np.random.default_rng(123)


def _strictly(values, decreasing=False) -> bool:
    pairs = list(zip(values, values[1:]))
    return all(b < a for a, b in pairs) if decreasing else all(b > a for a, b in pairs)


# ----------------------------------------------------------------------------- level order


def test_blur_lowers_sharpness_monotonically(frame):
    sharp = [D.laplacian_variance(frame)] + [D.laplacian_variance(D.gaussian_blur(frame, s)) for s in (0.8, 1.5, 2.5, 4.0)]
    assert _strictly(sharp, decreasing=True)


def test_noise_raises_residual_std_monotonically(frame):
    ref = frame.astype(np.float64)
    stds = [np.std(D.gaussian_noise(frame, s, _rng()).astype(np.float64) - ref) for s in (0.0, 0.01, 0.02, 0.04, 0.08)]
    assert _strictly(stds)
    assert abs(stds[-1] - 0.08 * 255) < 0.15 * 0.08 * 255  # sigma is in [0, 1] pixel units


def test_banding_reduces_distinct_values(frame):
    counts = [len(np.unique(frame))] + [len(np.unique(D.banding(frame, n))) for n in (24, 12, 6, 3)]
    assert _strictly(counts, decreasing=True)
    assert counts[-1] <= 3


def test_resize_down_up_loses_detail(frame):
    errs = [np.mean((D.resize_down_up(frame, f).astype(float) - frame) ** 2) for f in (1.5, 2.0, 3.0, 4.0)]
    assert _strictly(errs)
    assert D.resize_down_up(frame, 2.0).shape == frame.shape
    assert D.downscale(frame, 2.0).shape == (72, 96, 3)


def test_exposure_curves(frame):
    mean = frame.mean()
    dark = [D.darken(frame, p).mean() for p in (0.1, 0.3, 0.6)]
    bright = [D.brighten(frame, p).mean() for p in (0.1, 0.3, 0.6)]
    assert _strictly([mean] + dark, decreasing=True)
    assert _strictly([mean] + bright)
    assert np.array_equal(D.darken(frame, 0.0), frame) and np.array_equal(D.brighten(frame, 0.0), frame)


def test_colour_shift_and_block_corruption_grow(frame):
    diffs = [np.abs(D.colour_shift(frame, a).astype(float) - frame).mean() for a in (1, 2, 4, 8)]
    assert _strictly(diffs)
    changed = [np.mean(np.any(D.block_corruption(frame, r, _rng()) != frame, axis=2)) for r in (0.02, 0.1, 0.3, 0.6)]
    assert _strictly(changed)
    # same generator state -> damaged set of a higher rate contains the lower one
    lo = np.any(D.block_corruption(frame, 0.1, _rng()) != frame, axis=2)
    hi = np.any(D.block_corruption(frame, 0.3, _rng()) != frame, axis=2)
    assert np.all(hi[lo])


def test_dtypes_and_determinism(frame):
    f = D.to_float(frame)
    for op in (lambda x: D.gaussian_blur(x, 1.0), lambda x: D.banding(x, 8), lambda x: D.colour_shift(x, 2.5)):
        assert op(frame).dtype == np.uint8
        out = op(f)
        assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
    a = D.gaussian_noise(frame, 0.05, np.random.default_rng(7))
    b = D.gaussian_noise(frame, 0.05, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_temporal_ops():
    frames = list(range(100))  # any objects
    assert D.drop_frame_rate(frames, 25, 12.5) == frames[::2]
    assert D.drop_frame_rate(frames, 30, 10) == frames[::3][:33]  # 100 frames / 30 fps = 3.33 s
    assert len(D.drop_frame_rate(frames, 25, Fraction(25, 3))) == 33
    assert D.drop_frame_rate(frames, 25, 30) == frames
    s = D.stutter(frames, 0.3, np.random.default_rng(1))
    assert len(s) == 100 and s[0] == 0
    assert all(b in (a, i) for i, (a, b) in enumerate(zip(s, s[1:]), 1))  # repeat or advance
    assert 15 < sum(a == b for a, b in zip(s, s[1:])) < 45
    assert s == D.stutter(frames, 0.3, np.random.default_rng(1))


def test_crop_resize_subpixel_shift_is_smooth(frame):
    a = D.crop_resize(frame, 10.0, 10.0, 72, 96, 72, 96)
    b = D.crop_resize(frame, 10.25, 10.0, 72, 96, 72, 96)
    c = D.crop_resize(frame, 11.0, 10.0, 72, 96, 72, 96)
    assert np.array_equal(a, frame[10:82, 10:106])  # integer window at scale 1 = plain crop
    assert np.abs(b.astype(int) - a).mean() < np.abs(c.astype(int) - a).mean()


# ----------------------------------------------------------------------------- encoding


def _moving_frames(frame, n=12):
    return [np.roll(frame, 3 * i, axis=1) for i in range(n)]


def test_write_video_deterministic_and_atomic(tmp_path, frame):
    frames = _moving_frames(frame[:-1, :-1])  # odd size: cropped to even
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_video(a, frames, fps=25, crf=20, metadata={"comment": "x"})
    write_video(b, iter(frames), fps=25, crf=20, metadata={"comment": "x"})
    assert sha256_file(a) == sha256_file(b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]  # no temp files left
    out = list(read_frames(a))
    assert len(out) == 12 and out[0].shape == (142, 190, 3)
    assert video_fps(a) == 25
    write_video(tmp_path / "c.mp4", frames[:3], fps=12.5)
    assert video_fps(tmp_path / "c.mp4") == Fraction(25, 2)


def test_write_video_failure_leaves_nothing(tmp_path, frame):
    def bad():
        yield frame
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_video(tmp_path / "x.mp4", bad(), fps=25)
    assert list(tmp_path.iterdir()) == []


def test_reencode_crf_levels_lower_psnr(tmp_path, frame):
    src = tmp_path / "src.mp4"
    write_video(src, _moving_frames(frame, 10), fps=25, crf=10)
    ref = np.stack(list(read_frames(src))).astype(np.float64)
    mses = []
    for crf in (24, 36, 48, 63):
        dst = tmp_path / f"r{crf}.mp4"
        reencode(src, dst, codec="libx264", crf=crf, preset="fast")
        out = np.stack(list(read_frames(dst))).astype(np.float64)
        assert out.shape == ref.shape and video_fps(dst) == 25
        mses.append(np.mean((out - ref) ** 2))
    assert _strictly(mses)  # CRF 63 is clamped to 51 by x264: still worse than 48
    reencode(src, tmp_path / "small.mp4", codec="libx264", crf=30, preset="fast", max_side=96)
    assert next(read_frames(tmp_path / "small.mp4")).shape == (72, 96, 3)

"""OOD types of the known-order suite: colour_shift, ringing, interlacing, frame_blending.

Each operator's suite levels must be ordered on a property that measures its artefact, and the
suite plan must flag them out-of-domain on the documented source subset.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vqa import distortions as D
from vqa.corpus import demo

NEW = ("colour_shift", "ringing", "interlacing", "frame_blending")
OLD = ("gaussian_blur", "gaussian_noise", "banding", "block_corruption")


def _levels(name):
    pname, vals = demo.SUITE_DISTORTIONS[name]
    return [{"op": name, pname: v} for v in vals]


def _strictly_increasing(v) -> bool:
    return all(b > a for a, b in zip(v, v[1:]))


def _luma(x: np.ndarray) -> np.ndarray:
    return D.to_float(x).astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return demo.load_photo("astronaut")


@pytest.fixture(scope="module")
def frame(photo) -> np.ndarray:
    return np.ascontiguousarray(photo[60:196, 120:360])  # 136x240 natural patch with edges


@pytest.fixture(scope="module")
def clip(photo) -> list[np.ndarray]:
    """12 frames of a pan (3 px right, 1 px down per frame) over a natural patch."""
    return [np.ascontiguousarray(photo[60 + t : 196 + t, 120 + 3 * t : 360 + 3 * t]) for t in range(12)]


def _render(clip, op):
    return list(D.apply_clip_op(clip, op, np.random.default_rng(0)))


# ----------------------------------------------------------------------------- level order

def test_colour_shift_misregistration_grows(frame):
    def misregistration(x):
        # 1 - correlation of the red/blue and green channel gradients: 0 when registered
        g = D.to_float(x).astype(np.float64)
        grad = [np.hypot(ndimage.sobel(g[..., c], 0), ndimage.sobel(g[..., c], 1))[8:-8, 8:-8].ravel()
                for c in range(3)]
        return 2 - np.corrcoef(grad[0], grad[1])[0, 1] - np.corrcoef(grad[2], grad[1])[0, 1]

    vals = [misregistration(frame)] + [misregistration(D.apply_op(frame, op)) for op in _levels("colour_shift")]
    assert _strictly_increasing(vals), vals
    # luminance layout barely moves: green is untouched
    assert np.array_equal(D.apply_op(frame, _levels("colour_shift")[-1])[..., 1], frame[..., 1])


def test_ringing_overshoot_near_edges_grows(frame):
    y0 = _luma(frame)
    lo, hi = ndimage.minimum_filter(y0, 9), ndimage.maximum_filter(y0, 9)

    def overshoot(x):  # luma beyond the local range of the pristine frame: halos
        y = _luma(x)
        return float(np.mean(np.maximum(y - hi, 0) + np.maximum(lo - y, 0)))

    vals = [overshoot(frame)] + [overshoot(D.apply_op(frame, op)) for op in _levels("ringing")]
    assert vals[0] == 0.0 and _strictly_increasing(vals), vals
    # halos sit at edges: overshoot is concentrated where the pristine gradient is strong
    y = _luma(D.apply_op(frame, _levels("ringing")[-1]))
    over = np.maximum(y - hi, 0) + np.maximum(lo - y, 0)
    edge = ndimage.maximum_filter(np.hypot(ndimage.sobel(y0, 0), ndimage.sobel(y0, 1)), 9)
    strong = edge > np.quantile(edge, 0.5)
    assert over[strong].mean() > 3 * over[~strong].mean()


def test_interlacing_comb_energy_grows(clip):
    def comb(frames):
        # adjacent-line difference beyond what the lines two apart (same field) explain
        out = []
        for x in frames:
            y = _luma(x)
            out.append(np.abs(y[1:-1] - 0.5 * (y[:-2] + y[2:])).mean() - 0.5 * np.abs(y[2:] - y[:-2]).mean())
        return float(np.mean(out))

    vals = [comb(clip)] + [comb(_render(clip, op)) for op in _levels("interlacing")]
    assert _strictly_increasing(vals), vals
    out = _render(clip, _levels("interlacing")[0])
    assert all(np.array_equal(o[0::2], x[0::2]) for o, x in zip(out, clip))  # top field is frame t
    assert np.array_equal(out[0][1::2], clip[1][1::2])  # bottom field from t + 1
    assert np.array_equal(out[-1][1::2], clip[-2][1::2])  # ... or t - 1 at the end


def test_frame_blending_ghosting_grows(clip):
    def ghost(frames):  # distance from the frame that should be shown
        return float(np.mean([np.abs(_luma(o) - _luma(x)).mean() for o, x in zip(frames, clip)]))

    vals = [ghost(clip)] + [ghost(_render(clip, op)) for op in _levels("frame_blending")]
    assert vals[0] == 0.0 and _strictly_increasing(vals), vals
    # each output is the 50/50 mix of frame t and frame t + span: as close to one as the other
    k = _levels("frame_blending")[1]["span"]
    o = D.to_float(_render(clip, _levels("frame_blending")[1])[0])
    a, b = D.to_float(clip[0]), D.to_float(clip[k])
    assert np.abs(o - 0.5 * (a + b)).max() <= 1 / 255 + 1e-6


def test_partner_distance_never_shrinks_in_short_clips():
    for n in (1, 2, 5, 12):
        for t in range(n):
            dist = [abs(D._partner(t, n, k) - t) for k in (1, 2, 4, 8)]
            assert all(b >= a for a, b in zip(dist, dist[1:])), (n, t, dist)
            assert all(0 <= D._partner(t, n, k) < n for k in (1, 2, 4, 8))


# ----------------------------------------------------------------------------- mechanics

def test_ops_reachable_deterministic_and_keep_dtype(clip):
    f = [D.to_float(x) for x in clip[:4]]
    for name in NEW:
        op = _levels(name)[2]
        a, b = _render(clip[:4], op), _render(clip[:4], op)
        assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == 4
        assert all(x.dtype == np.uint8 and x.shape == clip[0].shape for x in a)
        out = list(D.apply_clip_op(f, op))
        assert all(x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0 for x in out)
    for name in ("interlacing", "frame_blending"):
        assert name in D.SEQUENCE_OPS
        with pytest.raises(ValueError, match="apply_clip_op"):
            D.apply_op(clip[0], _levels(name)[0])


def test_apply_clip_op_matches_per_frame_apply_op_for_spatial_ops(clip):
    op = {"op": "gaussian_noise", "sigma": 0.05}
    rng = np.random.default_rng(5)
    ref = [D.apply_op(x, op, rng) for x in clip[:3]]
    got = list(D.apply_clip_op(clip[:3], op, np.random.default_rng(5)))
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))


# ----------------------------------------------------------------------------- suite plan

def test_plan_flags_new_types_ood_on_subset():
    specs = demo._plan_suite(0, 0.25, 0.2)
    n_src = len(demo.SUITE_SOURCES)
    subset = demo.SUITE_DISTORTION_SOURCES
    assert len(specs) == n_src * (1 + 4 * len(OLD)) + 3 * 4 * len(NEW) == 150
    kinds = {s.name: s.kind for s in demo.SUITE_SOURCES}
    for name in NEW:
        rows = [s for s in specs if s["distortion"] == name]
        assert len(rows) == 4 * 3
        assert {s["ood"] for s in rows} == {1}
        assert {s["source"] for s in rows} == set(subset[name]) == {"chelsea", "coffee", "bigbuckbunny"}
        assert {kinds[s] for s in subset[name]} == {"photo", "video"}
        for src in subset[name]:
            group = sorted((s for s in rows if s["source"] == src), key=lambda s: s["level"])
            assert [s["level"] for s in group] == [1, 2, 3, 4]
            assert [s["op"] for s in group] == _levels(name)
            assert len({tuple(s["rng_key"]) for s in group}) == 1
        assert name not in demo.SIMULATED_DEGRADATIONS
    for name in OLD:
        assert subset[name] == tuple(s.name for s in demo.SUITE_SOURCES)
    assert {s["ood"] for s in specs if s["distortion"] in ("gaussian_blur", "gaussian_noise", "pristine")} == {0}
    assert len({s["file"] for s in specs}) == len(specs)

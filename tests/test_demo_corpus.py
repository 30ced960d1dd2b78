"""Demo corpus and known-order suite (vqa.corpus.demo): determinism, resume, disjointness."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from vqa.corpus import demo
from vqa.corpus.demo import (
    DEMO_SOURCES,
    SUITE_SOURCES,
    build_demo_corpus,
    build_known_order_suite,
    plan_demo_clip,
)
from vqa.io import read_json, sha256_file
from vqa.video.encode import read_frames

# Small and short so a build takes seconds; the specs are otherwise the full-size ones.
SMALL = dict(scale=0.25, max_duration=0.6)


def _hashes(root):
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _quiet(*_):
    pass


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    records = build_demo_corpus(root, n_clips=3, seed=0, workers=2, log=_quiet, **SMALL)
    return root, records


def test_sources_disjoint_and_present():
    demo_names = {s.name for s in DEMO_SOURCES}
    suite_names = {s.name for s in SUITE_SOURCES}
    assert not demo_names & suite_names
    assert not {s.path for s in DEMO_SOURCES} & {s.path for s in SUITE_SOURCES}
    assert "carphone_distorted" not in " ".join(s.relpath for s in DEMO_SOURCES + SUITE_SOURCES)
    for s in DEMO_SOURCES + SUITE_SOURCES:
        assert s.path.is_file(), s


def test_corpus_layout_and_provenance(corpus):
    root, records = corpus
    assert [r["file"] for r in records] == [f"videos/demo_{i:04d}.mp4" for i in range(3)]
    assert read_json(root / "provenance.json") == records
    for r in records:
        frames = list(read_frames(root / r["file"]))
        assert len(frames) == r["n_frames"]
        assert frames[0].shape == (r["height"], r["width"], 3)
        assert r["chain"][-1] == {"op": "compress", "codec": "libx264", "crf": r["crf"], "preset": "fast"}
        assert r["source"] in {s.name for s in DEMO_SOURCES}
        assert r["sha256"] == sha256_file(root / r["file"])


def test_corpus_deterministic_across_workers(corpus, tmp_path):
    root, _ = corpus
    build_demo_corpus(tmp_path, n_clips=3, seed=0, workers=1, log=_quiet, **SMALL)
    assert _hashes(tmp_path) == _hashes(root)


def test_corpus_resume_rebuilds_only_missing(tmp_path):
    build_demo_corpus(tmp_path, n_clips=3, seed=1, workers=1, log=_quiet, **SMALL)
    before = _hashes(tmp_path)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "videos").iterdir()}
    (tmp_path / "videos" / "demo_0001.mp4").unlink()
    built = []
    demo_fn = demo._build_demo_clip

    def spy(spec, out_dir):
        built.append(spec["file"])
        return demo_fn(spec, out_dir)

    demo._build_demo_clip = spy
    try:
        build_demo_corpus(tmp_path, n_clips=3, seed=1, workers=1, log=_quiet, **SMALL)
    finally:
        demo._build_demo_clip = demo_fn
    assert built == ["videos/demo_0001.mp4"]
    assert _hashes(tmp_path) == before
    for name in ("demo_0000.mp4", "demo_0002.mp4"):
        assert (tmp_path / "videos" / name).stat().st_mtime_ns == mtimes[name]
    # fewer clips: the extra file goes, the rest is untouched
    build_demo_corpus(tmp_path, n_clips=2, seed=1, workers=1, log=_quiet, **SMALL)
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["demo_0000.mp4", "demo_0001.mp4"]


def test_plans_spread_and_are_stable():
    specs = [plan_demo_clip(i, seed=0) for i in range(64)]
    assert specs[5] == plan_demo_clip(5, seed=0)  # independent of n_clips / order
    assert specs[5] != plan_demo_clip(5, seed=1)
    crfs = [s["crf"] for s in specs]
    n_ops = [len(s["chain"]) - 1 for s in specs]
    assert min(crfs) <= 20 and max(crfs) >= 48
    assert set(n_ops) == {0, 1, 2, 3}
    assert {s["scene"]["fps"] for s in specs} >= {24, 25, 30}
    assert any(s["fps"] < 16 for s in specs)  # some frame-rate reductions
    assert all(s["width"] % 2 == 0 and s["height"] % 2 == 0 and max(s["width"], s["height"]) <= 960 for s in specs)
    assert all(2.9 <= s["duration_s"] <= 5.1 for s in specs)  # frame dropping may trim a frame
    assert {s["source"] for s in specs} == {s.name for s in DEMO_SOURCES}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    records = build_known_order_suite(root, seed=0, workers=2, log=_quiet, scale=0.25, max_duration=0.2)
    return root, records


def test_suite_labels(suite):
    root, records = suite
    with open(root / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["file", "source", "distortion", "level", "ood"]
    n_groups = sum(len(demo.SUITE_DISTORTION_SOURCES[d]) for d in demo.SUITE_DISTORTIONS)
    assert len(rows) == len(SUITE_SOURCES) + 4 * n_groups == len(records) == 150
    for r in rows:
        assert (root / r["file"]).is_file()
        assert r["file"] == f"videos/{r['source']}__{r['distortion']}__L{r['level']}.mp4"
    ood = {r["distortion"]: r["ood"] for r in rows}
    assert ood == {
        "pristine": "0",
        "gaussian_blur": "0",
        "gaussian_noise": "0",
        "banding": "1",
        "block_corruption": "1",
        "colour_shift": "1",
        "ringing": "1",
        "interlacing": "1",
        "frame_blending": "1",
    }
    assert all(r["ood"] == ood[r["distortion"]] for r in rows)
    assert {r["source"] for r in rows} == {s.name for s in SUITE_SOURCES}


def test_suite_levels_measurably_ordered(suite):
    root, _ = suite
    src = "chelsea"

    def frames(dist, level):
        name = f"{src}__pristine__L0.mp4" if level == 0 else f"{src}__{dist}__L{level}.mp4"
        return np.stack(list(read_frames(root / "videos" / name))).astype(np.float64)

    ref = frames(None, 0)
    for dist in demo.SUITE_DISTORTIONS:
        assert src in demo.SUITE_DISTORTION_SOURCES[dist]
        err = [np.mean((frames(dist, k) - ref) ** 2) for k in range(5)]
        if dist in ("interlacing", "frame_blending"):
            # a 5-frame test clip caps the frame offset at 4, so L3 (4) and L4 (8) coincide
            assert all(b >= a for a, b in zip(err, err[1:])) and err[3] > err[2] > err[1] > 0, (dist, err)
        elif dist == "block_corruption":
            # a tiny test clip has ~40 blocks x 5 frames: level 1 (rate 0.005) may hit none
            assert all(b >= a for a, b in zip(err, err[1:])) and err[4] > err[2] > 0, err
        else:
            assert all(b > a for a, b in zip(err, err[1:])), (dist, err)


def test_suite_deterministic_and_resumable(suite, tmp_path):
    root, _ = suite
    build_known_order_suite(tmp_path, seed=0, workers=1, log=_quiet, scale=0.25, max_duration=0.2)
    assert _hashes(tmp_path) == _hashes(root)
    victim = tmp_path / "videos" / "rocket__banding__L3.mp4"
    victim.unlink()
    logs = []
    build_known_order_suite(tmp_path, seed=0, workers=1, log=logs.append, scale=0.25, max_duration=0.2)
    assert any(f"{len(demo._plan_suite(0, 0.25, 0.2)) - 1} of" in m and "building 1" in m for m in logs), logs
    assert _hashes(tmp_path) == _hashes(root)

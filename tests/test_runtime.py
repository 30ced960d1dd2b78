"""Backbone runtime: ONNX Runtime agrees with torch, is deterministic, is cached on disk, and the
training feature cache and scoring compute the very same numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.media import make_clip
from vqa.scoring import score_videos, scores_from_features
from vqa.student import runtime as rt
from vqa.student.features import FeatureStore
from vqa.student.model import StudentConfig, StudentModel
from vqa.student.views import make_views, student_inputs
from vqa.video import read_video

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

CFG = StudentConfig(input_size=64, fragment_grid=4, max_key_frames=2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated(cache, monkeypatch):
    monkeypatch.setenv(rt.CACHE_ENV, str(cache))
    monkeypatch.delenv(rt.RUNTIME_ENV, raising=False)


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return StudentModel(CFG).eval()


def _views(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return make_views(rng.integers(0, 256, size=(n, 48, 80, 3), dtype=np.uint8), 64, 4).numpy()


def test_selection_falls_back_to_torch(monkeypatch):
    assert rt.select_runtime(CFG) == "onnxruntime"
    assert rt.select_runtime(StudentConfig(freeze_backbone=False)) == "torch"  # fine-tuned weights
    assert rt.select_runtime(CFG, "cuda") == "torch"
    monkeypatch.setenv(rt.RUNTIME_ENV, "torch")
    assert rt.select_runtime(CFG) == "torch" and rt.runtime_tag(CFG) == rt.TORCH_TAG
    monkeypatch.setenv(rt.RUNTIME_ENV, "tensorrt")
    with pytest.raises(ValueError, match="expected auto, torch or onnxruntime"):
        rt.select_runtime(CFG)
    monkeypatch.setenv(rt.RUNTIME_ENV, "auto")
    monkeypatch.setattr(rt, "_ort_installed", lambda: False)
    assert rt.select_runtime(CFG) == "torch"


def test_ort_matches_torch_and_is_deterministic(student, cache):
    views = _views(3)
    ort_rt = rt.backbone_runtime(student)
    assert ort_rt.name == "onnxruntime" and ort_rt.onnx_file == rt.onnx_path(cache, student)
    assert ort_rt.onnx_file.exists()
    ref = rt.TorchRuntime(student).features(views)
    got = ort_rt.features(views)
    assert got.shape == ref.shape == (3, 2 * 1280) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-3
    assert np.array_equal(got, ort_rt.features(views))  # run to run
    assert np.array_equal(got[:1], ort_rt.features(views[:1]))  # whatever the batch
    one = rt.OrtRuntime.from_file(ort_rt.onnx_file, threads=1)
    assert np.array_equal(got, one.features(views))  # whatever the thread count
    assert rt.runtime_tag(CFG) != rt.TORCH_TAG  # other numbers, other cache key


def test_damaged_export_is_made_again(student, tmp_path):
    path = rt.onnx_path(tmp_path, student)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx graph")
    runtime = rt.OrtRuntime.for_model(student, cache_dir=tmp_path)
    assert runtime.features(_views(1)).shape == (1, 2560)
    assert path.read_bytes()[:20] != b"not an onnx graph"
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]  # written atomically


def test_feature_cache_and_scoring_compute_the_same_numbers(student, tmp_path):
    for i in range(2):
        make_clip(tmp_path / "v" / f"c{i}.mp4", frames=12, fps=6, seed=i)
    paths = sorted((tmp_path / "v").glob("*.mp4"))
    store = FeatureStore(tmp_path / "cache", student)
    assert store.runtime.name == "onnxruntime"
    assert rt.runtime_tag(CFG) in store.dir.name  # ORT features never mix with torch ones
    feats = {}
    for p in paths:
        video = read_video(str(p), key_rate=CFG.key_rate, max_key_frames=CFG.max_key_frames,
                           motion_len=CFG.motion_frames)
        inputs = student_inputs(video.key_frames, video.motion, CFG.input_size, CFG.fragment_grid, CFG.motion_frames)
        feats[p.name] = store.add_views(p.name, *inputs)
        assert np.array_equal(store.cached(p.name), feats[p.name])
    from_cache = scores_from_features(student, feats)
    for workers in (1, 2):  # in this process / in the workers
        rows = score_videos(paths, model=student, workers=workers)
        assert [r["score"] for r in rows] == [from_cache[p.name] for p in paths]

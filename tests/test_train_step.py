"""The pipeline's train step with a fine-tuned backbone (the GPU setup, run on CPU with a tiny
TorchScript backbone): views and motion cached in one decode, anchors stored, scoring works."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import yaml

from tests.media import make_clip
from tests.test_train import WORKER
from vqa.config import load_params
from vqa.fusion.pairs import Pair, write_pairs
from vqa.pipeline import layout, steps


def _tiny_backbone(path: Path) -> None:
    spec = importlib.util.spec_from_file_location("train_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    worker.tiny_backbone(path)


def test_fine_tuning_train_step_caches_views_and_motion_and_stores_anchors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VQA_CACHE_DIR", str(tmp_path / "backbone-cache"))
    _tiny_backbone(tmp_path / "backbone.pt")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "corpus": {"videos": "data/videos", "workers": 1},
        "video": {"key_rate": 1.0, "max_key_frames": 2},
        "teachers": {"homogeneous": ["contrast"], "workers": 1},
        "student": {"backbone": f"file:{tmp_path / 'backbone.pt'}", "freeze_backbone": False, "input_size": 32,
                    "fragment_grid": 4, "hidden": 8, "epochs": 2, "batch_size": 8, "motion_frames": 4,
                    "loader_workers": 1, "checkpoint_every": 1,
                    "pooling": "gap"},  # a TorchScript file has no levels for multilevel pooling
        "rounds": {"round1": {"after": "artifacts/corpus/manifest.json"}},
    }))
    for i in range(6):
        make_clip(tmp_path / "data" / "videos" / f"clip{i}.mp4", frames=20, fps=8, seed=i)
    params = load_params(tmp_path / "params.yaml")
    steps.ingest(params, log=lambda m: None)
    ids = [vid for vid, _ in steps._corpus_items()]
    rng = np.random.default_rng(0)
    pairs = [Pair(ids[i], ids[j], int(rng.integers(0, 5)), "homogeneous") for i in range(6) for j in range(6) if i != j]
    write_pairs(layout.pairs("round1"), pairs)

    logs: list[str] = []
    out = steps.train(params, "round1", log=logs.append)
    assert out["steps"] > 0 and out["world_size"] == 1
    views = sorted((layout.CACHE / "views").rglob("*.npy"))
    assert len([p for p in views if p.name.endswith(".motion.npy")]) == 6  # one decode: views + motion
    assert not (layout.CACHE / "checkpoints" / "round1.pt").exists()  # a finished run removes it

    from vqa.scoring import score_videos
    from vqa.student.anchors import anchors_of
    from vqa.student.checkpoint import load_student

    student = load_student(layout.student("round1"))
    assert student.config.backbone_weights and "_ft" in student.config.feature_fingerprint()
    assert len(anchors_of(student).video_ids) == 5
    rows = score_videos(sorted((tmp_path / "data" / "videos").glob("*.mp4")), model=student, workers=1,
                        anchored=True)
    assert all(np.isfinite(r["score"]) and 0 <= r["score_0_100"] <= 100 for r in rows)

    # Retraining from scratch gives the same student (seeded, deterministic on CPU).
    first = {k: v.clone() for k, v in student.state_dict().items()}
    steps.train(params, "round1", log=lambda m: None)
    again = load_student(layout.student("round1")).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)

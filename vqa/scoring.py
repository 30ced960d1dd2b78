"""Scoring videos with a trained student (higher score = better quality)."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from vqa.student.model import StudentModel
from vqa.student.views import make_views
from vqa.video import VideoError, read_video


@torch.no_grad()
def score_paths(model: StudentModel, paths: list[str | Path]) -> list[dict]:
    """Score each file; unreadable ones get score NaN and the reason in `error`."""
    cfg = model.config
    model.eval()
    rows = []
    for p in paths:
        try:
            video = read_video(p, key_rate=cfg.key_rate, max_key_frames=cfg.max_key_frames)
        except VideoError as exc:
            rows.append({"path": str(p), "score": math.nan, "error": exc.reason})
            continue
        views = make_views(video.key_frames, cfg.input_size, cfg.fragment_grid)
        feats = model.frame_features(views).unsqueeze(0)
        rows.append({"path": str(p), "score": float(model.video_scores(feats)[0]), "error": ""})
    return rows


@torch.no_grad()
def scores_from_features(model: StudentModel, features: dict) -> dict[str, float]:
    """Video id -> score, from cached backbone features (no decoding)."""
    model.eval()
    out = {}
    for vid, f in features.items():
        out[vid] = float(model.video_scores(torch.from_numpy(f).unsqueeze(0))[0])
    return out

"""Backbone features per video, cached by (feature fingerprint, video content hash)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from vqa.io import atomic_write_bytes
from vqa.student.model import StudentConfig, StudentModel


class FeatureStore:
    """Per-video backbone features [T, 2*C] float32 for one student configuration."""

    def __init__(self, cache_root: str | Path, model: StudentModel, *, device: str = "cpu"):
        self.model = model
        self.config: StudentConfig = model.config
        self.dir = Path(cache_root) / "features" / self.config.feature_fingerprint()
        self.device = device

    def _path(self, vid: str) -> Path:
        return self.dir / f"{vid}.npy"

    def cached(self, vid: str) -> np.ndarray | None:
        p = self._path(vid)
        if p.exists():
            try:
                return np.load(p)
            except (OSError, ValueError):
                p.unlink(missing_ok=True)  # damaged cache entry: recompute
        return None

    @torch.no_grad()
    def add_views(self, vid: str, views: np.ndarray) -> np.ndarray:
        """uint8 views [T,2,3,S,S] -> features, stored atomically."""
        self.model.eval()
        feats = self.model.frame_features(torch.from_numpy(views).to(self.device)).float().cpu().numpy()
        buf = io.BytesIO()
        np.save(buf, feats)
        atomic_write_bytes(self._path(vid), buf.getvalue())
        return feats


def stack_features(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-length [T_i, D] -> padded [N, T_max, D] and a [N, T_max] validity mask."""
    t_max = max(f.shape[0] for f in feats)
    dim = feats[0].shape[1]
    x = torch.zeros(len(feats), t_max, dim)
    mask = torch.zeros(len(feats), t_max, dtype=torch.bool)
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = torch.from_numpy(f)
        mask[i, : f.shape[0]] = True
    return x, mask

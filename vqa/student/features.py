"""Backbone features per video, cached by (feature fingerprint, video content hash)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from vqa.io import atomic_write_bytes
from vqa.student.model import StudentConfig, StudentModel
from vqa.student.runtime import backbone_runtime, runtime_tag


class FeatureStore:
    """Per-video backbone features [T, 2*C] float32 for one student configuration, computed by the
    same backbone runtime as scoring (vqa.student.runtime), so cached and scored features agree."""

    def __init__(self, cache_root: str | Path, model: StudentModel, *, device: str = "cpu"):
        self.model = model
        self.config: StudentConfig = model.config
        self.device = device
        self.cache_root = Path(cache_root)
        self._runtime = None
        fingerprint = self.config.feature_fingerprint()
        tag = runtime_tag(self.config, device)
        if tag not in fingerprint:
            # The runtime changes the numbers: its tag must be part of the key (until the
            # config's fingerprint names it, it is added here).
            fingerprint += tag
        self.dir = self.cache_root / "features" / fingerprint

    @property
    def runtime(self):
        """Made on first use: a store that only reads the cache never exports the backbone."""
        if self._runtime is None:
            self._runtime = backbone_runtime(self.model, device=self.device, cache_dir=self.cache_root)
        return self._runtime

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

    def add_views(self, vid: str, views: np.ndarray, motion: np.ndarray | None = None) -> np.ndarray:
        """uint8 views [T,2,3,S,S] (+ motion descriptors [T,M]) -> features [T, 2C (+M)], stored atomically."""
        feats = self.runtime.features(views)
        if motion is not None:
            feats = np.concatenate([feats, motion.astype(np.float32)], axis=1)
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

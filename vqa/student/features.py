"""Backbone features per video, cached by (feature fingerprint, video content hash)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vqa.io import atomic_write_bytes
from vqa.student.model import StudentConfig, StudentModel
from vqa.student.motion import with_motion
from vqa.student.runtime import backbone_runtime


class FeatureStore:
    """Per-video backbone features [T, 2*C] float32 for one student configuration, computed by the
    same backbone runtime as scoring (vqa.student.runtime), so cached and scored features agree."""

    def __init__(self, cache_root: str | Path, model: StudentModel, *, device: str = "cpu"):
        self.model = model
        self.config: StudentConfig = model.config
        self.device = device
        self.cache_root = Path(cache_root)
        self._runtime = None
        self.dir = self.cache_root / "features" / self.config.feature_fingerprint(device)

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
        feats = with_motion(self.runtime.features(views), motion)
        buf = io.BytesIO()
        np.save(buf, feats)
        atomic_write_bytes(self._path(vid), buf.getvalue())
        return feats

"""Student checkpoints: config + trainable weights, written atomically."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from vqa.io import atomic_write_bytes
from vqa.student.model import StudentConfig, StudentModel

FORMAT = 1


def save_student(path: str | Path, model: StudentModel, meta: dict | None = None) -> None:
    buf = io.BytesIO()
    torch.save(
        {"format": FORMAT, "config": model.config.to_dict(), "state": model.trainable_state(), "meta": meta or {}},
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())


def load_student(path: str | Path, device: str = "cpu") -> StudentModel:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: student checkpoint not found") from None
    except Exception as exc:  # torch raises many types for damaged files
        raise ValueError(f"{path}: not a readable student checkpoint ({exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path}: not a w2s-vqa student checkpoint (format {FORMAT})")
    config = {"motion_frames": 0, **blob["config"]}  # students saved before the motion branch had none
    model = StudentModel(StudentConfig(**config))
    model.meta = blob.get("meta") or {}  # round, seed, loss, anchors (vqa.student.anchors)
    missing, unexpected = model.load_state_dict(blob["state"], strict=False)
    # A frozen backbone is rebuilt from its packaged weights, so only its keys may be missing.
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint does not fit the model (missing={missing}, unexpected={unexpected})")
    return model.to(device).eval()

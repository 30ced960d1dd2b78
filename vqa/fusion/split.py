"""The validation split: by video, never by pair.

A corpus video belongs to the validation set when a seeded hash of its content id falls below
`validation.fraction`. The decision depends on the video alone, so it does not move when the
corpus grows or is reordered, and every simulated version of a validation video is a validation
video too (simulate, fuse, train and evaluate all ask `is_validation`). No training pair touches a
validation video; a pair with one video on each side is used by neither.
"""
from __future__ import annotations

import hashlib
from typing import Iterable


def is_validation(video_id: str, fraction: float, seed: int) -> bool:
    h = hashlib.sha256(f"w2s-validation/{seed}/{video_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


def validation_videos(video_ids: Iterable[str], fraction: float, seed: int) -> set[str]:
    return {v for v in video_ids if is_validation(v, fraction, seed)}


def pair_split(a: str, b: str, validation: set[str]) -> str | None:
    """"train", "val", or None for a pair that crosses the split (used by neither side)."""
    va, vb = a in validation, b in validation
    if va and vb:
        return "val"
    if not va and not vb:
        return "train"
    return None

"""What the training loop reads: labelled pairs as index tensors, and per-video inputs.

Two input sources, one interface (``batch(video_indices)`` -> model inputs):
- FeatureSource: cached backbone features, all in memory (frozen backbone; the CPU demo setup).
- ViewSource: the uint8 views of each video, stored once per video by ViewStore and loaded by
  DataLoader workers (fine-tuning the backbone end to end; the GPU setup).
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vqa.fusion import PAIR_KINDS, Pair
from vqa.io import atomic_write_bytes
from vqa.student.motion import MOTION_VERSION


@dataclass
class PairSet:
    """Pairs as tensors over a sorted list of video ids (pairs missing an input are dropped)."""

    ids: list[str]
    a: torch.Tensor  # [P] index into ids
    b: torch.Tensor
    y: torch.Tensor  # [P] labels 0..4
    w: torch.Tensor  # [P] pair weights
    kind: torch.Tensor  # [P] index into PAIR_KINDS
    val: torch.Tensor  # [P] bool: a validation pair (both videos held out)
    skipped: int = 0

    @classmethod
    def build(cls, pairs: list[Pair], available, weights: list[float]) -> "PairSet":
        keep = [i for i, p in enumerate(pairs) if p.a in available and p.b in available]
        if not any(pairs[i].split == "train" for i in keep):
            raise ValueError("no training pair has inputs for both of its videos")
        usable = [pairs[i] for i in keep]
        ids = sorted({p.a for p in usable} | {p.b for p in usable})
        index = {vid: i for i, vid in enumerate(ids)}
        return cls(
            ids=ids,
            a=torch.tensor([index[p.a] for p in usable]),
            b=torch.tensor([index[p.b] for p in usable]),
            y=torch.tensor([p.label for p in usable]),
            w=torch.tensor([weights[i] for i in keep], dtype=torch.float32),
            kind=torch.tensor([PAIR_KINDS.index(p.kind) for p in usable]),
            val=torch.tensor([p.split == "val" for p in usable], dtype=torch.bool),
            skipped=len(pairs) - len(usable),
        )

    def __len__(self) -> int:
        return len(self.y)

    def digest(self) -> str:
        """Identifies the training data (ids, pairs, labels, weights) in a checkpoint."""
        h = hashlib.sha256("\n".join(self.ids).encode())
        for t in (self.a, self.b, self.y, self.w, self.val):
            h.update(t.numpy().tobytes())
        return h.hexdigest()[:16]


def micro_batch(pairs: PairSet, sel: torch.Tensor) -> dict:
    """The videos a set of pairs touches, and each pair's positions among them."""
    vids, inverse = torch.unique(torch.cat([pairs.a[sel], pairs.b[sel]]), return_inverse=True)
    n = len(sel)
    return {"vids": vids, "ia": inverse[:n], "ib": inverse[n:], "y": pairs.y[sel], "w": pairs.w[sel]}


def pad_stack(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-length [T_i, ...] -> zero-padded [N, T_max, ...] and a [N, T_max] validity mask."""
    t_max = max(x.shape[0] for x in arrays)
    out = torch.zeros((len(arrays), t_max, *arrays[0].shape[1:]), dtype=torch.from_numpy(arrays[0][:0]).dtype)
    mask = torch.zeros(len(arrays), t_max, dtype=torch.bool)
    for i, x in enumerate(arrays):
        out[i, : x.shape[0]] = torch.from_numpy(np.ascontiguousarray(x))
        mask[i, : x.shape[0]] = True
    return out, mask


class FeatureSource:
    """Frozen backbone: features of every video stacked once and kept on the training device."""

    kind = "features"

    def __init__(self, features: dict[str, np.ndarray]):
        self.features = features

    def __contains__(self, vid: str) -> bool:
        return vid in self.features

    def prepare(self, ids: list[str], device: torch.device, pairs_per_batch: int | None = None) -> None:
        feats, mask = pad_stack([self.features[v].astype(np.float32, copy=False) for v in ids])
        self.feats, self.mask = feats.to(device), mask.to(device)

    def inputs(self, vids: torch.Tensor) -> dict:
        vids = vids.to(self.feats.device)
        return {"feats": self.feats[vids], "mask": self.mask[vids]}

    def chunks(self, vids: torch.Tensor, max_videos: int = 4096) -> list[torch.Tensor]:
        return list(vids.split(max_videos))

    def fingerprint(self) -> str:
        return "features"


class ViewStore:
    """uint8 views [T,2,3,S,S] of each video as .npy files, for end-to-end fine-tuning.

    Same interface as FeatureStore (``config``, ``cached``, ``add_views``), so the one-decode
    analysis fills it; ``cached`` returns a memory map, so nothing is held in RAM."""

    def __init__(self, cache_root: str | Path, config):
        self.config = config
        from vqa.student.views import VIEWS_VERSION

        name = f"s{config.input_size}_g{config.fragment_grid}_vw{VIEWS_VERSION}_r{config.key_rate:g}_k{config.max_key_frames}"
        if config.motion_frames:
            name += f"_mv{MOTION_VERSION}l{config.motion_frames}"
        self.dir = Path(cache_root) / "views" / name

    def path(self, vid: str) -> Path:
        return self.dir / f"{vid}.npy"

    def cached(self, vid: str) -> np.ndarray | None:
        p = self.path(vid)
        if p.exists():
            if self.config.motion_frames and not self.motion_path(vid).exists():
                return None  # written before the motion branch: decode again
            try:
                return np.load(p, mmap_mode="r")
            except (OSError, ValueError):
                p.unlink(missing_ok=True)  # damaged entry: decode again
        return None

    def motion_path(self, vid: str) -> Path:
        return self.dir / f"{vid}.motion.npy"

    def add_views(self, vid: str, views: np.ndarray, motion: np.ndarray | None = None) -> np.ndarray:
        if motion is not None:  # first: a views file without its motion file is never left behind
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(motion, dtype=np.float32))
            atomic_write_bytes(self.motion_path(vid), buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(views, dtype=np.uint8))
        atomic_write_bytes(self.path(vid), buf.getvalue())
        return np.load(self.path(vid), mmap_mode="r")


class _ViewBatches(torch.utils.data.Dataset):
    """Item i: the stacked views of the videos of micro-batch i (read in a loader worker)."""

    def __init__(self, files: list[str], motion_files: list[str] | None, batches: list[dict]):
        self.files, self.motion_files, self.batches = files, motion_files, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict:
        mb = self.batches[i]
        return {**mb, **load_views(self.files, self.motion_files, mb["vids"].tolist())}


def load_views(files: list[str], motion_files: list[str] | None, vids: list[int]) -> dict:
    views, mask = pad_stack([np.load(files[v]) for v in vids])
    out = {"views": views, "mask": mask}
    if motion_files is not None:
        out["motion"] = pad_stack([np.load(motion_files[v]) for v in vids])[0]
    return out


class ViewSource:
    """Fine-tuning: views read from a ViewStore by DataLoader workers, pinned for fast copies."""

    kind = "views"

    def __init__(self, store: ViewStore, vids: list[str], *, workers: int = 2):
        self.store = store
        self.motion = bool(store.config.motion_frames)
        self.available = {v for v in vids if store.path(v).exists()
                          and (not self.motion or store.motion_path(v).exists())}
        self.workers = workers

    def __contains__(self, vid: str) -> bool:
        return vid in self.available

    def prepare(self, ids: list[str], device: torch.device, pairs_per_batch: int | None = None) -> None:
        self.files = [str(self.store.path(v)) for v in ids]
        self.motion_files = [str(self.store.motion_path(v)) for v in ids] if self.motion else None
        self.lengths = [int(np.load(f, mmap_mode="r").shape[0]) for f in self.files]
        self.device = device
        # On CUDA every batch is padded to one frame count: the most a micro-batch can hold.
        self.pad_frames = 0
        if device.type == "cuda" and pairs_per_batch:
            self.pad_frames = sum(sorted(self.lengths, reverse=True)[: 2 * pairs_per_batch])

    def loader(self, batches: list[dict]):
        """Micro-batches in order, loaded ahead by workers (results are the same for any count)."""
        pin = self.device.type == "cuda"
        return torch.utils.data.DataLoader(
            _ViewBatches(self.files, self.motion_files, batches), batch_size=None, shuffle=False, num_workers=self.workers,
            pin_memory=pin, prefetch_factor=4 if self.workers else None,
        )

    def inputs_from(self, item: dict) -> dict:
        nb = self.device.type == "cuda"
        moved = {k: item[k].to(self.device, non_blocking=nb) for k in ("views", "mask", "motion") if k in item}
        return {**moved, "pad_frames": self.pad_frames}

    def inputs(self, vids: torch.Tensor) -> dict:
        return self.inputs_from(load_views(self.files, self.motion_files, vids.tolist()))

    def chunks(self, vids: torch.Tensor, max_videos: int = 64) -> list[torch.Tensor]:
        """Evaluation batches that fit the padded frame count (and at most max_videos videos)."""
        cap = self.pad_frames or math.inf
        out, cur, frames = [], [], 0
        for v in vids.tolist():
            if cur and (frames + self.lengths[v] > cap or len(cur) == max_videos):
                out.append(torch.tensor(cur))
                cur, frames = [], 0
            cur.append(v)
            frames += self.lengths[v]
        return out + ([torch.tensor(cur)] if cur else [])

    def fingerprint(self) -> str:
        return f"views:{self.store.dir.name}"


def split_train_val(pairs: PairSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training and the validation pairs: the split is by video, made when the
    pairs were (vqa/fusion/split.py), so no video is on both sides."""
    return torch.nonzero(~pairs.val).flatten(), torch.nonzero(pairs.val).flatten()


def epoch_order(train_idx: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's pair order depends on (seed, epoch) alone, so a resumed run replays it exactly."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
    return train_idx[torch.randperm(len(train_idx), generator=g)]

"""Two views of each key frame for the student.

semantic: the whole frame resized to S x S (content, composition, exposure).
technical: a grid x grid mosaic of native-resolution patches (fragments, after FAST-VQA), so
compression blocks, noise and blur are seen at their real scale instead of being averaged away
by downscaling.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def semantic_view(frames: torch.Tensor, size: int) -> torch.Tensor:
    """[T,3,H,W] float -> [T,3,size,size]."""
    return F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def technical_view(frames: torch.Tensor, size: int, grid: int) -> torch.Tensor:
    """[T,3,H,W] float -> [T,3,size,size] mosaic of grid x grid patches taken at cell centres."""
    t, c, h, w = frames.shape
    patch = size // grid
    if min(h, w) < size:  # too small for native-scale fragments: upscale just enough
        scale = size / min(h, w)
        h, w = max(size, round(h * scale)), max(size, round(w * scale))
        frames = F.interpolate(frames, size=(h, w), mode="bilinear", align_corners=False)
    ys = [int((i + 0.5) * h / grid) - patch // 2 for i in range(grid)]
    xs = [int((j + 0.5) * w / grid) - patch // 2 for j in range(grid)]
    ys = [min(max(y, 0), h - patch) for y in ys]
    xs = [min(max(x, 0), w - patch) for x in xs]
    rows = [torch.cat([frames[:, :, y : y + patch, x : x + patch] for x in xs], dim=3) for y in ys]
    mosaic = torch.cat(rows, dim=2)
    if mosaic.shape[-1] != size:  # size not divisible by grid: pad the border
        mosaic = F.pad(mosaic, (0, size - mosaic.shape[-1], 0, size - mosaic.shape[-2]), mode="replicate")
    return mosaic


def make_views(frames: np.ndarray, size: int, grid: int) -> torch.Tensor:
    """RGB uint8 key frames [T,H,W,3] -> uint8 views [T,2,3,size,size] (semantic, technical).

    Always computed on one thread: torch's resampling splits its work by thread count, and a
    different split rounds a few pixels to the other uint8 value (seen when upscaling small
    frames), which would make a score depend on the process it was computed in."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        views = torch.stack([semantic_view(x, size), technical_view(x, size, grid)], dim=1)
        return views.round().clamp(0, 255).to(torch.uint8)
    finally:
        torch.set_num_threads(threads)


def student_inputs(key_frames: np.ndarray, motion_clips: np.ndarray | None, size: int, grid: int,
                   motion_frames: int) -> tuple[np.ndarray, np.ndarray | None]:
    """What the student needs from one decoded video: uint8 views [T,2,3,S,S] and, with a motion
    branch, the descriptors [T, MOTION_DIM] of its clips (read_video(..., motion_len=...).motion)."""
    views = make_views(key_frames, size, grid).numpy()
    if not motion_frames:
        return views, None
    from vqa.student.motion import motion_features

    if motion_clips is None or motion_clips.shape[1] < motion_frames:
        raise ValueError(f"motion branch: needs clips of {motion_frames} frames")
    return views, motion_features(motion_clips[:, :motion_frames])

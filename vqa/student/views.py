"""Two views of each key frame for the student.

semantic: the whole frame resized to S x S (content, composition, exposure).
technical: a grid x grid mosaic of native-resolution patches (fragments, after FAST-VQA), so
compression blocks, noise and blur are seen at their real scale instead of being averaged away
by downscaling.

VIEWS_VERSION 2 (part of the feature fingerprint): the semantic view is resized from the uint8
frame by torch's uint8 antialiased bilinear kernel (8-10x faster than on a float copy of the
frame: 1 vs 11 ms per 1080p frame; within 1 grey level of version 1's float result) and fragments
are cut from the uint8 frame (the same values as before); frames below the view size are still
upscaled in float.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

VIEWS_VERSION = 2


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


def _fragments_u8(frames: torch.Tensor, size: int, grid: int) -> torch.Tensor:
    """technical_view of uint8 frames at least ``size`` on the short side: the same crops, no copy
    of the whole frame to float."""
    h, w = frames.shape[-2:]
    patch = size // grid
    ys = [min(max(int((i + 0.5) * h / grid) - patch // 2, 0), h - patch) for i in range(grid)]
    xs = [min(max(int((j + 0.5) * w / grid) - patch // 2, 0), w - patch) for j in range(grid)]
    rows = [torch.cat([frames[:, :, y : y + patch, x : x + patch] for x in xs], dim=3) for y in ys]
    mosaic = torch.cat(rows, dim=2)
    if mosaic.shape[-1] != size:
        mosaic = F.pad(mosaic.float(), (0, size - mosaic.shape[-1], 0, size - mosaic.shape[-2]),
                       mode="replicate").to(torch.uint8)
    return mosaic


def make_views(frames: np.ndarray, size: int, grid: int) -> torch.Tensor:
    """RGB uint8 key frames [T,H,W,3] -> uint8 views [T,2,3,size,size] (semantic, technical).

    Always computed on one thread: torch's resampling splits its work by thread count, and a
    different split rounds a few pixels to the other uint8 value (seen when upscaling small
    frames), which would make a score depend on the process it was computed in."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # NHWC memory: uint8 fast path
        semantic = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if min(x.shape[-2:]) >= size:
            technical = _fragments_u8(x, size, grid)
        else:
            technical = technical_view(x.float(), size, grid).round().clamp(0, 255).to(torch.uint8)
        return torch.stack([semantic.contiguous(), technical.contiguous()], dim=1)
    finally:
        torch.set_num_threads(threads)


def frame_views(size: int, grid: int):
    """-> a function of one RGB key frame [H,W,3] giving its views [2,3,size,size] (read_video's
    key_fn: views are made as frames are decoded, so a 4K or 8K video's frames never pile up)."""
    def views(frame: np.ndarray) -> np.ndarray:
        return make_views(frame[None], size, grid)[0].numpy()

    return views


def student_inputs(key_frames: np.ndarray, motion_clips: np.ndarray | None, size: int, grid: int,
                   motion_frames: int) -> tuple[np.ndarray, np.ndarray | None]:
    """What the student needs from one decoded video: uint8 views [T,2,3,S,S] and, with a motion
    branch, the descriptors [T, MOTION_DIM] of its clips (read_video(..., motion_len=...).motion).
    ``key_frames`` may already be views (read_video with key_fn=frame_views(size, grid))."""
    if key_frames.ndim == 5:
        views = key_frames
    else:
        views = make_views(key_frames, size, grid).numpy()
    if not motion_frames:
        return views, None
    from vqa.student.motion import motion_features

    if motion_clips is None or motion_clips.shape[1] < motion_frames:
        raise ValueError(f"motion branch: needs clips of {motion_frames} frames")
    return views, motion_features(motion_clips[:, :motion_frames])


def read_for_student(path: str, *, key_rate: float, max_key_frames: int | None, size: int, grid: int,
                     motion_frames: int, clip_len: int = 0, keep_frames: bool = False):
    """The one way scoring, teach and evaluate read a video for the student (same sampling, same
    handling of odd files): -> (DecodedVideo, views [T,2,3,S,S] uint8, motion [T,M] or None).

    ``keep_frames``: the video's RGB key frames (and ``clip_len`` clips) stay in the DecodedVideo
    for teachers; otherwise each key frame becomes its views as it is decoded and is dropped."""
    from vqa.video import read_video

    video = read_video(path, key_rate=key_rate, max_key_frames=max_key_frames, clip_len=clip_len,
                       motion_len=motion_frames, key_fn=None if keep_frames else frame_views(size, grid))
    views, motion = student_inputs(video.key_frames, video.motion, size, grid, motion_frames)
    return video, views, motion

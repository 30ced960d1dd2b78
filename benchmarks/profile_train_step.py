"""Profile one fine-tuning step of the student on a CUDA GPU: first call vs steady state.

usage: python benchmarks/profile_train_step.py [--videos 64] [--frames 4]
Times host-to-device copy, forward and backward of StudentModel on random uint8 views
(64 videos x 4 key frames x 2 views by default) for bf16 and fp32, channels-last and NCHW,
then prints the profiler's top CUDA kernels. It showed that cuDNN builds channels-last kernels per
input shape (first bf16 step ~13 s on an H200, later ones 0.1 s), hence the fixed frame count
per batch in vqa.student.data.ViewSource.
"""
from __future__ import annotations

import argparse
import time

import torch

from vqa.student.model import StudentConfig, StudentModel


def _now() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--frames", type=int, default=4)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("profile_train_step: needs a CUDA GPU")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = StudentModel(StudentConfig(freeze_backbone=False, motion_frames=0)).to(dev).train()
    views = torch.randint(0, 255, (args.videos, args.frames, 2, 3, 224, 224), dtype=torch.uint8)
    mask = torch.ones(args.videos, args.frames, dtype=torch.bool)
    print(f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, "
          f"{2 * int(mask.sum())} images per step")
    for name, dtype in [("bf16", torch.bfloat16), ("fp32", None)]:
        for step in range(4):
            t0 = _now()
            v, m = views.to(dev), mask.to(dev)
            t1 = _now()
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                scores = model({"views": v, "mask": m})
            t2 = _now()
            scores.float().sum().backward()
            t3 = _now()
            print(f"{name} channels-last step {step}: h2d {t1 - t0:.3f} s, forward {t2 - t1:.3f} s, "
                  f"backward {t3 - t2:.3f} s")
    model.backbone = model.backbone.to(memory_format=torch.contiguous_format)
    for step in range(3):
        t1 = _now()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            x = views.to(dev)[mask.to(dev)].flatten(0, 1).float() / 255
            feats = model.backbone((x - model.mean) / model.std).mean((2, 3))
        t2 = _now()
        feats.float().sum().backward()
        t3 = _now()
        print(f"bf16 NCHW step {step}: forward {t2 - t1:.3f} s, backward {t3 - t2:.3f} s")


if __name__ == "__main__":
    main()

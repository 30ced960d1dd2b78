"""Benchmarks behind `vqa bench ...`: speed and memory as ratios to a baseline measured in the
same run (e.g. decode-only time of the same frames), so figures compare across machines."""
from __future__ import annotations

from pathlib import Path


def video_folder(root: Path) -> list[Path]:
    """The video files under a benchmark folder (as `vqa score` finds them); a clear error if none."""
    from vqa.scoring import expand_paths

    paths = expand_paths([root]) if root.is_dir() else []
    if not paths:
        raise FileNotFoundError(f"{root}: no video files to benchmark (run `make demo` or `vqa corpus demo` first)")
    return paths

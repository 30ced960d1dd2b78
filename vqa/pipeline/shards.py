"""Teacher inference split into corpus shards, so an orchestrator (flows/w2s.py, on Dask) can run
them on several workers before the `teach` step. Each shard runs the same `analyse` as `teach`
(one decode per video: every homogeneous teacher plus the student's features) into the project's
caches, so the `teach` step afterwards finds every score and feature cached and decodes nothing.

The simulated videos (known-order calibration of the teachers) are sharded the same way.

A shard is a plain JSON-able dict (it travels to workers and into the orchestrator's cache key):
  project, cache_root, external: absolute paths (workers may run in any directory)
  items: [[video id (sha256 of the content), absolute path], ...]
  teachers: teacher names; teacher_keys: their name@version keys
  key_rate, max_key_frames, features: what else determines the cached results
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from vqa.config import load_params
from vqa.io import working_directory
from vqa.pipeline import layout


def plan(project_dir: str | Path, shard_videos: int | None = None) -> list[dict]:
    """The corpus and the simulated videos (what `teach` scores) x the homogeneous teachers of
    params.yaml, in shards of `shard_videos` videos (default: orchestration.shard_videos), in
    manifest order."""
    from vqa.pipeline.steps import _corpus_items, _simulated, corpus_feature_store, homogeneous_teacher_names
    from vqa.teachers import teacher_class

    root = Path(project_dir).resolve()
    params = load_params(root / "params.yaml")
    size = shard_videos or params.orchestration.shard_videos
    with working_directory(root):
        items = [(vid, str(Path(path).resolve())) for vid, path in _corpus_items()]
        items += [(v["id"], str(Path(v["path"]).resolve())) for v in _simulated()]
        names = homogeneous_teacher_names(params)
        keys = [teacher_class(n).card.key for n in names]
    cache_root = root / layout.CACHE
    features = corpus_feature_store(params, cache_root, load_backbone=False).config.feature_fingerprint("cpu")
    common = {"project": str(root), "cache_root": str(cache_root),
              "external": [str((root / p).resolve()) for p in params.teachers.external],
              "teachers": names, "teacher_keys": keys, "key_rate": params.video.key_rate,
              "max_key_frames": params.video.max_key_frames, "features": features}
    return [{"index": i // size, **common, "items": [list(it) for it in items[i:i + size]]}
            for i in range(0, len(items), size)]


def shard_key(shard: dict) -> str:
    """What determines a shard's results: its videos' content hashes, the teachers' versions, the
    sampling and the feature fingerprint (not where the project or the files are)."""
    what = {"ids": [vid for vid, _ in shard["items"]], "teachers": shard["teacher_keys"],
            "key_rate": shard["key_rate"], "max_key_frames": shard["max_key_frames"], "features": shard["features"]}
    return "w2s-shard-" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def is_cached(shard: dict) -> bool:
    """Are every teacher's score (or recorded failure) and the student's features of every video
    of the shard in the project's caches? (A video nobody could decode has no features.)"""
    from vqa.teachers.cache import ScoreCache

    caches = [ScoreCache(Path(shard["cache_root"]) / "scores", key) for key in shard["teacher_keys"]]
    features = Path(shard["cache_root"]) / "features" / shard["features"]
    for vid, _ in shard["items"]:
        entries = [c.get(vid) for c in caches]
        if any(e is None for e in entries):
            return False
        if not (features / f"{vid}.npy").exists() and not (entries and all("error" in e for e in entries)):
            return False
    return True


def score_shard(shard: dict, log: Callable[[str], None] = print) -> dict:
    """Run `analyse` on one shard in this process (workers=1: the orchestrator runs shards in
    parallel); returns the shard's scores, failures and how much was computed now."""
    from vqa.pipeline.analyse import analyse
    from vqa.pipeline.steps import corpus_feature_store

    params = load_params(Path(shard["project"]) / "params.yaml")
    cache_root = Path(shard["cache_root"])
    store = corpus_feature_store(params, cache_root)
    if store.config.feature_fingerprint("cpu") != shard["features"]:
        raise ValueError(f"shard {shard['index']}: params.yaml changed since the shards were planned")
    result = analyse([tuple(it) for it in shard["items"]], teacher_names=shard["teachers"], cache_root=cache_root,
                     external_specs=shard["external"], key_rate=shard["key_rate"],
                     max_key_frames=shard["max_key_frames"], features=store, workers=1, log=log)
    if sorted(result.scores) != sorted(shard["teacher_keys"]):
        raise ValueError(f"shard {shard['index']}: teacher versions changed since the shards were planned")
    return {"index": shard["index"], "videos": len(shard["items"]), "decoded": result.decoded,
            "scored": result.scored, "scores": result.scores, "failures": result.failures,
            "features": sorted(result.features)}

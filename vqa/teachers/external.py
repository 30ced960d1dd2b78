"""External learned teachers: an exported model (TorchScript or ONNX) plus a small YAML spec.

The spec says how to turn decoded uint8 RGB frames into the one tensor the model takes (resize,
scale, mean/std, layout, batch) and how to reduce its output to one score per item. An image
model (input.frames <= 1) scores each key frame; a video model scores clips of input.frames
consecutive frames. ``load_external_teacher(spec)`` returns a teacher class like the built-ins.

The card's version is the spec's version plus a hash of the model bytes and the pre/post-processing,
so replacing the model file or changing the normalisation invalidates cached scores by itself.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from vqa.config.params import ConfigError, read_yaml_mapping
from vqa.teachers.base import ClipTeacher, FrameTeacher, TeacherCard, TeacherError

FORMAT_BY_SUFFIX = {".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript", ".onnx": "onnx"}
DEVICE_ENV = "VQA_TEACHER_DEVICE"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """How decoded frames become the model's input tensor (applied in this order)."""

    frames: int = Field(1, ge=0)  # <= 1: image model on key frames; > 1: clips of that many frames
    # stretch: to size, ignoring aspect; fit: keep aspect, pad to size with 0 after normalising
    # (the mean colour); center_crop: crop the centre to size's aspect, then resize; none: as decoded
    resize: Literal["stretch", "fit", "center_crop", "none"] = "stretch"
    size: tuple[int, int] | None = Field(None, validate_default=True)  # [height, width]
    layout: Literal["NCHW", "NCTHW", "NTCHW"] | None = Field(None, validate_default=True)
    scale: float = Field(255.0, gt=0)  # x / scale, then (x - mean) / std per RGB channel
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    batch: int = Field(8, ge=1)  # items (frames or clips) per forward call

    @field_validator("size", mode="before")
    @classmethod
    def _size_shape(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return [v, v]  # one number: a square
        if isinstance(v, (list, tuple)) and len(v) != 2:
            raise ValueError(f"needs [height, width], got {len(v)} values")
        return v

    @field_validator("size")
    @classmethod
    def _size_needed(cls, v: tuple[int, int] | None, info: ValidationInfo) -> tuple[int, int] | None:
        resize = info.data.get("resize")
        if v is None and resize not in (None, "none"):
            raise ValueError(f"required with input.resize: {resize}")
        if v is not None and resize == "none":
            raise ValueError("not used with input.resize: none (drop it, or pick another resize)")
        if v is not None and min(v) < 1:
            raise ValueError(f"height and width must be >= 1, got {list(v)}")
        return v

    @field_validator("layout")
    @classmethod
    def _layout_fits_frames(cls, v: str | None, info: ValidationInfo) -> str | None:
        frames = info.data.get("frames")
        if frames is None:
            return v  # frames itself failed and is reported
        if v is None:
            return "NCHW" if frames <= 1 else "NCTHW"  # the torch convention (Conv2d / Conv3d)
        if v == "NCHW" and frames > 1:
            raise ValueError("NCHW needs input.frames <= 1 (use NCTHW or NTCHW for clips)")
        if v != "NCHW" and frames <= 1:
            raise ValueError(f"{v} needs input.frames > 1 (use NCHW for an image model)")
        return v

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _three(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)) and len(v) != 3:
            raise ValueError(f"needs 3 values (R, G, B), got {len(v)}")
        return v

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) <= 0:
            raise ValueError(f"values must be > 0, got {list(v)}")
        return v


class ExternalTeacherSpec(_Strict):
    """The YAML spec of one external teacher; ``model`` is relative to the spec file."""

    name: str
    version: str
    model: str
    format: Literal["torchscript", "onnx"] | None = Field(None, validate_default=True)
    higher_is_better: bool
    score_range: tuple[float | None, float | None] | None = None
    summary: str = ""
    input: InputSpec
    # per item: single (exactly one value), first (the first value), mean (of all values)
    output: Literal["single", "first", "mean"] = "single"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(f"{v!r}: use letters, digits and . _ + - (no '@', '/' or spaces)")
        return v

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)  # `version: 1` in YAML
        if isinstance(v, str) and (not v.strip() or "/" in v or "@" in v):
            raise ValueError(f"{v!r}: must be non-empty without '@' or '/'")
        return v

    @field_validator("model")
    @classmethod
    def _model_exists(cls, v: str, info: ValidationInfo) -> str:
        base = (info.context or {}).get("base")
        if base is not None and not model_path(Path(base), v).is_file():
            raise ValueError(f"file not found: {model_path(Path(base), v)}")
        return v

    @field_validator("format")
    @classmethod
    def _format(cls, v: str | None, info: ValidationInfo) -> str | None:
        model = info.data.get("model")
        if v is None and model is not None:
            v = FORMAT_BY_SUFFIX.get(Path(model).suffix.lower())
            if v is None:
                raise ValueError(f"required: cannot tell it from the model file's suffix {Path(model).suffix!r}")
        return v

    @field_validator("score_range")
    @classmethod
    def _range(cls, v: tuple[float | None, float | None] | None) -> tuple | None:
        if v is not None and None not in v and v[0] >= v[1]:
            raise ValueError(f"needs [low, high] with low < high, got {list(v)}")
        return v


def model_path(base: Path, model: str) -> Path:
    p = Path(model).expanduser()
    return p if p.is_absolute() else base / p


def _describe(err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind, msg, got = err["type"], err["msg"], err.get("input")
    if kind == "extra_forbidden":
        reason = "unknown key"
    elif kind == "missing":
        reason = "required key is missing"
    elif kind == "value_error":
        reason = msg.removeprefix("Value error, ")
    elif kind in ("model_type", "dict_type"):
        reason = f"expected a mapping, got {got!r}"
    elif kind == "literal_error":
        reason = f"must be {err['ctx']['expected']}, got {got!r}"
    elif isinstance(got, (str, int, float, bool)) or got is None:
        reason = f"{msg}, got {got!r}"
    else:
        reason = msg
    return f"{loc}: {reason}" if loc else reason


def read_spec(spec_path: str | Path) -> ExternalTeacherSpec:
    """Parse and validate a spec; any problem -> ConfigError (a ValueError), one line naming the
    spec file, the dotted key and the reason."""
    path = Path(spec_path)
    raw = read_yaml_mapping(path)
    try:
        return ExternalTeacherSpec.model_validate(raw, context={"base": path.parent})
    except ValidationError as exc:
        errs = exc.errors()
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        line = " ".join(_describe(errs[0]).split())  # one line, whatever the reason holds
        raise ConfigError(f"{path}: {line}{more}") from None


def _digest(model: Path, spec: ExternalTeacherSpec) -> str:
    """Hash of the model bytes and everything that changes its scores but the version."""
    h = hashlib.sha256()
    with open(model, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    h.update(json.dumps([spec.format, spec.input.model_dump(), spec.output], sort_keys=True).encode())
    return h.hexdigest()[:8]


# ---- runtime -------------------------------------------------------------------------------

class _Model:
    """One loaded model: __call__(float32 tensor [B,...]) -> numpy output of the first output."""

    fixed_batch: int | None = None  # an ONNX model exported with a fixed batch dimension

    def __init__(self, path: Path, fmt: str, device: str):
        self.fmt = fmt
        if fmt == "torchscript":
            import torch

            if device.startswith("cuda") and not torch.cuda.is_available():
                raise TeacherError(f"{DEVICE_ENV}={device} but torch sees no CUDA device")
            self.device = torch.device(device)
            try:
                self.net = torch.jit.load(str(path), map_location=self.device).eval()
            except Exception as exc:
                raise TeacherError(f"cannot load TorchScript {path} ({_last_line(exc)}); "
                                   "export it with torch.jit.trace/script and .save()") from None
        else:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1  # the teacher step runs one worker per core
            opts.inter_op_num_threads = 1
            providers = ["CPUExecutionProvider"]
            if device.startswith("cuda"):
                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise TeacherError(f"{DEVICE_ENV}={device} but onnxruntime has no CUDA provider")
                providers.insert(0, "CUDAExecutionProvider")
            try:
                self.net = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
            except Exception as exc:
                raise TeacherError(f"cannot load ONNX model {path} ({_last_line(exc)})") from None
            inputs = self.net.get_inputs()
            if len(inputs) != 1:
                names = ", ".join(i.name for i in inputs)
                raise TeacherError(f"ONNX model takes {len(inputs)} inputs ({names}); wrap it to take one tensor")
            self.input = inputs[0]
            self.dtype = {"tensor(float16)": np.float16, "tensor(double)": np.float64}.get(self.input.type, np.float32)
            dim0 = self.input.shape[0] if self.input.shape else None
            self.fixed_batch = dim0 if isinstance(dim0, int) and dim0 > 0 else None

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """ONNX declares its input shape: say what differs before running it."""
        if self.fmt != "onnx":
            return
        want = self.input.shape
        if len(want) != len(shape) or any(isinstance(w, int) and w != s for w, s in zip(want[1:], shape[1:])):
            raise TeacherError(f"ONNX model wants input {list(want)}, the spec gives {list(shape)} "
                               "(check input.size, input.frames and input.layout)")

    def __call__(self, x) -> np.ndarray:
        if self.fmt == "onnx":
            out = self.net.run(None, {self.input.name: x.numpy().astype(self.dtype, copy=False)})[0]
            return np.asarray(out)
        import torch

        with torch.inference_mode():
            out = self.net(x.to(self.device))
        while isinstance(out, (tuple, list)) and out:
            out = out[0]  # several outputs: the first is the score
        if not isinstance(out, torch.Tensor):
            raise TeacherError(f"model returned {type(out).__name__}, expected a tensor")
        return out.detach().float().cpu().numpy()


def _last_line(exc: BaseException) -> str:
    # TorchScript errors carry the scripted traceback; the reason is on the last line.
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


_MODELS: dict[tuple, _Model | str] = {}  # per process: (pid, path, digest, fmt, device) -> model or load error


def _model_for(path: Path, digest: str, fmt: str, name: str) -> _Model:
    device = os.environ.get(DEVICE_ENV, "cpu").strip() or "cpu"
    key = (os.getpid(), str(path), digest, fmt, device)  # pid: never reuse a session across fork
    if key not in _MODELS:
        if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
            _MODELS[key] = f"{DEVICE_ENV} must be cpu, cuda or cuda:N, got {device!r}"
        else:
            try:
                _MODELS[key] = _Model(path, fmt, device)
            except TeacherError as exc:
                _MODELS[key] = str(exc)  # a broken model fails each video fast, without reloading
    got = _MODELS[key]
    if isinstance(got, str):
        raise TeacherError(f"{name}: {got}")
    return got


def _resize(x, inp: InputSpec):
    """[M,3,h,w] float -> [M,3,H,W]; antialiased bilinear (deterministic on CPU)."""
    import torch.nn.functional as F

    if inp.resize == "none":
        return x
    (th, tw), (h, w) = inp.size, x.shape[-2:]
    if inp.resize == "center_crop":
        ch, cw = min(h, max(1, round(w * th / tw))), min(w, max(1, round(h * tw / th)))
        top, left = (h - ch) // 2, (w - cw) // 2
        x = x[..., top : top + ch, left : left + cw]
        h, w = ch, cw
    elif inp.resize == "fit":
        s = min(th / h, tw / w)
        th, tw = max(1, min(th, round(h * s))), max(1, min(tw, round(w * s)))
    if (h, w) == (th, tw):
        return x
    return F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)


def prepare(items: np.ndarray, inp: InputSpec):
    """uint8 [B,H,W,3] (images) or [B,L,H,W,3] (clips) -> float32 model input in inp.layout."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(items))
    lead, (h, w) = tuple(x.shape[:-3]), tuple(x.shape[-3:-1])
    x = x.reshape(-1, h, w, 3).permute(0, 3, 1, 2).float()
    # Resizing first is exact: it is linear with weights summing to 1, so it commutes with the
    # affine normalisation; the fit padding must come after, to be 0 in normalised units.
    x = _resize(x, inp)
    mean = torch.tensor(inp.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(inp.std, dtype=torch.float32).view(1, 3, 1, 1)
    x = (x / inp.scale - mean) / std
    if inp.resize == "fit":
        (th, tw), (h, w) = inp.size, x.shape[-2:]
        top, left = (th - h) // 2, (tw - w) // 2
        x = F.pad(x, (left, tw - w - left, top, th - h - top), value=0.0)
    x = x.reshape(*lead, *x.shape[1:])
    if inp.layout == "NCTHW":
        x = x.permute(0, 2, 1, 3, 4)
    return x.contiguous()


def _reduce(out: np.ndarray, n: int, how: str, name: str) -> np.ndarray:
    out = np.asarray(out, dtype=np.float64)
    if out.ndim == 0 and n == 1:
        out = out.reshape(1)
    if out.ndim == 0 or out.shape[0] != n:
        raise TeacherError(f"{name}: model returned shape {list(out.shape)} for a batch of {n}; "
                           "its first dimension must be the batch")
    flat = out.reshape(n, -1)
    if flat.shape[1] == 0:
        raise TeacherError(f"{name}: model returned no values per item (shape {list(out.shape)})")
    if how == "single" and flat.shape[1] != 1:
        raise TeacherError(f"{name}: model returned {flat.shape[1]} values per item (shape "
                           f"{list(out.shape)}); set output: first or mean in the spec")
    score = flat.mean(axis=1) if how == "mean" else flat[:, 0]
    if not np.all(np.isfinite(score)):
        raise TeacherError(f"{name}: model returned non-finite scores")
    return score


class _External:
    """What both external teacher kinds share; load_external_teacher sets the class attributes."""

    card: ClassVar[TeacherCard]
    spec: ClassVar[ExternalTeacherSpec]
    spec_path: ClassVar[str]
    model_file: ClassVar[Path]
    digest: ClassVar[str]

    def __reduce__(self):
        # The class is made at run time: rebuild it from the spec in the receiving process.
        return _instance, (self.spec_path,)

    def _score(self, items: np.ndarray, item_ndim: int) -> np.ndarray:
        name = self.card.name
        items = np.asarray(items)
        if items.dtype != np.uint8 or items.ndim != item_ndim + 1 or items.shape[-1] != 3:
            raise TeacherError(f"{name}: expected uint8 RGB items of rank {item_ndim}, got "
                               f"{items.dtype} {list(items.shape)}")
        if len(items) == 0:
            return np.zeros(0)
        model = _model_for(self.model_file, self.digest, self.spec.format, name)
        step = model.fixed_batch or self.spec.input.batch
        scores = []
        for i in range(0, len(items), step):
            chunk = items[i : i + step]
            n = len(chunk)
            if model.fixed_batch and n < step:  # a fixed-batch model: pad with the last item
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            x = prepare(chunk, self.spec.input)
            try:
                model.check_shape(tuple(x.shape))
                out = model(x)
            except TeacherError as exc:
                raise TeacherError(f"{name}: {exc}") from None
            except Exception as exc:  # any model failure is this video's failure, with the reason
                raise TeacherError(f"{name}: model failed: {_last_line(exc)}") from None
            scores.append(_reduce(out, len(chunk), self.spec.output, name)[:n])
        return np.concatenate(scores)


class ExternalFrameTeacher(_External, FrameTeacher):
    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        return self._score(frames, 3)


class ExternalClipTeacher(_External, ClipTeacher):
    def score_clips(self, clips: np.ndarray) -> np.ndarray:
        clips = np.asarray(clips)
        if clips.ndim == 5 and clips.shape[1] != self.clip_len:
            if clips.shape[1] < self.clip_len:
                raise TeacherError(f"{self.card.name}: needs clips of {self.clip_len} frames, got {clips.shape[1]}")
            clips = clips[:, : self.clip_len]
        return self._score(clips, 4)


_CLASSES: dict[tuple, type] = {}


def load_external_teacher(spec_path: str | Path) -> type[ExternalFrameTeacher] | type[ExternalClipTeacher]:
    """Read a spec and return its teacher class (instantiate with no arguments). Bad spec ->
    ConfigError (a ValueError) naming the file and key. The model itself loads lazily, once per
    process, on the first score; a model that fails to load fails each video with TeacherError."""
    spec = read_spec(spec_path)
    path = Path(spec_path)
    model = model_path(path.parent, spec.model).resolve()
    st = model.stat()
    # Workers may ask per video: hash the model again only when the spec or model file changed.
    key = (str(path.resolve()), spec.model_dump_json(), str(model), st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _CLASSES:
        return _CLASSES[key]
    digest = _digest(model, spec)
    clip = spec.input.frames > 1
    unit = f"clips of {spec.input.frames} frames" if clip else "key frames"
    size = "native size" if spec.input.resize == "none" else f"{spec.input.resize} to {spec.input.size[0]}x{spec.input.size[1]}"
    card = TeacherCard(
        name=spec.name,
        version=f"{spec.version}+{digest}",
        higher_is_better=spec.higher_is_better,
        score_range=spec.score_range,
        needs="clips" if clip else "key_frames",
        kind="homogeneous",
        summary=spec.summary or f"external {spec.format} model {model.name} on {unit} ({size}), mean over time",
        origin=str(spec_path),
    )
    attrs = {"card": card, "spec": spec, "spec_path": str(spec_path), "model_file": model, "digest": digest,
             "__module__": __name__}
    if clip:
        attrs["clip_len"] = spec.input.frames
    base = ExternalClipTeacher if clip else ExternalFrameTeacher
    cls_name = "External_" + re.sub(r"\W", "_", spec.name)
    cls = type(cls_name, (base,), attrs)
    _CLASSES[key] = cls
    return cls


def _instance(spec_path: str):
    return load_external_teacher(spec_path)()

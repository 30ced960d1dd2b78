"""pydantic models of params.yaml.

Every section forbids unknown keys, so a typo fails at start with its dotted name instead of
being silently ignored. Paths are kept relative to the project root (the folder that holds
params.yaml and dvc.yaml); steps run with that folder as the working directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """params.yaml is missing, unparsable or invalid; the message names file, key and reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusParams(_Section):
    videos: str = "data/videos"  # what `vqa corpus ingest` reads (tracked by data.dvc)
    demo_clips: int = Field(64, ge=1)
    workers: int = Field(2, ge=1)


class VideoParams(_Section):
    key_rate: float = Field(1.0, gt=0)  # key frames per second (the paper samples 1 fps)
    max_key_frames: int = Field(8, ge=1)  # evenly spaced subset for long videos


def _numbers(v, *, integers: bool = False):
    """YAML gives typed scalars; a quoted "0.5" or a bool in a level list is a mistake, not a number."""
    if isinstance(v, list):
        for x in v:
            if isinstance(x, (bool, str)) or not isinstance(x, (int, float)):
                raise ValueError(f"must list {'integers' if integers else 'numbers'}, got {x!r}")
            if integers and isinstance(x, float) and not x.is_integer():
                raise ValueError(f"must list integers, got {x!r}")
    return v


def _at_least_two_increasing(v: list) -> list:
    # One level gives no pair; equal or falling levels would break the known order.
    if len(v) < 2 or any(b <= a for a, b in zip(v, v[1:])):
        raise ValueError(f"must list at least two strictly increasing values (least to most distorted), got {v}")
    return v


def _within(v: list[float], lo: float, hi: float, what: str, *, lo_open: bool = True, hi_open: bool = False):
    bad = [x for x in v if (x <= lo if lo_open else x < lo) or (x >= hi if hi_open else x > hi)]
    if bad:
        span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{what} must lie in {span}, got {bad}")
    return v


_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


class _SimulatorSection(_Section):
    enabled: bool = True
    # Corpus videos (a seeded subset) simulated at every level. Defaults are cost-balanced so the
    # demo's simulate step stays near 3 min on 2 cores (measured per source: blur ~6 s, jitter ~3 s).
    sources: int = Field(4, ge=0)
    # Most pairs fused from this simulator per round (a seeded sample); null: every pair.
    pairs: int | None = Field(None, ge=0)


class CodecSimulatorParams(_SimulatorSection):
    """A codec simulator (h264 / h265): the source re-encoded at every CRF level."""

    crf_levels: list[int]  # least to most distorted
    preset: str

    @field_validator("crf_levels", mode="before")
    @classmethod
    def _ints(cls, v):
        return _numbers(v, integers=True)

    @field_validator("crf_levels")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if len(v) < 2 or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("must list at least two strictly increasing CRF values")
        if any(not 0 <= c <= 63 for c in v):
            raise ValueError("CRF values must lie in 0..63")
        return v

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in _PRESETS:
            raise ValueError(f"unknown preset {v!r}; expected one of {', '.join(_PRESETS)}")
        return v


class H264SimulatorParams(CodecSimulatorParams):
    crf_levels: list[int] = [24, 36, 48, 63]  # the paper's levels; x264 clamps 63 to 51
    preset: str = "fast"
    sources: int = Field(16, ge=0)


class H265SimulatorParams(CodecSimulatorParams):
    crf_levels: list[int] = [36, 40, 44, 48]  # the paper's levels
    preset: str = "veryslow"  # the paper's; ~11 s per demo clip and level (2 cores), hence few sources
    sources: int = Field(2, ge=0)


class FrameSimulatorParams(_SimulatorSection):
    """A frame-op simulator: one version per level of each source."""

    levels: list[float]  # least to most distorted
    # x264 CRF of the versions: low enough that the simulated distortion, not the codec, sets the order
    crf: int = Field(12, ge=0, le=51)

    @field_validator("levels", mode="before")
    @classmethod
    def _floats(cls, v):
        return _numbers(v)

    @field_validator("levels")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        return _at_least_two_increasing(v)


class BlurSimulatorParams(FrameSimulatorParams):
    levels: list[float] = [0.1, 0.5, 1.0, 2.0, 5.0]  # Gaussian sigma in pixels (the paper's)

    @field_validator("levels")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(x <= 0 for x in v):
            raise ValueError("blur sigmas must be > 0")
        return v


class NoiseSimulatorParams(FrameSimulatorParams):
    levels: list[float] = [0.001, 0.002, 0.003, 0.005, 0.01]  # sigma on [0, 1] pixels (the paper's)
    # Levels 1-3 are under 1 grey level; at CRF 12 codec error inverted L1/L2 on some demo clips.
    crf: int = Field(6, ge=0, le=51)

    @field_validator("levels")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(x <= 0 for x in v):
            raise ValueError("noise sigmas must be > 0")
        return v


class ResizeSimulatorParams(FrameSimulatorParams):
    levels: list[float] = [2.0, 3.0, 4.0, 8.0, 16.0]  # down-then-up factors (the paper's)

    @field_validator("levels")
    @classmethod
    def _above_one(cls, v: list[float]) -> list[float]:
        if any(x <= 1 for x in v):
            raise ValueError("resize factors must be > 1 (1 would leave the frames unchanged)")
        return v


class DarkenSimulatorParams(FrameSimulatorParams):
    levels: list[float] = [0.05, 0.1, 0.2, 0.4, 0.8]  # p of distortions.darken (the paper's)

    @field_validator("levels")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        return _within(v, 0.0, 1.0, "darken p")


class BrightenSimulatorParams(FrameSimulatorParams):
    levels: list[float] = [0.1, 0.2, 0.4, 0.7, 1.1]  # p of distortions.brighten (the paper's; 1.1 > 1 is allowed)

    @field_validator("levels")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        return _within(v, 0.0, 2.0, "brighten p")


class JitterSimulatorParams(FrameSimulatorParams):
    # Max shift per frame as a fraction of the short side (270p: 3/5/11 px). The paper gives no
    # values; 1 % is about the smallest shake visible after the crop rescale.
    levels: list[float] = [0.01, 0.02, 0.04]

    @field_validator("levels")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        # the crop keeps (1 - 2 x fraction) of each side; a quarter keeps half
        return _within(v, 0.0, 0.25, "jitter fractions")


class StutterSimulatorParams(FrameSimulatorParams):
    # Per-frame probability of repeating the previous frame. The paper gives no values.
    levels: list[float] = [0.1, 0.2, 0.4]
    sources: int = Field(8, ge=0)  # the cheapest simulator (~1 s per source)

    @field_validator("levels")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        return _within(v, 0.0, 1.0, "stutter rates", hi_open=True)


class SimulatorParams(_Section):
    # Field order = generation order in `vqa simulate`; each type draws its own source subset.
    h264: H264SimulatorParams = H264SimulatorParams()
    h265: H265SimulatorParams = H265SimulatorParams()
    blur: BlurSimulatorParams = BlurSimulatorParams()
    noise: NoiseSimulatorParams = NoiseSimulatorParams()
    resize: ResizeSimulatorParams = ResizeSimulatorParams()
    darken: DarkenSimulatorParams = DarkenSimulatorParams()
    brighten: BrightenSimulatorParams = BrightenSimulatorParams()
    jitter: JitterSimulatorParams = JitterSimulatorParams()
    stutter: StutterSimulatorParams = StutterSimulatorParams()

    def pair_budgets(self) -> dict[str, int | None]:
        """Per simulator name, the most pairs fusion takes from it (None: all)."""
        return {name: getattr(self, name).pairs for name in type(self).model_fields}


class RegistryTeacherParams(_Section):
    """A model in the MLflow registry used as a teacher (e.g. models:/dover@prod)."""

    uri: str = Field(pattern=r"^models:/[^/@]+([/@][^/@]+)$")
    higher_is_better: bool = True
    name: str | None = None  # defaults to the registered model's name


class SimulationParams(_Section):
    """Size of the simulated versions: real clips can be long and 1080p, and every level is
    encoded; the known order does not need the full resolution or length."""
    max_side: int | None = Field(None, ge=32)  # longer side of each version, in pixels (None: as the source)
    max_seconds: float | None = Field(None, gt=0)  # from the start of the source (None: all of it)


class TeacherParams(_Section):
    homogeneous: list[str] = ["niqe", "brisque", "blockiness", "blur", "contrast", "noise", "flicker",
                              "colourfulness", "luminance", "si", "ti"]  # registered names (`vqa teachers list`)
    external: list[str] = []  # spec files of exported TorchScript / ONNX teachers
    registry_models: list[RegistryTeacherParams] = []
    # Remote registries registry_models may load from (URI prefixes; loading a model runs its code).
    # A registry on this machine (SQLite, files) is always allowed; W2S_REGISTRY_ALLOWLIST adds more.
    registry_allowlist: list[str] = []
    simulators: SimulatorParams = SimulatorParams()
    simulation: SimulationParams = SimulationParams()
    workers: int = Field(2, ge=1)


class CalibrationParams(_Section):
    """Label-free teacher calibration (vqa/fusion/calibration.py): each teacher's pairwise accuracy
    on the simulators' known-order pairs (averaged over simulator types) and its leave-one-out
    agreement with the other teachers on the corpus decide its direction and weight."""
    enabled: bool = True
    # |accuracy - 0.5| below this: the simulators cannot tell the teacher's direction
    accuracy_margin: float = Field(0.05, ge=0, lt=0.5)
    # |leave-one-out SRCC| below this: the corpus cannot tell it either
    agreement_margin: float = Field(0.1, ge=0, lt=1)
    reversed: Literal["flip", "drop"] = "flip"  # both signals say the declared direction is wrong
    # Weight of a kept teacher: "reliability" = r / (1 - r^2) of its estimated correlation with
    # quality r (from the known-order accuracy and the corpus agreement), "equal" = 1.
    weights: Literal["reliability", "equal"] = "reliability"
    max_weight: float = Field(5.0, gt=0)  # caps r / (1 - r^2) as r -> 1


class FusionParams(_Section):
    # How teachers are put on one scale before the mean/variance rule (no labels to fit the
    # paper's logistic): "rank_normal" maps ranks to standard-normal quantiles; "robust_z"
    # subtracts the median and divides by 1.4826 x MAD (keeps the spacing of the raw scores).
    alignment: Literal["rank_normal", "robust_z"] = "rank_normal"
    # "paper": s = sqrt(v_A + v_B), the spread of single teachers; "mean_se": s = the standard
    # error of d, sqrt(v_A / n_A + v_B / n_B) with n the teachers' effective number
    # (vqa/fusion/rules.py).
    rule: Literal["paper", "mean_se"] = "mean_se"
    homogeneous_pairs: int = Field(1500, ge=0)
    # Floor on the pair spread s (in normalised score units). With one teacher
    # the ensemble variance is zero and every pair would be "superior"/"inferior".
    min_pair_std: float = Field(0.15, ge=0)
    calibration: CalibrationParams = CalibrationParams()
    # fuse warns when one level holds more than this share of the teacher pairs
    collapse_warning: float = Field(0.8, gt=0, le=1)


class PairMix(_Section):
    teacher: float = Field(0.25, ge=0)  # 1:3, chosen on the validation set (the paper's round 1 is 1:1)
    simulator: float = Field(0.75, ge=0)
    gmad: float = Field(0.1, ge=0)
    hard: float = Field(0.1, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> "PairMix":
        if not any(v > 0 for v in self.model_dump().values()):
            raise ValueError("at least one pair kind needs a share > 0")
        return self


class StudentParams(_Section):
    backbone: str = "efficientnet-lite0"  # or efficientnet-lite1 / -lite2, or file:<TorchScript>
    # Per image: gap = the final map's average; multilevel = mean and spread of every stage's map
    pooling: Literal["gap", "multilevel"] = "multilevel"
    freeze_backbone: bool = True  # CPU default: train the head on cached backbone features
    input_size: int = Field(224, ge=32)
    fragment_grid: int = Field(7, ge=1)  # technical view: grid x grid native-resolution patches
    motion_frames: int = Field(8, ge=0, le=64)  # motion branch: clip length per key frame (0 = off)
    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    loss: Literal["five_level", "five_level_confidence", "bradley_terry"] = "five_level_confidence"
    # Share of the total training weight per pair kind (vqa/student/train.py pair_weights):
    # teacher = random teacher-ensemble pairs, simulator = known-order pairs, gmad / hard = the
    # pairs rounds 2+ mine. Pairs of one kind weigh the same; kinds absent from a round give
    # their share to the others in proportion. The paper's round 1 has 250k teacher pairs to
    # 250k synthetic ones.
    mix: PairMix = PairMix()
    # Then scale single pair sources inside their kind (source names: "homogeneous" or a
    # simulator type), e.g. {stutter: 0.5}; unlisted sources keep 1.
    source_weights: dict[str, float] = {}

    @field_validator("source_weights")
    @classmethod
    def _positive_weights(cls, v: dict[str, float]) -> dict[str, float]:
        known = {"homogeneous", *SimulatorParams.model_fields}
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(f"unknown pair source {unknown[0]!r}; expected one of {', '.join(sorted(known))}")
        bad = {k: w for k, w in v.items() if not (w >= 0 and w == w and w != float("inf"))}
        if bad:
            raise ValueError(f"weights must be finite and >= 0, got {bad}")
        return v
    warmup_fraction: float = Field(0.1, ge=0, le=1)
    patience: int = Field(8, ge=1)  # epochs without a better validation loss before stopping
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 autocast on a CUDA GPU that supports it, fp32 elsewhere.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    grad_accum_steps: int = Field(1, ge=1)  # micro-batches of batch_size pairs per optimiser step
    checkpoint_every: int = Field(50, ge=1)  # optimiser steps between resumable checkpoints
    loader_workers: int = Field(2, ge=0)  # fine-tuning: processes that load views ahead of the GPU


class RoundParams(_Section):
    after: str  # a file the round waits for (DVC dependency): the previous round's registration
    student_as_teacher: bool = True  # rounds > 1: the previous student joins the teachers


class EvaluationParams(_Section):
    known_order_suite: str = "artifacts/suites/known_order"
    suite_scale: float = Field(1.0, gt=0, le=1)  # frame-size factor of the suite (tests use less)
    suite_max_duration: float | None = Field(None, gt=0)  # seconds per suite clip; None: as designed
    ugc_smoke: str | None = None  # a folder of real videos with labels.csv (MOS); skipped if absent or null
    min_group_size: int = Field(3, ge=2)
    # A MOS benchmark's dataset groups with at least this many videos are also reported on their
    # own (e.g. ugc_mos_konvid_1k beside the size-weighted ugc_mos).
    report_group_min: int = Field(10, ge=2)
    # Local copies of benchmarks for `vqa evaluate --benchmark NAME`: {name: {labels, videos, format?,
    # role?, group_column?}}; the paper's ten (vqa/evaluation/benchmarks.py) need only the two paths.
    benchmarks: dict[str, dict] = {}


class HardSyntheticParams(_Section):
    enabled: bool = True
    pairs: int = Field(300, ge=0)  # most pairs per round, shared equally by the simulator types


class GmadParams(_Section):
    enabled: bool = True
    pairs: int = Field(200, ge=0)  # most pairs per round, over weak teachers x bins x both directions
    bins: int = Field(8, ge=1)  # equal-count bins of the defending model's scores


class IterationParams(_Section):
    """Rounds k+1 >= 2 (the paper's iterative W2S). One switch per lever, so an ablation is
    `dvc exp run -S iteration.hard_synthetic.enabled=false`."""
    # Who labels the homogeneous pairs once a student exists: "fused" = the round-k student joins
    # the weak teachers' ensemble (weighted by student_weight); "student" = the student alone,
    # from its own five-level preference model; "off" = the weak teachers only.
    label_refinement: Literal["fused", "student", "off"] = "fused"
    student_weight: float = Field(1.0, gt=0)  # "fused": the student counts as this many teachers
    homogeneous_pairs: int = Field(500, ge=0)  # fresh random teacher pairs added per later round
    hard_synthetic: HardSyntheticParams = HardSyntheticParams()  # simulator pairs the student misorders
    gmad: GmadParams = GmadParams()  # pairs one model rates alike and the other most differently
    cumulative: bool = True  # train round k+1 on D1..Dk+1 (earlier teacher pairs relabelled)


class ValidationParams(_Section):
    """The one validation set (vqa/fusion/split.py): a seeded share of the corpus videos and every
    simulated version of them. No training pair touches it. It decides early stopping (the
    validation loss), the champion alias and the defaults (the validation figure: known-order SRCC
    of the held-out simulated versions); the reported suites and benchmarks decide nothing."""
    fraction: float = Field(0.15, gt=0, lt=1)  # corpus videos held out, by a seeded hash of their id
    # Of each simulator's sources, the share drawn from the validation videos (so the validation
    # figure has enough known-order groups even though few corpus videos are held out).
    source_share: float = Field(0.3, ge=0, lt=1)
    teacher_pairs: int = Field(1000, ge=0)  # most teacher pairs among validation videos


class OrchestrationParams(_Section):
    """How the Prefect flows run the steps (not what they compute: no DVC stage reads this)."""
    dask_address: str | None = None  # a running Dask scheduler (tcp://host:8786); None: a local cluster
    dask_workers: int = Field(2, ge=1)  # the local cluster's worker processes (one thread each)
    shard_videos: int = Field(16, ge=1)  # teacher inference: videos per Prefect task
    retries: int = Field(2, ge=0)  # per task, on transient failures
    retry_delay_seconds: float = Field(10, ge=0)  # back-off base: 10, 20, 40 ... s
    # Prefect deployment that trains (on the GPU work pool), e.g. "w2s-train/gpu"; None: the
    # round's own process trains.
    train_deployment: str | None = None


class MlflowParams(_Section):
    tracking_uri: str = "sqlite:///mlflow.db"  # MLFLOW_TRACKING_URI overrides it
    experiment: str = "w2s-vqa"
    model_name: str = "w2s-vqa"
    teacher_alias: str = "teacher"
    champion_alias: str = "champion"  # moves only when a new student beats it out of distribution


class Params(_Section):
    seed: int = 0
    # The folder holding the vqa package, relative to this project: dvc.yaml's code dependencies
    # are ${code_root}/vqa/..., so a project in a subfolder (runs/ugc) runs the same stages.
    code_root: str = "."
    corpus: CorpusParams = CorpusParams()
    video: VideoParams = VideoParams()
    teachers: TeacherParams = TeacherParams()
    fusion: FusionParams = FusionParams()
    student: StudentParams = StudentParams()
    rounds: dict[str, RoundParams]
    evaluation: EvaluationParams = EvaluationParams()
    mlflow: MlflowParams = MlflowParams()
    iteration: IterationParams = IterationParams()
    validation: ValidationParams = ValidationParams()
    orchestration: OrchestrationParams = OrchestrationParams()

    @model_validator(mode="after")
    def _rounds_chain(self) -> "Params":
        names = list(self.rounds)
        expected = [f"round{i}" for i in range(1, len(names) + 1)]
        if names != expected:
            raise ValueError(f"rounds: keys must be {expected} in order, got {names}")
        for i, name in enumerate(names[1:], start=1):
            want = registration_path(names[i - 1])
            if self.rounds[name].after != want:
                raise ValueError(f"rounds.{name}.after: must be {want!r} (the previous round's registration)")
        return self

    def round_names(self) -> list[str]:
        return list(self.rounds)

    def previous_round(self, name: str) -> str | None:
        names = self.round_names()
        i = names.index(name)
        return names[i - 1] if i > 0 else None


def registration_path(round_name: str) -> str:
    from vqa.pipeline.layout import registered

    return registered(round_name).as_posix()


def _describe(err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key"
    expected = {
        "int_parsing": "an integer",
        "int_type": "an integer",
        "float_parsing": "a number",
        "float_type": "a number",
        "bool_parsing": "true or false",
        "bool_type": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
    }.get(kind)
    if expected:
        return f"{loc}: expected {expected}, got {err.get('input')!r}"
    return f"{loc}: {err['msg']}" if loc else err["msg"]


def read_yaml_mapping(path: Path, not_found: str = "not found") -> dict:
    """A YAML file whose top level is a mapping; else ConfigError naming the file and why."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {not_found}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    raw = read_yaml_mapping(path, "not found (run from the project root or pass --params)")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        first = _describe(exc.errors()[0])
        more = len(exc.errors()) - 1
        raise ConfigError(f"{path}: {first}" + (f" (and {more} more)" if more else "")) from None

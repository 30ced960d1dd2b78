"""Typed, validated view of params.yaml (one pydantic model per section)."""
from vqa.config.params import (
    ConfigError,
    CorpusParams,
    EvaluationParams,
    FusionParams,
    MlflowParams,
    Params,
    RoundParams,
    StudentParams,
    TeacherParams,
    load_params,
)

__all__ = [
    "ConfigError",
    "CorpusParams",
    "EvaluationParams",
    "FusionParams",
    "MlflowParams",
    "Params",
    "RoundParams",
    "StudentParams",
    "TeacherParams",
    "load_params",
]

"""MLflow tracking and model registry helpers (aliases, never deprecated stages)."""
from vqa.registry import lineage
from vqa.registry.mlflow_registry import (
    StudentPyfunc,
    configure_tracking,
    load_registered_student,
    log_and_register_student,
)

__all__ = ["StudentPyfunc", "configure_tracking", "lineage", "load_registered_student", "log_and_register_student"]

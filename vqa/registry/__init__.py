"""MLflow tracking and model registry helpers (aliases, never deprecated stages)."""
from vqa.registry import lineage
from vqa.registry.mlflow_registry import (
    StudentPyfunc,
    champion_uri,
    configure_tracking,
    load_registered_student,
    log_and_register_student,
    registered_names,
)

__all__ = ["StudentPyfunc", "champion_uri", "configure_tracking", "lineage", "load_registered_student",
           "log_and_register_student", "registered_names"]

import pytest


@pytest.fixture(scope="session")
def prepared_tiny_project(tmp_path_factory):
    """Built once per session (corpus, suite, simulators); copy it with tests.tiny_project.copy_project."""
    from tests.tiny_project import build_prepared

    return build_prepared(tmp_path_factory.mktemp("prepared") / "proj")


@pytest.fixture
def temp_mlflow(tmp_path, monkeypatch):
    """A throw-away MLflow SQLite store as this process's tracking and registry URI; the
    environment variables mlflow exports for them are undone after the test."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture
def backbone_cache(tmp_path_factory, monkeypatch):
    """The exported backbone goes to a temporary cache (shared by the session), not the user's."""
    monkeypatch.setenv("VQA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "backbone-cache"))


@pytest.fixture(scope="session")
def tiny_student():
    """An untrained student with small views: what scoring costs does not depend on its weights."""
    import torch

    from vqa.student.model import StudentConfig, StudentModel

    torch.manual_seed(0)
    return StudentModel(StudentConfig(input_size=64, fragment_grid=4, max_key_frames=2)).eval()

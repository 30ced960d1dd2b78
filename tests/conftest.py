import pytest


@pytest.fixture(scope="session")
def prepared_tiny_project(tmp_path_factory):
    """Built once per session (corpus, suite, simulators); copy it with tests.tiny_project.copy_project."""
    from tests.tiny_project import build_prepared

    return build_prepared(tmp_path_factory.mktemp("prepared") / "proj")

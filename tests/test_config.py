import pytest
import yaml

from vqa.config import ConfigError, load_params

ROUNDS = {"round1": {"after": "artifacts/corpus/manifest.json"}, "round2": {"after": "artifacts/round1/registered.json"}}


def write(tmp_path, data):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_project_params_are_valid():
    params = load_params("params.yaml")
    assert params.round_names() == ["round1", "round2", "round3"]  # the paper's three rounds (issue 6)
    assert params.previous_round("round2") == "round1"
    assert params.teachers.simulators.h264.crf_levels == [24, 36, 48, 63]


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"student\.epochz: unknown key"):
        load_params(write(tmp_path, {"rounds": ROUNDS, "student": {"epochz": 3}}))


def test_wrong_type_names_key_and_expected_type(tmp_path):
    with pytest.raises(ConfigError, match=r"fusion\.homogeneous_pairs: expected an integer, got 'many'"):
        load_params(write(tmp_path, {"rounds": ROUNDS, "fusion": {"homogeneous_pairs": "many"}}))


def test_rounds_must_chain(tmp_path):
    bad = {"round1": ROUNDS["round1"], "round2": {"after": "artifacts/corpus/manifest.json"}}
    with pytest.raises(ConfigError, match=r"rounds\.round2\.after"):
        load_params(write(tmp_path, {"rounds": bad}))


def test_crf_levels_must_increase(tmp_path):
    with pytest.raises(ConfigError, match=r"teachers\.simulators\.h264\.crf_levels"):
        load_params(write(tmp_path, {"rounds": ROUNDS, "teachers": {"simulators": {"h264": {"crf_levels": [36, 24]}}}}))


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="not found") as exc:
        load_params(tmp_path / "nope.yaml")
    assert "\n" not in str(exc.value)


def test_student_source_weights_are_checked(tmp_path):
    import pytest
    import yaml

    from vqa.config import ConfigError, load_params

    base = {"rounds": {"round1": {"after": "artifacts/corpus/manifest.json"}}}
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(base | {"student": {"loss": "bradley_terry", "source_weights": {"homogeneous": 2, "h265": 0.5}}}))
    p = load_params(ok)
    assert p.student.loss == "bradley_terry" and p.student.source_weights["h265"] == 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(base | {"student": {"source_weights": {"blurr": 1.0}}}))
    with pytest.raises(ConfigError, match=r"student.source_weights: .*unknown pair source 'blurr'"):
        load_params(bad)
    bad.write_text(yaml.safe_dump(base | {"student": {"source_weights": {"blur": -1.0}}}))
    with pytest.raises(ConfigError, match="finite and >= 0"):
        load_params(bad)


def test_params_yaml_and_the_schema_defaults_agree():
    """One home for each default: every value params.yaml sets is the schema's default, so a
    project that leaves a key out runs what the documented file says. Exceptions are the
    project's own content: its rounds, its corpus folder and its benchmarks."""
    from pathlib import Path

    import yaml

    from vqa.config.params import Params

    written = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    defaults = Params.model_validate({"rounds": written["rounds"]}).model_dump()
    own = {"rounds", "evaluation.benchmarks"}
    differ = []

    def walk(value, default, path):
        if path in own:
            return
        if isinstance(value, dict) and isinstance(default, dict):
            for key, sub in value.items():
                assert key in default, f"params.yaml: {path}.{key} is not in the schema"
                walk(sub, default[key], f"{path}.{key}" if path else key)
        elif value != default:
            differ.append(f"{path}: params.yaml {value!r}, schema {default!r}")

    walk(written, defaults, "")
    assert not differ, differ

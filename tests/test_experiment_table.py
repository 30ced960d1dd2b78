"""`vqa experiment table`: the baseline rows, each experiment's figures and its paired validation
gain over the baseline's same round, from the files a project commits."""
from __future__ import annotations

import json

from vqa.pipeline.experiments import experiment_table, paired_validation_gain


def _metrics(round_name: str, validation: float, ugc: float) -> dict:
    return {"models": {f"student_{round_name}": {"validation": {"srcc": validation}, "ugc_mos": {"srcc": ugc}}}}


def _groups(values: list[float]) -> dict[str, float]:
    return {f"src{i}/blur": v for i, v in enumerate(values)}


def test_table_has_the_baseline_and_the_paired_gain_over_it(tmp_path):
    base = tmp_path / "artifacts" / "round1"
    base.mkdir(parents=True)
    (base / "metrics.json").write_text(json.dumps(_metrics("round1", 0.5, 0.4)))
    details = {"validation": {"student_round1": {"groups": {g: {"srcc": v} for g, v in
                                                              _groups([0.4, 0.5, 0.6, 0.5]).items()}}}}
    (base / "evaluation.json").write_text(json.dumps(details))
    exp = tmp_path / "experiments" / "better"
    exp.mkdir(parents=True)
    (exp / "experiment.json").write_text(json.dumps({"name": "better", "rounds": ["round1"],
                                                     "command": "vqa experiment run --name better -S a=1"}))
    (exp / "round1.json").write_text(json.dumps(_metrics("round1", 0.7, 0.35)))
    (exp / "validation_round1.json").write_text(json.dumps(_groups([0.6, 0.7, 0.8, 0.7])))

    lines = experiment_table(tmp_path, keys=("validation", "ugc_mos")).splitlines()
    assert lines[0] == "| experiment | round | validation | ugc_mos | validation vs baseline | command |"
    assert lines[2].startswith(f"| baseline | round1 | +0.500 | +0.400 |  | `vqa demo --project {tmp_path.as_posix()}`")
    # every group +0.2: the mean and both ends of the CI
    assert lines[3] == "| better | round1 | +0.700 | +0.350 | +0.200 [+0.200, +0.200] | `vqa experiment run --name better -S a=1` |"

    (base / "evaluation.json").unlink()  # no baseline groups in the workspace: no gain claimed
    assert "| better | round1 | +0.700 | +0.350 | n/a |" in experiment_table(tmp_path, keys=("validation", "ugc_mos"))


def test_paired_gain_ci_spans_zero_for_a_tie():
    a = _groups([0.1, 0.9, 0.3, 0.7, 0.5, 0.6])
    b = _groups([0.9, 0.1, 0.7, 0.3, 0.5, 0.6])
    d, lo, hi = paired_validation_gain(a, b)
    assert abs(d) < 1e-12 and lo < 0 < hi


def test_run_experiment_keeps_the_results_and_puts_every_baseline_output_back(tmp_path):
    """DVC's checkout restores cached outputs only; metrics.json, registered.json and the report
    (cache: false) must come back too, or the next round would read the experiment's model."""
    import yaml

    from vqa.pipeline.experiments import run_experiment

    rounds = tmp_path / "artifacts" / "round1"
    (rounds / "report").mkdir(parents=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "rounds": {"round1": {"after": "artifacts/corpus/manifest.json"}}, "mlflow": {"model_name": "w2s-vqa-mine"}}))
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train@round1": {}}}))
    baseline = {"metrics.json": json.dumps(_metrics("round1", 0.5, 0.4)), "registered.json": '{"version": "1"}',
                "report/report.md": "baseline\n", "evaluation.json": "{}"}
    for name, text in baseline.items():
        (rounds / name).write_text(text)
    calls = []

    def fake_dvc(project, args):
        calls.append(args[:2])
        if args[:2] == ["exp", "run"]:  # what an experiment leaves in the workspace
            (rounds / "metrics.json").write_text(json.dumps(_metrics("round1", 0.9, 0.1)))
            (rounds / "registered.json").write_text('{"version": "1", "model_name": "w2s-vqa-mine-x"}')
            (rounds / "report" / "report.md").write_text("experiment\n")
        return ""

    run_experiment(tmp_path, "x", ["fusion.rule=paper"], rounds=1, log=lambda m: None, run_dvc=fake_dvc)
    assert calls == [["exp", "run"], ["checkout", "-f"]]
    kept = json.loads((tmp_path / "experiments" / "x" / "round1.json").read_text())
    assert kept["models"]["student_round1"]["validation"]["srcc"] == 0.9
    assert {name: (rounds / name).read_text() for name in baseline} == baseline


def test_table_against_another_experiment(tmp_path):
    for name, values in (("one-to-one", [0.4, 0.5, 0.6, 0.5]), ("lever", [0.5, 0.6, 0.7, 0.6])):
        exp = tmp_path / "experiments" / name
        exp.mkdir(parents=True)
        (exp / "experiment.json").write_text(json.dumps({"name": name, "rounds": ["round1"], "command": name}))
        (exp / "round1.json").write_text(json.dumps(_metrics("round1", sum(values) / 4, 0.4)))
        (exp / "validation_round1.json").write_text(json.dumps(_groups(values)))
    text = experiment_table(tmp_path, keys=("validation",), against="one-to-one")
    assert "| validation vs one-to-one |" in text.splitlines()[0]
    assert "| lever | round1 | +0.600 | +0.100 [+0.100, +0.100] | `lever` |" in text

"""End to end: the K-round Prefect flow over the real DVC stages, on a tiny corpus, with a
temporary MLflow SQLite registry."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A throw-away W2S project: this repo's pipeline and code, tiny params, a 6-clip corpus."""
    from tests.tiny_project import make_tiny_project, tiny_params

    proj = tmp_path_factory.mktemp("proj")
    params = tiny_params(rounds=2)  # two rounds suffice here
    # Two "local benchmark copies" made of suite clips (MOS = 4 - level), one a predeclared name.
    bench = proj / "bench"
    bench.mkdir()
    for name, dist in (("konvid", "gaussian_blur"), ("mine", "banding")):
        rows = ["file,mos"] + [f"videos/{src}__{dist}__L{lv}.mp4,{4 - lv}" for src in ("chelsea", "coffee", "rocket")
                               for lv in (1, 2, 3, 4)] + ["videos/not_there.mp4,2.5"]
        (bench / f"{name}.csv").write_text("\n".join(rows) + "\n")
    params["evaluation"]["benchmarks"] = {
        "KoNViD-1k": {"labels": "bench/konvid.csv", "videos": "artifacts/suites/known_order"},
        "my-ood": {"labels": "bench/mine.csv", "videos": "artifacts/suites/known_order", "role": "ood"},
    }
    return make_tiny_project(proj, params)


@pytest.fixture(scope="module")
def finished(project, prefect_harness, tmp_path_factory):
    import os

    from flows.w2s import w2s_rounds

    tracking = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    old = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, tracking))
    try:
        table = w2s_rounds(project_dir=str(project))
        yield project, tracking, table
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_registry_holds_one_version_per_round_and_alias_on_last(finished):
    import mlflow

    project, tracking, table = finished
    client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    versions = sorted(int(v.version) for v in client.search_model_versions("name='w2s-vqa'"))
    assert versions == [1, 2]
    assert str(client.get_model_version_by_alias("w2s-vqa", "teacher").version) == "2"
    assert "student_round1" in table and "student_round2" in table and "niqe" in table


def test_round2_used_round1_student_as_teacher(finished):
    import json

    import mlflow

    project, tracking, _ = finished
    r1 = json.loads((project / "artifacts/round1/registered.json").read_text())
    scores = json.loads((project / "artifacts/round2/teacher_scores.json").read_text())
    students = [t for t in scores["teachers"] if t["kind"] == "student"]
    assert [t["version"] for t in students] == [r1["version"]]
    assert students[0]["run_id"] == r1["run_id"]
    assert len(scores["scores"][students[0]["key"]]) == 6  # it scored the whole corpus
    client = mlflow.MlflowClient(tracking_uri=tracking)
    r2 = json.loads((project / "artifacts/round2/registered.json").read_text())
    assert client.get_run(r2["run_id"]).data.tags["w2s.teacher_versions"].split(",")[-1] == r1["version"]


def test_metrics_are_dvc_metrics_and_repro_is_a_noop(finished):
    project, _, _ = finished
    out = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show"], cwd=project, capture_output=True,
                         text=True, check=True).stdout
    assert "round1/metrics.json" in out and "round2/metrics.json" in out
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=project, capture_output=True,
                            text=True, check=True).stdout
    assert "up to date" in status, status


def test_student_prefers_clean_over_heavily_degraded(finished):
    """Direction check on held-out content: pristine suite clips vs their worst blur/noise levels."""
    import csv

    from vqa.scoring import score_paths
    from vqa.student.checkpoint import load_student

    project, _, _ = finished
    suite = project / "artifacts/suites/known_order"
    rows = list(csv.DictReader(open(suite / "labels.csv")))
    model = load_student(project / "artifacts/round2/student.pt")
    wins = total = 0
    for src in sorted({r["source"] for r in rows}):
        clean = [r for r in rows if r["source"] == src and r["distortion"] == "pristine"][0]
        worst = [r for r in rows if r["source"] == src and r["distortion"] in ("gaussian_blur", "gaussian_noise")
                 and int(r["level"]) == max(int(x["level"]) for x in rows if x["distortion"] == r["distortion"])]
        scores = score_paths(model, [suite / clean["file"]] + [suite / w["file"] for w in worst])
        for s in scores[1:]:
            total += 1
            wins += scores[0]["score"] > s["score"]
    assert total > 0 and wins / total >= 0.75, f"clean beat degraded in {wins}/{total} comparisons"


def test_rerunning_round2_uses_round1_student_not_the_moved_alias(finished):
    """After round 2 the alias points at version 2; a forced re-run of round 2's teacher step
    must still use round 1's student and reproduce the same teacher scores."""
    import os

    project, tracking, _ = finished
    before = (project / "artifacts/round2/teacher_scores.json").read_bytes()
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking, MLFLOW_REGISTRY_URI=tracking, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run([sys.executable, "-m", "dvc", "repro", "-f", "--single-item", "teach@round2"], cwd=project,
                         env=env, capture_output=True, text=True, check=True).stdout
    assert "round1 registered version 1, using that" in out
    assert (project / "artifacts/round2/teacher_scores.json").read_bytes() == before


def test_students_carry_anchors_for_0_to_100_scores(finished):
    """The trained student stores 5 corpus anchors; scoring the anchors themselves puts them at
    their corpus percentiles (10, 30, 50, 70, 90), in the student's order."""
    from vqa.scoring import score_videos
    from vqa.student.anchors import anchors_of
    from vqa.student.checkpoint import load_student

    project, _, _ = finished
    model = load_student(project / "artifacts/round2/student.pt")
    anchors = anchors_of(model)
    assert len(anchors.video_ids) == 5 and list(anchors.scores) == sorted(anchors.scores)
    rows = score_videos([project / p for p in anchors.paths], model=model, workers=1, anchored=True)
    values = [r["score_0_100"] for r in rows]
    assert values == pytest.approx([10, 30, 50, 70, 90], abs=1e-3)
    assert values == sorted(values)
    assert [r["score"] for r in rows] == pytest.approx(list(anchors.scores), abs=1e-5)


def test_rounds_report_the_teacher_ensemble_and_the_w2s_gain_with_a_ci(finished):
    import json

    project, _, table = finished
    metrics = json.loads((project / "artifacts/round2/metrics.json").read_text())
    assert "teacher_ensemble" in metrics["models"] and "known_order" in metrics["models"]["teacher_ensemble"]
    gains = metrics["w2s_gain"]
    assert {"known_order", "known_order_in_domain", "known_order_ood"} <= set(gains)
    for key, g in gains.items():
        best = g["best_teacher"]
        assert best in metrics["models"] and not best.startswith("student_") and best != "teacher_ensemble"
        student = metrics["models"]["student_round2"][key]["srcc"]
        assert g["srcc"] is not None and g["low"] <= g["srcc"] <= g["high"]
        if key.startswith("known_order"):  # equal-weight groups: the gain is the difference of the table's figures
            # the gain and both figures are each rounded to 3 decimals (half a unit each): 1.5e-3 at most
            assert g["srcc"] == pytest.approx(student - metrics["models"][best][key]["srcc"], abs=1.5e-3)
    assert "W2S gain (SRCC) on" in table and "teacher_ensemble" in table
    report = (project / "artifacts/round2/report/report.md").read_text()
    assert "| **student_round2** |" in report and "Weak-to-strong gain" in report


def test_configured_benchmarks_are_evaluated_each_round_with_size_weighted_overalls(finished):
    import json

    project, _, table = finished
    metrics = json.loads((project / "artifacts/round2/metrics.json").read_text())
    assert metrics["suites"]["KoNViD-1k"] == {"videos": 12, "missing": 1}
    row = metrics["models"]["student_round2"]
    assert {"KoNViD-1k", "my-ood", "overall_in_domain", "overall_ood"} <= set(row)
    assert row["overall_in_domain"] == row["KoNViD-1k"] and row["overall_ood"] == row["my-ood"]  # one each
    assert "KoNViD-1k" in metrics["w2s_gain"] and "overall OOD" in table
    assert "| KoNViD-1k |" in (project / "artifacts/round2/report/report.md").read_text()


def test_dvc_plots_show_renders_the_round_plots(finished, tmp_path):
    project, _, _ = finished
    out = tmp_path / "plots"
    subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)], cwd=project, check=True,
                   capture_output=True, text=True)
    html = (out / "index.html").read_text()
    for rnd in ("round1", "round2"):
        assert f"artifacts/{rnd}/report/plots/suites.png" in html or f"{rnd}_report_plots_suites.png" in html
    assert "rounds.png" in html and "figures.csv" in html


def test_champion_alias_moves_only_when_the_validation_figure_improves(finished):
    import json

    import mlflow

    project, tracking, _ = finished
    reg1 = json.loads((project / "artifacts/round1/registered.json").read_text())
    reg2 = json.loads((project / "artifacts/round2/registered.json").read_text())
    assert reg1["champion"]["promoted"] and reg1["champion"]["reason"] == "no champion yet"
    rows = {r: json.loads((project / f"artifacts/{r}/metrics.json").read_text())["models"][f"student_{r}"]
            for r in ("round1", "round2")}
    assert reg2["champion"]["figure"] == "validation"  # never a reported suite or benchmark
    better = rows["round2"]["validation"]["srcc"] > rows["round1"]["validation"]["srcc"]
    assert reg2["champion"]["promoted"] == better and reg2["champion"]["previous_version"] == reg1["version"]
    client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    champion = client.get_model_version_by_alias("w2s-vqa", "champion")
    assert str(champion.version) == (reg2["version"] if better else reg1["version"])
    assert client.get_run(reg2["run_id"]).data.tags["champion.promoted"] == str(better)


def test_validation_is_split_by_video_and_the_rounds_record_labels_and_calibration(finished):
    """No video is on both sides of the split; the round's metrics carry the five-level shares
    of the training pairs by kind, each teacher's calibration, and the gain against the ensemble."""
    import json

    from vqa.fusion import read_pairs

    project, tracking, _ = finished
    for rnd in ("round1", "round2"):
        pairs = read_pairs(project / f"artifacts/{rnd}/pairs.csv")
        train = {v for p in pairs if p.split == "train" for v in (p.a, p.b)}
        val = {v for p in pairs if p.split == "val" for v in (p.a, p.b)}
        assert train and val and not train & val
        metrics = json.loads((project / f"artifacts/{rnd}/metrics.json").read_text())
        assert set(metrics["labels"]) >= {"teacher", "simulator"}
        assert all(abs(sum(shares.values()) - 1) < 1e-3 for shares in metrics["labels"].values())
        cal = metrics["calibration"]
        assert set(cal) == {"niqe", "brisque", "blockiness", "blur", "contrast", "noise", "flicker", "colourfulness",
                            "luminance", "si", "ti"}
        assert all(c["action"] in ("keep", "flip", "drop") for c in cal.values())
        assert "validation" in metrics["models"][f"student_{rnd}"]
        gain = metrics["w2s_gain"]["known_order_ood"]["vs_ensemble"]
        assert gain["low"] <= gain["srcc"] <= gain["high"]
    history = json.loads((project / "artifacts/round1/train_history.json").read_text())
    assert history["val_pairs"] > 0 and "val_ce_simulator" in history["history"][0]


def test_runs_and_model_versions_carry_dvc_lineage(finished, tmp_path):
    """Each round's run is tagged with the DVC hashes of its inputs and outputs (as dvc.lock and
    data.dvc record them), git state and remote, and logs lineage.json; each model version links
    back to its run and data."""
    import json

    import mlflow

    project, tracking, _ = finished
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    corpus_md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]

    def locked(stage, path):
        return next(o["md5"] for o in lock[stage]["outs"] if o["path"] == path)

    client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    for rnd in ("round1", "round2"):
        reg = json.loads((project / f"artifacts/{rnd}/registered.json").read_text())
        tags = client.get_run(reg["run_id"]).data.tags
        expected = {
            "corpus": corpus_md5,
            "manifest": locked("corpus", "artifacts/corpus/manifest.json"),
            "simulated": locked("simulate", "artifacts/simulated"),
            "suite": locked("suite", "artifacts/suites/known_order"),
            "teacher_scores": locked(f"teach@{rnd}", f"artifacts/{rnd}/teacher_scores.json"),
            "pairs": locked(f"fuse@{rnd}", f"artifacts/{rnd}/pairs.csv"),
            "student": locked(f"train@{rnd}", f"artifacts/{rnd}/student.pt"),
            "metrics": locked(f"evaluate@{rnd}", f"artifacts/{rnd}/metrics.json"),
        }
        assert {k: tags[f"dvc.{k}.md5"] for k in expected} == expected
        assert tags["dvc.hashes_from"] == "dvc.lock"  # register ran after its round's stages were locked
        assert tags["git.dirty"] in ("True", "False", "None") and tags["git.commit"]
        assert "dvc.remote_url" in tags and "dvc.remote" in tags
        version = client.get_model_version("w2s-vqa", reg["version"]).tags
        assert version["w2s.run_id"] == reg["run_id"] and version["w2s.round"] == rnd
        assert version["dvc.pairs.md5"] == expected["pairs"] and version["dvc.corpus.md5"] == corpus_md5
        assert version["git.commit"] == tags["git.commit"]
        path = mlflow.artifacts.download_artifacts(run_id=reg["run_id"], artifact_path="lineage.json",
                                                   dst_path=str(tmp_path / rnd), tracking_uri=tracking)
        logged = json.loads(Path(path).read_text())
        assert {k: v["md5"] for k, v in logged["dvc"].items()} == expected


def test_round2_refines_labels_mines_hard_and_gmad_pairs_and_keeps_round1s(finished):
    """Iterative W2S: round 2's pair set holds round 1's pairs (cumulative), with the teacher
    pairs relabelled, plus its own random, gMAD and hard synthetic pairs."""
    import json

    from vqa.fusion import read_pairs

    project, _, _ = finished
    r1 = read_pairs(project / "artifacts/round1/pairs.csv")
    r2 = read_pairs(project / "artifacts/round2/pairs.csv")
    carried = [p for p in r2 if p.round == "round1"]
    assert [(p.a, p.b, p.source) for p in carried] == [(p.a, p.b, p.source) for p in r1]
    assert all(new.label == old.label for old, new in zip(r1, carried) if old.source != "homogeneous")
    new = {}
    for p in r2:
        if p.round == "round2":
            new[p.selection] = new.get(p.selection, 0) + 1
    # round 1 drew every pair of the training videos: no fresh random pair is left; gMAD may pick them again
    assert "random" not in new and new.get("gmad", 0) > 0
    table = json.loads((project / "artifacts/round2/teacher_scores.json").read_text())
    student = next(t for t in table["teachers"] if t["kind"] == "student")
    simulated = table["simulated"][student["key"]]
    assert len(student["cutpoints"]) == 4 and len(simulated) > 0
    hard = [p for p in r2 if p.selection == "hard"]
    assert hard and all(p.split == "train" for p in hard)  # mined from training sources only
    for p in hard:  # each is a known-order pair the round-1 student did not prefer the right way
        d = simulated[p.a] - simulated[p.b]
        right_way = d if p.label > 2 else -d  # the less distorted one's score minus the other's
        assert right_way <= student["cutpoints"][2] + 1e-5  # median level: similar or the wrong way
    summary = json.loads((project / "artifacts/round2/pairs_summary.json").read_text())
    assert summary["by_round_and_selection"]["round2"] == new

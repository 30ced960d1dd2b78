"""Ablations and levers as DVC experiments whose results are kept in git.

`vqa experiment run --project runs/ugc --name rule-paper -S fusion.rule=paper` runs
`dvc exp run -n rule-paper -S params.yaml:fusion.rule=paper` in the project's workspace (so the
content-addressed caches serve it: only what the change touches is computed), then:

- copies each round's metrics.json to experiments/<name>/<round>.json, with experiment.json
  naming the command, the overrides and the DVC experiment it came from;
- lists those files in experiments/dvc.yaml (top-level metrics), so `dvc metrics show` shows
  every experiment beside the project's own rounds;
- puts the workspace back: params.yaml and dvc.lock as they were, cached outputs checked out
  again, uncached ones (metrics.json, registered.json, the report) restored from a copy.

Every experiment registers its students under its own MLflow model name (<model_name>-<name>),
so the project's registry, its `teacher` and `champion` aliases, are never touched.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Callable

import yaml

from vqa.io import atomic_write_bytes, atomic_write_json, atomic_write_text

EXPERIMENTS = "experiments"
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")


def _metrics_index(folder: Path) -> None:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/round*.json"))
    atomic_write_text(folder / "dvc.yaml", "# experiments of this project (vqa experiment run); read by `dvc metrics show`\n"
                      + yaml.safe_dump({"metrics": files}, sort_keys=False))


def run_experiment(project: str | Path, name: str, overrides: list[str], *, rounds: int | None = None,
                   log: Callable[[str], None] = print, run_dvc=None) -> dict:
    """Run one experiment (see the module doc); returns its experiment.json record."""
    from flows.w2s import run_dvc as default_run_dvc
    from vqa.config import load_params

    run_dvc = run_dvc or default_run_dvc
    proj = Path(project)
    if not NAME.match(name):
        raise ValueError(f"experiment name {name!r}: use lower-case letters, digits and '-' (at most 41)")
    for o in overrides:
        if "=" not in o:
            raise ValueError(f"-S {o!r}: expected key=value (a dotted params.yaml key)")
    params = load_params(proj / "params.yaml")
    names = params.round_names()[: rounds or None]
    model = f"{params.mlflow.model_name}-{name}"
    sets = [*overrides, f"mlflow.model_name={model}"]
    args = ["exp", "run", "-f", "-n", name] + [a for o in sets for a in ("-S", f"params.yaml:{o}")]
    if rounds:
        args.append(f"register@{names[-1]}")
    saved = {f: (proj / f).read_bytes() for f in ("params.yaml", "dvc.lock") if (proj / f).exists()}
    # `dvc checkout` restores cached outputs only: the rounds' uncached ones (metrics.json,
    # registered.json, the report) are put back from this copy.
    outputs = {p: p.read_bytes() for r in names if (proj / "artifacts" / r).is_dir()
               for p in sorted((proj / "artifacts" / r).rglob("*")) if p.is_file()}
    command = "dvc " + " ".join(shlex.quote(a) for a in args)
    log(f"experiment {name}: {command} (in {proj})")
    try:
        run_dvc(proj, args)
        folder = proj / EXPERIMENTS / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("round*.json"):
            old.unlink()
        for r in names:
            src = proj / "artifacts" / r / "metrics.json"
            (folder / f"{r}.json").write_bytes(src.read_bytes())
            details = json.loads((proj / "artifacts" / r / "evaluation.json").read_text())
            atomic_write_json(folder / f"validation_{r}.json", validation_groups(details, f"student_{r}"))
        record = {"name": name, "overrides": overrides, "rounds": names, "mlflow_model": model,
                  "command": f"vqa experiment run --project {proj.as_posix()} --name {name}"
                             + "".join(f" -S {shlex.quote(o)}" for o in overrides)
                             + (f" --rounds {rounds}" if rounds else ""),
                  "dvc_command": command, "dvc_experiment": name}
        atomic_write_json(folder / "experiment.json", record)
        _metrics_index(proj / EXPERIMENTS)
    finally:  # the workspace goes back to the baseline, whatever happened
        for f, data in saved.items():
            (proj / f).write_bytes(data)
        locked = sorted(yaml.safe_load(saved["dvc.lock"]).get("stages", {})) if "dvc.lock" in saved else []
        if locked:  # the stages the baseline has run; never-run ones have nothing to restore
            run_dvc(proj, ["checkout", "-f", *locked])
        for path, data in outputs.items():
            if not path.exists() or path.read_bytes() != data:
                atomic_write_bytes(path, data)
    log(f"experiment {name}: results in {proj / EXPERIMENTS / name}")
    return record


def validation_groups(details: dict, model: str) -> dict[str, float]:
    """Per validation group (source/simulator), the model's SRCC: what paired comparisons of two
    experiments' validation figures resample."""
    groups = details.get("validation", {}).get(model, {}).get("groups", {})
    return {g: round(float(r["srcc"]), 6) for g, r in sorted(groups.items())}


def paired_validation_gain(a: dict[str, float], b: dict[str, float], *, n_boot: int = 2000,
                           seed: int = 0) -> tuple[float, float, float]:
    """Mean over the shared validation groups of SRCC(a) - SRCC(b), with a 95 % bootstrap CI over
    groups: a lever or a default is adopted only when the CI is above 0."""
    import numpy as np

    shared = sorted(set(a) & set(b))
    if not shared:
        return float("nan"), float("nan"), float("nan")
    d = np.array([a[g] - b[g] for g in shared])
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def _figure(metrics: dict, student: str, key: str):
    return (metrics["models"].get(student, {}).get(key) or {}).get("srcc")


def experiment_table(project: str | Path, keys: tuple[str, ...] = ("validation", "known_order_ood", "ugc_mos",
                                                                   "ugc_mos_konvid_1k"), against: str | None = None) -> str:
    """Markdown: the baseline (the project's own rounds, params.yaml as committed), then per
    experiment and round the student's SRCC on the validation set (what chose) and on the reported
    suites, the paired validation gain over the baseline's same round (95 % bootstrap CI over the
    validation groups; n/a without the baseline's evaluation.json) and the experiment's command.
    `against`: compare with that experiment's rounds instead of the baseline's."""
    proj = Path(project)
    baseline = {}
    if against is not None and not (proj / EXPERIMENTS / against / "experiment.json").exists():
        raise LookupError(f"--against {against}: no experiment {proj / EXPERIMENTS / against}")
    for path in sorted((proj / "artifacts").glob("round*/metrics.json")):
        details = path.parent / "evaluation.json"
        groups = (validation_groups(json.loads(details.read_text()), f"student_{path.parent.name}")
                  if details.exists() else {})
        baseline[path.parent.name] = (json.loads(path.read_text()), groups)

    def row(name: str, r: str, metrics: dict, gain: str, command: str) -> str:
        cells = [_figure(metrics, f"student_{r}", k) for k in keys]
        return (f"| {name} | {r} | " + " | ".join("n/a" if c is None else f"{c:+.3f}" for c in cells)
                + f" | {gain} | `{command}` |")

    reference = {r: groups for r, (_, groups) in baseline.items()}
    if against is not None:
        reference = {p.stem[len("validation_"):]: json.loads(p.read_text())
                     for p in (proj / EXPERIMENTS / against).glob("validation_round*.json")}
    rows = [row("baseline", r, m, "", f"vqa demo --project {proj.as_posix()}") for r, (m, _) in baseline.items()]
    for folder in sorted((proj / EXPERIMENTS).glob("*/experiment.json")):
        rec = json.loads(folder.read_text())
        for r in rec["rounds"]:
            path = folder.parent / f"{r}.json"
            if not path.exists():
                continue
            gain = "n/a"
            ours = folder.parent / f"validation_{r}.json"
            if ours.exists() and reference.get(r):
                d, lo, hi = paired_validation_gain(json.loads(ours.read_text()), reference[r])
                gain = f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
            rows.append(row(rec["name"], r, json.loads(path.read_text()), gain, rec["command"]))
    head = "| experiment | round | " + " | ".join(keys) + f" | validation vs {against or 'baseline'} | command |"
    return "\n".join([head, "|---|---|" + "---|" * len(keys) + "---|---|"] + rows)

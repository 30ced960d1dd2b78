"""`vqa`: one command-line entry point with a subcommand per step (what dvc.yaml runs)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Quiet, offline-friendly defaults for the libraries the steps use.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def log(msg: str) -> None:
    print(msg, flush=True)


def _params(args):
    from vqa.config import load_params

    return load_params(args.params)


def cmd_corpus_ingest(args) -> int:
    from vqa.corpus import ingest

    ingest(args.dir, args.manifest, args.quarantine, workers=args.workers, log=log)
    return 0  # quarantined files are reported, not failures


def cmd_corpus_demo(args) -> int:
    from vqa.corpus.demo import build_demo_corpus

    rows = build_demo_corpus(args.out, n_clips=args.clips, seed=args.seed, workers=args.workers, log=log)
    log(f"demo corpus: {len(rows)} clips in {Path(args.out) / 'videos'}")
    return 0


def cmd_suite_build(args) -> int:
    from vqa.pipeline import steps

    steps.build_suite(_params(args), log=log)
    return 0


def cmd_simulate(args) -> int:
    from vqa.pipeline import steps

    steps.simulate(_params(args), log=log)
    return 0


def _params_or_defaults(args):
    """params.yaml when present; else the defaults (commands that work outside a project)."""
    if Path(args.params).exists():
        return _params(args)
    from vqa.config.params import Params

    return Params(rounds={"round1": {"after": "artifacts/corpus/manifest.json"}})


def _round_step(name: str):
    def run(args) -> int:
        from vqa.pipeline import steps

        params = _params(args)
        if args.round not in params.rounds:
            raise KeyError(f"--round {args.round!r}: not in params.yaml rounds ({', '.join(params.rounds)})")
        getattr(steps, name)(params, args.round, log=log)
        return 0

    return run


def cmd_evaluate(args) -> int:
    if args.round:
        if args.model or args.teacher or args.benchmark:
            raise ValueError("vqa evaluate: --round runs the pipeline step; give either it or --model/--teacher/--benchmark")
        return _round_step("evaluate")(args)
    import json

    from vqa.evaluation.benchmarks import BenchmarkSpec, load_benchmark, resolve_benchmarks, ugc_smoke_spec
    from vqa.evaluation.evaluate import evaluate_models, format_results, to_json
    from vqa.scoring import resolve_model

    if not args.benchmark:
        raise ValueError("vqa evaluate: name at least one --benchmark (or --round for the pipeline step)")
    params = _params_or_defaults(args)
    configured = params.evaluation.benchmarks
    specs = []
    for name in args.benchmark:
        if name == "ugc-smoke":
            specs.append(ugc_smoke_spec(params.evaluation.ugc_smoke))
        elif Path(name).is_file():
            path = Path(name)
            header = path.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0].lower().split(",")
            group = next((c.strip() for c in header if c.strip() in ("dataset", "group")), None)
            specs.append(BenchmarkSpec(name=path.parent.name if path.stem == "labels" else path.stem, role="smoke",
                                       labels=path, videos=path.parent, group_column=group))
        else:
            specs += resolve_benchmarks({k: v for k, v in configured.items() if k == name} or {name: {}},
                                        base=Path(args.params).resolve().parent)
    tracking = None
    if any(m.startswith("models:/") for m in args.model):
        from vqa.registry import configure_tracking

        tracking = configure_tracking(params.mlflow)
    models = [(m, resolve_model(m, tracking_uri=tracking).eval()) for m in args.model]
    results = evaluate_models([load_benchmark(s) for s in specs], models=models, teachers=args.teacher,
                              workers=args.workers, n_boot=args.boot,
                              min_group_size=params.evaluation.min_group_size, seed=params.seed, log=log)
    print(format_results(results))
    if args.out:
        from vqa.io import atomic_write_json

        atomic_write_json(args.out, to_json(results))
    return 0


def cmd_report(args) -> int:
    from vqa.pipeline.report import collect, format_gains, format_table

    params = _params(args)
    rows = collect(params)
    if not rows:
        log("report: no round has been evaluated yet")
        return 1
    print(format_table(rows))
    gains = format_gains(params)
    if gains:
        print("\n" + gains)
    return 0


def cmd_teachers_list(args) -> int:
    from vqa.teachers import register_specs, teacher_cards
    from vqa.teachers.registry import broken_plugins

    if Path(args.params).exists():  # the project's exported-model teachers join the list
        register_specs(_params(args).teachers.external)
    cards = teacher_cards()
    if args.json:
        import dataclasses
        import json

        print(json.dumps([dataclasses.asdict(c) | {"key": c.key} for c in cards], indent=1))
        return 0

    def span(r):
        return "-" if r is None else f"[{'' if r[0] is None else r[0]},{'' if r[1] is None else r[1]}]"

    rows = [("name", "kind", "version", "direction", "range", "needs", "origin", "what it measures")]
    rows += [(c.name, c.kind, c.version, "higher=better" if c.higher_is_better else "lower=better",
              span(c.score_range), c.needs, c.origin, c.summary) for c in cards]
    widths = [max(len(str(r[i])) for r in rows) for i in range(7)]
    for r in rows:
        print("  ".join(f"{str(v):<{w}}" for v, w in zip(r, widths)) + "  " + r[7])
    homo = sum(c.kind == "homogeneous" for c in cards)
    print(f"\n{homo} homogeneous teachers, {len(cards) - homo} simulator types")
    for name, why in broken_plugins().items():
        print(f"vqa teachers: plug-in {name!r} failed to load: {why}", file=sys.stderr)
    return 0


def cmd_bench_teachers(args) -> int:
    import json

    from vqa.bench.teachers import bench_teachers

    params = _params(args) if Path(args.params).exists() else None
    videos = args.videos or (params.corpus.videos if params else "data/videos")
    result = bench_teachers(
        videos, teachers=args.teachers, workers=args.workers, limit=args.limit,
        key_rate=params.video.key_rate if params else 1.0,
        max_key_frames=params.video.max_key_frames if params else 8, log=log,
    )
    print(json.dumps(result, sort_keys=True))  # the last line: one JSON object
    return 0


def _score_model(args):
    """--model, or the registered champion: -> (what score_videos takes, a line naming it)."""
    if args.model and not args.model.startswith("models:/"):
        return args.model, f"model {args.model}"
    from vqa.config import load_params
    from vqa.registry import champion_uri, configure_tracking, load_registered_student

    params = load_params(args.params) if Path(args.params).exists() else None
    if params is None and not args.model:
        raise LookupError("vqa score: give --model (a checkpoint or models:/NAME@ALIAS): there is no "
                          f"{args.params} here to find the project's registered champion")
    if params is not None:
        configure_tracking(params.mlflow)
    uri = args.model or champion_uri(params.mlflow)
    if uri is None:
        import mlflow

        from vqa.registry.mlflow_registry import registered_names, registry_exists

        known = registered_names() if registry_exists() else []
        raise LookupError(f"vqa score: no --model given and no {params.mlflow.model_name}@"
                          f"{params.mlflow.champion_alias} in the registry at {mlflow.get_registry_uri()} "
                          f"(registered: {'; '.join(known) or 'nothing'}); give --model")
    student, mv = load_registered_student(uri)
    return student, f"model {uri} (version {mv.version}, run {mv.run_id})"


def cmd_score(args) -> int:
    import csv
    import io
    import json
    import math

    from vqa.scoring import progress_bar, score_videos

    model, which = _score_model(args)
    print(f"vqa score: {which}", file=sys.stderr, flush=True)
    fmt = args.format or ("json" if args.out and args.out.endswith(".json") else "csv")
    rows = score_videos(args.paths, model=model, workers=args.workers,
                        progress=None if args.quiet else progress_bar(), anchored=args.anchored)
    fields = ["path", "score"] + (["score_0_100"] if args.anchored else []) + ["error"]
    if fmt == "json":
        def finite(v):
            return None if isinstance(v, float) and math.isnan(v) else v

        text = json.dumps([{k: finite(r[k]) for k in fields} for r in rows], indent=1) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    if args.out:
        from vqa.io import atomic_write_text

        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
    failed = [r for r in rows if r["error"]]
    for r in failed:
        print(f"vqa score: {r['path']}: {r['error']}", file=sys.stderr)
    ok = len(rows) - len(failed)
    print(f"vqa score: {ok} of {len(rows)} videos scored" + (f", {len(failed)} failed" if failed else "")
          + (f" -> {args.out}" if args.out else ""), file=sys.stderr)
    return 1 if failed else 0


def cmd_flow(args) -> int:
    from flows.w2s import w2s_rounds

    print(w2s_rounds(project_dir=args.project, rounds=args.rounds))
    return 0


def cmd_orchestrate_setup(args) -> int:
    """Work pools and concurrency limits for the deployments in prefect.yaml (idempotent)."""
    from flows.orchestrate import setup

    for line in setup(gpu_slots=args.gpu_slots):
        log(f"orchestrate: {line}")
    return 0


def cmd_demo(args) -> int:
    """The main job: demo corpus -> data.dvc -> K rounds under Prefect (via DVC stages) -> table.
    With --project DIR: the rounds of that project (its corpus imported by `vqa project init`)."""
    from flows.w2s import run_dvc, w2s_rounds
    from vqa.corpus.demo import build_demo_corpus

    start = time.monotonic()
    project = Path(args.project)
    params = _params_or_defaults(argparse.Namespace(params=str(project / "params.yaml")))
    if args.project == ".":
        data_root = Path(params.corpus.videos).parent
        build_demo_corpus(data_root, n_clips=params.corpus.demo_clips, seed=params.seed,
                          workers=params.corpus.workers, log=log)
        run_dvc(".", ["add", data_root.as_posix()])
    else:
        from vqa.pipeline.project import ensure_corpus, sync_pipeline

        if sync_pipeline(project.resolve()):
            log(f"demo: {project / 'dvc.yaml'} refreshed from the repository's pipeline")
        ensure_corpus(project)
    table = w2s_rounds(project_dir=str(project), rounds=None)
    print()
    print(table)
    log(f"\ndemo: {len(params.rounds)} rounds of {project} finished in {time.monotonic() - start:.0f} s")
    from vqa.registry.lineage import push

    try:  # corpus, pseudo-labels, teacher scores and students to the default DVC remote
        files, url = push(project)
    except RuntimeError as exc:
        log(f"{exc} (the results above are complete; run `dvc push` once the remote is reachable)")
        return 1
    log(f"dvc push: {files} files to {url}")
    return 0


def cmd_project_init(args) -> int:
    from vqa.pipeline.project import init_project

    proj = init_project(args.dir, args.corpus, model_name=args.model_name, log=log)
    log(f"project: ready; run it with `vqa demo --project {os.path.relpath(proj)}`")
    return 0


def cmd_experiment_run(args) -> int:
    from vqa.pipeline.experiments import run_experiment

    run_experiment(args.project, args.name, args.set or [], rounds=args.rounds, log=log)
    return 0


def cmd_experiment_table(args) -> int:
    from vqa.pipeline.experiments import experiment_table

    print(experiment_table(args.project, against=args.against))
    return 0


def cmd_bench_score(args) -> int:
    import json

    from vqa.bench.score import bench_score

    params = _params(args) if Path(args.params).exists() else None
    videos = args.videos or [params.corpus.videos if params else "data/videos"]
    model = args.model
    if model is None:
        from vqa.student.model import StudentConfig, StudentModel

        # untrained head: the cost of scoring does not depend on the head's weights
        cfg = StudentConfig(key_rate=params.video.key_rate, max_key_frames=params.video.max_key_frames,
                            motion_frames=params.student.motion_frames) if params else StudentConfig()
        model = StudentModel(cfg).eval()
        log("bench: no --model given: timing an untrained student of the same architecture")
    size = None
    if args.memory_size != "none":
        w, _, h = args.memory_size.partition("x")
        size = (int(w), int(h))
    result = bench_score(videos, model=model, workers=args.workers, limit=args.limit, scaling=args.scaling,
                         memory_size=size, log=log)
    print(json.dumps(result, sort_keys=True))  # the last line: one JSON object
    return 0


def cmd_bench_train(args) -> int:
    import json

    from vqa.bench.train import bench_train

    params = _params_or_defaults(args)
    student = params.student
    updates = {k: v for k, v in {"precision": args.precision, "loader_workers": args.loader_workers,
                                 "grad_accum_steps": args.grad_accum}.items() if v is not None}
    if updates:
        student = student.model_copy(update=updates)
    result = bench_train(args.videos or params.corpus.videos, student=student, key_rate=params.video.key_rate,
                         max_key_frames=params.video.max_key_frames, steps=args.steps, warmup=args.warmup,
                         batch_size=args.batch_size, device=args.device, limit=args.limit, log=log)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result, sort_keys=True))  # the last line: one JSON object
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vqa", description="Weak-to-strong video quality assessment")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    corpus = sub.add_parser("corpus", help="build and ingest video corpora").add_subparsers(dest="corpus_cmd", required=True)
    c = corpus.add_parser("ingest", help="manifest a folder of videos (incremental; quarantines bad files)")
    c.add_argument("dir")
    c.add_argument("--manifest", default="artifacts/corpus/manifest.json")
    c.add_argument("--quarantine", default="artifacts/corpus/quarantine.json")
    c.add_argument("--workers", type=int, default=2)
    c.set_defaults(func=cmd_corpus_ingest)
    c = corpus.add_parser("demo", help="build the built-in demo corpus from media shipped in packages")
    c.add_argument("--out", default="data")
    c.add_argument("--clips", type=int, default=64)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--workers", type=int, default=2)
    c.set_defaults(func=cmd_corpus_demo)

    suite = sub.add_parser("suite", help="evaluation suites").add_subparsers(dest="suite_cmd", required=True)
    suite.add_parser("build", help="build the known-order suite (held-out content)").set_defaults(func=cmd_suite_build)

    sub.add_parser("simulate", help="heterogeneous teachers: graded distortions of corpus videos").set_defaults(func=cmd_simulate)
    for step, text in [("teach", "score the corpus with every teacher of the round"),
                       ("fuse", "fuse teacher scores and simulator levels into labelled pairs"),
                       ("train", "train the round's student on its pairs"),
                       ("evaluate", "SRCC/PLCC of the student and every teacher on the suites"),
                       ("register", "log the round to MLflow, register the student, move the alias")]:
        s = sub.add_parser(step, help=text)
        s.add_argument("--round", required=step != "evaluate", help="a key of params.yaml rounds, e.g. round1")
        s.set_defaults(func=_round_step(step))
        if step == "evaluate":
            s.description = ("With --round: the pipeline step. With --model/--teacher and --benchmark: any "
                             "student or teacher on any benchmark, per group, with bootstrap 95%% CIs.")
            s.add_argument("--model", action="append", default=[],
                           help="a student checkpoint or models:/NAME@ALIAS (repeatable)")
            s.add_argument("--teacher", nargs="+", default=[], help="registered teacher names (vqa teachers list)")
            s.add_argument("--benchmark", nargs="+", default=[],
                           help="ugc-smoke, a name from params evaluation.benchmarks, or a labels file (.csv/.json/.txt)")
            s.add_argument("--boot", type=int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
            s.add_argument("--workers", type=int, default=2)
            s.add_argument("--out", default=None, help="also write the results as JSON here")
            s.set_defaults(func=cmd_evaluate)

    sub.add_parser("report", help="print the table of every teacher and student").set_defaults(func=cmd_report)
    t = sub.add_parser("teachers", help="teacher registry").add_subparsers(dest="teachers_cmd", required=True)
    tl = t.add_parser("list", help="list every registered teacher and simulator type")
    tl.add_argument("--json", action="store_true", help="machine-readable cards")
    tl.set_defaults(func=cmd_teachers_list)

    b = sub.add_parser("bench", help="benchmarks (speed and memory, as ratios to a baseline in the same run)")
    b = b.add_subparsers(dest="bench_cmd", required=True)
    bt = b.add_parser("teachers", help="seconds per video per teacher; statistics step vs decode-only")
    bt.add_argument("--videos", default=None, help="folder of videos (default: params corpus.videos)")
    bt.add_argument("--teachers", nargs="*", default=None, help="other teachers to time (default: all built-in)")
    bt.add_argument("--workers", type=int, default=2)
    bt.add_argument("--limit", type=int, default=None, help="only the first N videos")
    bt.set_defaults(func=cmd_bench_teachers)
    bs = b.add_parser("score", help="scoring vs decode-only time per resolution band; peak memory on a 4K 8 s clip")
    bs.add_argument("--videos", nargs="+", default=None, help="folders of videos (default: params corpus.videos)")
    bs.add_argument("--model", default=None, help="checkpoint or models:/...; default: an untrained student")
    bs.add_argument("--workers", type=int, default=2)
    bs.add_argument("--limit", type=int, default=None)
    bs.add_argument("--scaling", action="store_true", help="also time scoring with 1..--workers processes")
    bs.add_argument("--memory-size", default="3840x2160",
                    help="WxH of the synthetic 8 s clip whose scoring memory is measured, or none")
    bs.set_defaults(func=cmd_bench_score)
    btr = b.add_parser("train", help="fine-tuning throughput (GPU; a short smoke run on CPU); torchrun for DDP")
    btr.add_argument("--videos", default=None, help="folder of videos (default: params corpus.videos)")
    btr.add_argument("--steps", type=int, default=None, help="timed optimiser steps (default 40 GPU, 3 CPU)")
    btr.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 GPU, 1 CPU)")
    btr.add_argument("--batch-size", type=int, default=None, help="pairs per micro-batch (default: params; 4 on CPU)")
    btr.add_argument("--grad-accum", type=int, default=None, help="micro-batches per step (default: params)")
    btr.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None)
    btr.add_argument("--loader-workers", type=int, default=None, help="DataLoader processes (default: params)")
    btr.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    btr.add_argument("--limit", type=int, default=None, help="only the first N videos")
    btr.set_defaults(func=cmd_bench_train)

    s = sub.add_parser("score", help="score videos with a trained student (exit 1 if any file failed)")
    s.add_argument("paths", nargs="+", help="files, folders, glob patterns, or @list.txt (one path per line)")
    s.add_argument("--model", default=None,
                   help="a student checkpoint (.pt) or models:/NAME@ALIAS (default: the project's registered champion)")
    s.add_argument("--out", default=None, help="write here (.csv or .json) instead of stdout")
    s.add_argument("--format", choices=["csv", "json"], default=None, help="default: from --out, else csv")
    s.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.add_argument("--anchored", action="store_true",
                   help="add score_0_100: the score placed among the 5 anchor videos stored with the student, "
                        "at their corpus percentiles (50 = the corpus median; never exactly 0 or 100)")
    s.set_defaults(func=cmd_score)

    f = sub.add_parser("flow", help="run the W2S rounds as a Prefect flow over the DVC stages")
    f.add_argument("--project", default=".")
    f.add_argument("--rounds", type=int, default=None, help="run only the first N rounds")
    f.set_defaults(func=cmd_flow)
    from vqa.stack.cli import add_parser as add_stack_parser

    add_stack_parser(sub)  # vqa stack up|down|status|env|...: the team services
    o = sub.add_parser("orchestrate", help="Prefect server set-up for the deployments in prefect.yaml")
    o = o.add_subparsers(dest="orchestrate_cmd", required=True)
    os_ = o.add_parser("setup", help="create or update the cpu and gpu work pools and the gpu concurrency limit")
    os_.add_argument("--gpu-slots", type=int, default=1, help="training runs at once (default 1)")
    os_.set_defaults(func=cmd_orchestrate_setup)
    d = sub.add_parser("demo", help="the main job: demo corpus + all rounds + table (--project: another project)")
    d.add_argument("--project", default=".", help="a project folder made by `vqa project init` (default: the demo)")
    d.set_defaults(func=cmd_demo)

    pr = sub.add_parser("project", help="projects in subfolders: the pipeline on your own corpus")
    pr = pr.add_subparsers(dest="project_cmd", required=True)
    pi = pr.add_parser("init", help="create a project for a folder of videos (dvc import-url) or refresh its dvc.yaml")
    pi.add_argument("dir", help="the project folder, inside the repository (e.g. runs/mine)")
    pi.add_argument("--corpus", required=True, help="the folder of videos to import")
    pi.add_argument("--model-name", help="registered MLflow model name (default: w2s-vqa-<folder name>)")
    pi.set_defaults(func=cmd_project_init)

    ex = sub.add_parser("experiment", help="ablations as DVC experiments kept in git (experiments/ of a project)")
    ex = ex.add_subparsers(dest="experiment_cmd", required=True)
    er = ex.add_parser("run", help="dvc exp run with params overrides; results to <project>/experiments/<name>/")
    er.add_argument("--project", default=".")
    er.add_argument("--name", required=True)
    er.add_argument("-S", "--set", action="append", help="params override key=value (repeatable)")
    er.add_argument("--rounds", type=int, help="only the first N rounds (default: all)")
    er.set_defaults(func=cmd_experiment_run)
    et = ex.add_parser("table", help="the experiments' student figures and commands as a Markdown table")
    et.add_argument("--project", default=".")
    et.add_argument("--against", metavar="NAME", help="paired validation gains against this experiment (default: the baseline)")
    et.set_defaults(func=cmd_experiment_table)
    return p


# Exit codes the flows read (flows/w2s.py): bad input or configuration is permanent; a runtime
# failure (out of memory, a lost worker or server) is retried.
EXIT_BAD_INPUT = 2
EXIT_RUNTIME = 3


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqa.config import ConfigError
    from vqa.video import VideoError

    try:
        return args.func(args)
    except (ConfigError, VideoError, FileNotFoundError, LookupError, ValueError, NotImplementedError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"vqa: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RuntimeError, MemoryError) as exc:  # torch's out-of-memory errors are RuntimeErrors
        print(f"vqa: error: {type(exc).__name__}: {exc} (a runtime failure: retrying may succeed)", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())

"""Each W2S step as a function of (params, round): reads and writes the paths in layout.py.

`vqa <step>` (what dvc.yaml runs) and the Prefect flows call these and nothing else.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Callable

from vqa.config import Params
from vqa.io import atomic_write_json, read_json, sha256_file
from vqa.pipeline import layout
from vqa.pipeline.analyse import analyse

Log = Callable[[str], None]


def _round_seed(params: Params, round_name: str) -> int:
    return params.seed * 1000 + params.round_names().index(round_name) + 1


def _student_config(params: Params):
    from vqa.student.model import StudentConfig

    s = params.student
    return StudentConfig(
        backbone=s.backbone,
        input_size=s.input_size,
        fragment_grid=s.fragment_grid,
        motion_frames=s.motion_frames,
        hidden=s.hidden,
        dropout=s.dropout,
        freeze_backbone=s.freeze_backbone,
        key_rate=params.video.key_rate,
        max_key_frames=params.video.max_key_frames,
    )


def _corpus_items() -> list[tuple[str, str]]:
    from vqa.corpus import resolve

    return [(vid, str(path)) for vid, path in resolve(layout.CORPUS_MANIFEST)]


def _simulated() -> list[dict]:
    if not layout.SIMULATED_MANIFEST.exists():
        return []
    return read_json(layout.SIMULATED_MANIFEST)["videos"]


# --------------------------------------------------------------------------- corpus and suites
def ingest(params: Params, log: Log = print):
    from vqa.corpus import ingest as run_ingest

    return run_ingest(params.corpus.videos, layout.CORPUS_MANIFEST, layout.QUARANTINE, workers=params.corpus.workers, log=log)


def build_suite(params: Params, log: Log = print):
    from vqa.corpus.demo import build_known_order_suite

    ev = params.evaluation
    rows = build_known_order_suite(ev.known_order_suite, seed=params.seed, workers=params.corpus.workers, log=log,
                                   scale=ev.suite_scale, max_duration=ev.suite_max_duration)
    log(f"suite: {len(rows)} clips in {params.evaluation.known_order_suite}")


def simulate(params: Params, log: Log = print) -> list[dict]:
    """Heterogeneous teachers: graded versions of a seeded subset of the corpus."""
    from vqa.teachers.simulators import CODEC_SIMULATORS, pick_sources, simulate_codec, simulate_frames

    sims = params.teachers.simulators
    videos: list[dict] = []
    items: dict[str, str] = {}
    # A fixed seed offset per simulator (h264's 0 predates the others): each draws its own
    # subset, stable when other types are added, removed or resized.
    offsets = {"h264": 0, "blur": 1, "noise": 2, "resize": 3, "darken": 4, "brighten": 5, "jitter": 6,
               "stutter": 7, "h265": 8}
    for name in type(sims).model_fields:
        cfg = getattr(sims, name)
        if not (cfg.enabled and cfg.sources):
            continue
        items = items or dict(_corpus_items())
        chosen = pick_sources(list(items), cfg.sources, params.seed + offsets[name])
        pick = [(vid, items[vid]) for vid in chosen]
        out = layout.SIMULATED / "videos"
        if name in CODEC_SIMULATORS:
            made = simulate_codec(pick, out, simulator=name, crfs=cfg.crf_levels, preset=cfg.preset,
                                  workers=params.teachers.workers)
            levels = f"CRF {cfg.crf_levels} ({cfg.preset})"
        else:
            made = simulate_frames(pick, out, simulator=name, levels=cfg.levels, seed=params.seed,
                                   workers=params.teachers.workers, crf=cfg.crf)
            levels = str(cfg.levels)
        for v in made:
            videos.append({"id": sha256_file(v.path), "path": v.path, "source_id": v.source_id,
                           "simulator": v.simulator, "level": v.level, "param": v.param})
        log(f"simulate: {name} at {levels} on {len(chosen)} sources -> {len(made)} videos")
    atomic_write_json(layout.SIMULATED_MANIFEST, {"videos": videos})
    return videos


# --------------------------------------------------------------------------- one round
def _previous_student(params: Params, round_name: str, log: Log):
    """Round k+1's extra teacher: the newest student, through the registry alias. When the alias
    has moved past round k (a later round re-registered, or round k+1 is re-run), round k's
    recorded version is used instead, so a re-run reproduces the same inputs."""
    from vqa.registry import configure_tracking
    from vqa.teachers.mlflow_models import resolve

    configure_tracking(params.mlflow)
    prev = params.previous_round(round_name)
    alias_uri = f"models:/{params.mlflow.model_name}@{params.mlflow.teacher_alias}"
    model = resolve(alias_uri)
    expected = str(read_json(layout.registered(prev))["version"])
    if model.version != expected:
        log(f"teach: {alias_uri} is version {model.version}; {prev} registered version {expected}, using that")
        model = resolve(f"models:/{params.mlflow.model_name}/{expected}")
    log(f"teach: {alias_uri} -> {model.uri} (run {model.run_id}) joins the teachers")
    # The record names the exact version, so a re-run writes the same bytes.
    return model, {"key": f"student@{model.run_id}", "name": f"student_{prev}", "kind": "student",
                   "higher_is_better": True, "uri": model.uri, "version": model.version, "run_id": model.run_id}


def _registry_teachers(params: Params, log: Log) -> list[tuple]:
    """params.teachers.registry_models, each pinned to the version its URI points at now."""
    from vqa.registry import configure_tracking
    from vqa.stack.team import require_allowed_registry
    from vqa.teachers.mlflow_models import resolve

    require_allowed_registry(params)  # loading a pyfunc model runs its code
    configure_tracking(params.mlflow)
    out = []
    for entry in params.teachers.registry_models:
        model = resolve(entry.uri)
        name = entry.name or model.name
        log(f"teach: {entry.uri} -> {model.uri} (run {model.run_id}) joins the teachers as {name!r}")
        out.append((model, {"key": f"mlflow-{model.name}@v{model.version}", "name": name, "kind": "registry",
                            "higher_is_better": entry.higher_is_better, "uri": model.uri, "version": model.version,
                            "run_id": model.run_id}))
    return out


def homogeneous_teacher_names(params: Params) -> list[str]:
    """params.teachers.homogeneous plus the external spec teachers, checked against the registry."""
    from vqa.teachers import register_specs, teacher_class

    names = list(params.teachers.homogeneous)
    try:
        names += [n for n in register_specs(params.teachers.external) if n not in names]
    except (OSError, ValueError) as exc:
        raise ValueError(f"teachers.external: {exc}") from None
    for name in names:
        try:
            teacher_class(name)
        except KeyError as exc:
            raise ValueError(f"teachers.homogeneous: {exc.args[0]}") from None
    return names


def corpus_feature_store(params: Params, cache_root: str | Path = layout.CACHE, load_backbone: bool = True):
    """The student's feature store the teach step fills (and teacher shards, vqa.pipeline.shards)."""
    from vqa.student.features import FeatureStore
    from vqa.student.model import StudentModel

    return FeatureStore(cache_root, StudentModel(_student_config(params), load_backbone=load_backbone))


def teach(params: Params, round_name: str, log: Log = print) -> dict:
    """Score the corpus with every homogeneous teacher; writes the round's score table (a DVC
    output: the pseudo-label artifact fusion reads). Cached per (teacher@version, video hash)."""
    from vqa.teachers import teacher_class
    from vqa.teachers.mlflow_models import score_with_registry_model

    items = _corpus_items()
    names = homogeneous_teacher_names(params)
    teachers = []
    for name in names:
        card = teacher_class(name).card
        teachers.append({"key": card.key, "name": card.name, "kind": card.kind, "higher_is_better": card.higher_is_better,
                         "needs": card.needs, "origin": card.origin})
    # Round 1 also warms the student's feature cache in the same decode (training needs it next).
    store = corpus_feature_store(params)
    result = analyse(items, teacher_names=names, cache_root=layout.CACHE, external_specs=params.teachers.external,
                     key_rate=params.video.key_rate, max_key_frames=params.video.max_key_frames,
                     features=store, workers=params.teachers.workers, log=log)
    scores, failures = dict(result.scores), dict(result.failures)
    failures.pop("features", None)
    from_registry = _registry_teachers(params, log) if params.teachers.registry_models else []
    if params.previous_round(round_name) and params.rounds[round_name].student_as_teacher:
        from_registry.append(_previous_student(params, round_name, log))
    simulated = None
    for model, info in from_registry:
        if info["kind"] == "student":
            scores[info["key"]], failures[info["key"]], simulated = _score_with_student(params, info, items, log)
        else:
            scores[info["key"]], failures[info["key"]] = score_with_registry_model(
                model, items, cache_root=layout.CACHE, key_rate=params.video.key_rate,
                max_key_frames=params.video.max_key_frames, workers=params.teachers.workers, log=log)
        teachers.append(info)
    out = {"round": round_name, "teachers": teachers, "scores": scores, "failures": failures}
    if simulated is not None:
        out["simulated_scores"] = simulated
    atomic_write_json(layout.teacher_scores(round_name), out)
    scored = sum(result.scored.values())
    log(f"teach: {len(teachers)} teachers x {len(items)} videos -> {layout.teacher_scores(round_name)} "
        f"({scored} teacher-video scores computed now, the rest from the cache)")
    return out


def _score_with_student(params: Params, record: dict, items: list[tuple[str, str]], log: Log):
    """The previous student as a teacher, loaded once: its scores of the corpus and failures, and
    its scores of the simulated videos (hard-pair mining; {} when that is off), both from the
    shared feature cache. Its preference model (cutpoints, loss: label refinement by the student
    alone) goes into its teacher record."""
    from vqa.registry import configure_tracking, load_registered_student
    from vqa.scoring import scores_from_features
    from vqa.student.anchors import loss_of
    from vqa.student.features import FeatureStore

    configure_tracking(params.mlflow)
    student, _ = load_registered_student(record["uri"])
    record["loss"] = loss_of(student)
    record["cutpoints"] = [round(float(c), 6) for c in student.cutpoints().detach().tolist()]

    def run(videos):
        return analyse(videos, teacher_names=[], cache_root=layout.CACHE, key_rate=student.config.key_rate,
                       max_key_frames=student.config.max_key_frames, features=FeatureStore(layout.CACHE, student),
                       workers=params.teachers.workers, log=log)

    corpus = run(items)
    simulated = {}
    if params.iteration.hard_synthetic.enabled:
        res = run([(v["id"], v["path"]) for v in _simulated()])
        simulated = {vid: round(s, 6) for vid, s in sorted(scores_from_features(student, res.features).items())}
        log(f"teach: {record['name']} scored {len(simulated)} simulated videos (hard-pair mining)")
    return scores_from_features(student, corpus.features), dict(corpus.failures.get("features", {})), simulated


def fuse(params: Params, round_name: str, log: Log = print) -> dict:
    """Round 1: the weak teachers' random pairs and the simulator pairs. Rounds 2+ (params
    iteration): labels refined with the previous student, hard synthetic and gMAD pairs added,
    and (cumulative) the previous round's pairs carried forward with the new labels."""
    from vqa.fusion import homogeneous_pairs, normalise_scores, simulator_pairs, write_pairs

    table = read_json(layout.teacher_scores(round_name))
    normalised = {t["key"]: normalise_scores(table["scores"].get(t["key"], {}), t["higher_is_better"],
                                          params.fusion.alignment)
                  for t in table["teachers"]}
    seed = _round_seed(params, round_name)
    sims = [(v["id"], v["source_id"], v["level"], v["simulator"]) for v in _simulated()]
    previous = params.previous_round(round_name)
    student = next((t for t in table["teachers"] if t["kind"] == "student"), None)
    if previous is None:
        pairs = homogeneous_pairs(normalised, count=params.fusion.homogeneous_pairs,
                                  min_pair_std=params.fusion.min_pair_std, seed=seed)
        pairs += simulator_pairs(sims, seed=seed, budgets=params.teachers.simulators.pair_budgets())
        pairs = [dataclasses.replace(p, round=round_name) for p in pairs]
    else:
        pairs = _later_round_pairs(params, round_name, previous, table, normalised, student, sims, seed, log)
    write_pairs(layout.pairs(round_name), pairs)
    summary: dict[str, dict[str, int]] = {}
    by_selection: dict[str, dict[str, int]] = {}
    for p in pairs:
        summary.setdefault(p.source, {}).setdefault(p.level_name, 0)
        summary[p.source][p.level_name] += 1
        row = by_selection.setdefault(p.round, {})
        row[p.selection] = row.get(p.selection, 0) + 1
    atomic_write_json(layout.pairs_summary(round_name), {"pairs": len(pairs), "by_source": summary,
                                                          "by_round_and_selection": by_selection})
    log(f"fuse: {len(pairs)} pairs " + json.dumps(summary, sort_keys=True))
    if previous is not None:
        log("fuse: by round and selection " + json.dumps(by_selection, sort_keys=True))
    return summary


def _later_round_pairs(params: Params, round_name: str, previous: str, table: dict, normalised: dict,
                       student: dict | None, sims: list, seed: int, log: Log) -> list:
    from vqa.fusion import iteration as it
    from vqa.fusion import read_pairs

    cfg = params.iteration
    weak = [t["key"] for t in table["teachers"] if t["kind"] != "student"]
    mode = cfg.label_refinement if student else "off"
    if student is None and cfg.label_refinement != "off":
        log(f"fuse: no previous student among the teachers (rounds.{round_name}.student_as_teacher is false): "
            "weak teachers label, and no hard or gMAD pairs are mined")
    labeller = it.make_labeller(normalised, weak, student, mode=mode, student_weight=cfg.student_weight,
                                min_pair_std=params.fusion.min_pair_std,
                                raw_student=table["scores"].get(student["key"]) if student else None)
    earlier = read_pairs(layout.pairs(previous)) if cfg.cumulative else []
    carried = it.carry_forward(earlier, labeller, previous)
    taken = it.pair_keys(carried)
    fresh = it.random_pairs(labeller, cfg.homogeneous_pairs, seed=seed, round_name=round_name, exclude=taken)
    taken |= it.pair_keys(fresh)
    gmad, hard = [], []
    if student and cfg.gmad.enabled:
        # Not excluding pairs already in the set: on a small corpus random pairs cover most of
        # them, and a hard pair chosen again simply weighs more.
        gmad = it.gmad_pairs(labeller, normalised, weak, student["key"], budget=cfg.gmad.pairs, bins=cfg.gmad.bins,
                             seed=seed, round_name=round_name)
    if student and cfg.hard_synthetic.enabled:
        hard = it.hard_synthetic_pairs(sims, table.get("simulated_scores", {}), cutpoints=student.get("cutpoints"),
                                       loss=student.get("loss", "five_level"), budget=cfg.hard_synthetic.pairs,
                                       seed=seed, round_name=round_name)
    if carried:
        changed = sum(1 for old, new in zip(earlier, carried) if old.label != new.label)
        log(f"fuse: {len(carried)} pairs of D1..D{params.round_names().index(previous) + 1} carried forward; "
            f"label refinement ({mode}) changed {changed} labels")
    log(f"fuse: new in {round_name}: {len(fresh)} random teacher pairs, {len(gmad)} gMAD pairs, "
        f"{len(hard)} hard synthetic pairs")
    return carried + fresh + gmad + hard


def train(params: Params, round_name: str, log: Log = print) -> dict:
    """Train the round's student. Frozen backbone: on cached features. Fine-tuning: on cached
    views, with DDP when launched by torchrun. Resumes from artifacts/cache/checkpoints/<round>.pt."""
    from vqa.fusion import read_pairs
    from vqa.student.checkpoint import save_student
    from vqa.student.data import FeatureSource, ViewSource, ViewStore
    from vqa.student.distributed import init_from_env
    from vqa.student.features import FeatureStore
    from vqa.student.model import StudentModel
    from vqa.student.train import pick_device, seed_everything, train_student

    seed = _round_seed(params, round_name)
    seed_everything(seed)
    pairs = read_pairs(layout.pairs(round_name))
    paths = dict(_corpus_items()) | {v["id"]: v["path"] for v in _simulated()}
    needed = sorted({p.a for p in pairs} | {p.b for p in pairs})
    unknown = [v for v in needed if v not in paths]
    if unknown:
        raise ValueError(f"{layout.pairs(round_name)}: {len(unknown)} video ids are in no manifest, e.g. {unknown[0]}")
    ctx, device = init_from_env(pick_device(params.student.device))
    model = StudentModel(_student_config(params))
    frozen = params.student.freeze_backbone
    store = FeatureStore(layout.CACHE, model) if frozen else ViewStore(layout.CACHE, model.config)

    def inputs():
        return analyse([(v, paths[v]) for v in needed], teacher_names=[], cache_root=layout.CACHE,
                       key_rate=params.video.key_rate, max_key_frames=params.video.max_key_frames,
                       features=store, workers=params.teachers.workers, log=log)

    # One process decodes; under torchrun the others wait and then find everything cached.
    res = inputs() if ctx.is_main else None
    ctx.barrier()
    res = res or inputs()
    source = FeatureSource(res.features) if frozen else ViewSource(store, list(res.features),
                                                                   workers=params.student.loader_workers)
    result = train_student(model, pairs, source, params.student, seed=seed, device=device,
                           checkpoint=layout.CACHE / "checkpoints" / f"{round_name}.pt", dist=ctx, log=log)
    trained = result.model.to("cpu")
    if not frozen:  # features of this student are its own: key its feature cache by its weights
        trained.config = dataclasses.replace(trained.config, backbone_weights=trained.backbone_digest())
    out = {"history": result.history, "best_epoch": result.best_epoch, "train_pairs": result.n_train,
           "val_pairs": result.n_val, "skipped_pairs": result.skipped_pairs, "device": device,
           "steps": result.steps, "world_size": ctx.world}
    if ctx.is_main:
        anchors = _choose_anchors(trained, store, res.features, log)
        save_student(layout.student(round_name), trained,
                     meta={"round": round_name, "seed": seed, "loss": params.student.loss, "anchors": anchors})
        atomic_write_json(layout.train_history(round_name), out)
    ctx.barrier()
    return out


def _choose_anchors(model, store, inputs: dict, log: Log) -> dict:
    """Five anchor videos of the corpus (not simulated ones) at the 10..90 % quantiles of the
    student's scores, stored with the student for 0-100 scores (vqa.student.anchors)."""
    import torch

    from vqa.student.anchors import AnchorSet, weights_fingerprint
    from vqa.student.data import FeatureSource, ViewSource, ViewStore

    corpus = dict(_corpus_items())
    ids = sorted(v for v in inputs if v in corpus)
    if len(ids) < 5:
        log(f"train: only {len(ids)} corpus videos have inputs; no anchor set (0-100 scores unavailable)")
        return {}
    source = ViewSource(store, ids, workers=0) if isinstance(store, ViewStore) else FeatureSource(inputs)
    source.prepare(ids, torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        scores = [s for chunk in source.chunks(torch.arange(len(ids)), 16) for s in model.scores(source.inputs(chunk)).tolist()]
    anchors = AnchorSet.choose(ids, scores, model_fingerprint=weights_fingerprint(model),
                               paths=[corpus[v] for v in ids], extra={"corpus_videos": len(ids)})
    log("train: anchors for 0-100 scores: " + ", ".join(f"{Path(p).name} ({s:+.2f})"
                                                       for p, s in zip(anchors.paths, anchors.scores)))
    return dataclasses.asdict(anchors)


def _suite_scores(suite, models: dict, params: Params, log: Log) -> dict[str, dict[str, float]]:
    """Scores (higher = better) of each model on each suite video; teachers via their caches."""
    from vqa.scoring import scores_from_features
    from vqa.student.features import FeatureStore

    ids = {str(it.path): sha256_file(it.path) for it in suite.items}
    items = sorted({(vid, path) for path, vid in ids.items()})
    out: dict[str, dict[str, float]] = {}
    frame_teachers = [m for m in models.values() if m["kind"] == "homogeneous"]
    students = {name: m for name, m in models.items() if m["kind"] == "student"}
    first_store = None
    if students:
        first = next(iter(students.values()))["model"]
        first_store = FeatureStore(layout.CACHE, first)
    res = analyse(items, teacher_names=[m["name"] for m in frame_teachers], cache_root=layout.CACHE,
                  key_rate=params.video.key_rate, max_key_frames=params.video.max_key_frames,
                  features=first_store, external_specs=params.teachers.external,
                  workers=params.teachers.workers, log=log)
    for name, m in models.items():
        if m["kind"] in ("homogeneous", "registry"):
            if m["kind"] == "homogeneous":
                raw = res.scores[m["key"]]
            else:
                from vqa.registry import configure_tracking
                from vqa.stack.team import require_allowed_registry
                from vqa.teachers.mlflow_models import resolve, score_with_registry_model

                require_allowed_registry(params)
                configure_tracking(params.mlflow)
                raw, _ = score_with_registry_model(resolve(m["uri"]), items, cache_root=layout.CACHE,
                                                   key_rate=params.video.key_rate,
                                                   max_key_frames=params.video.max_key_frames,
                                                   workers=params.teachers.workers, log=log)
            sign = 1.0 if m["higher_is_better"] else -1.0
            by_id = {vid: sign * s for vid, s in raw.items()}
        else:
            feats = res.features
            if m["model"].config.feature_fingerprint() != first_store.config.feature_fingerprint():
                feats = analyse(items, teacher_names=[], cache_root=layout.CACHE, key_rate=m["model"].config.key_rate,
                                max_key_frames=m["model"].config.max_key_frames,
                                features=FeatureStore(layout.CACHE, m["model"]), workers=params.teachers.workers,
                                log=log).features
            by_id = scores_from_features(m["model"], feats)
        out[name] = {path: by_id[vid] for path, vid in ids.items() if vid in by_id}
    return out


def evaluate(params: Params, round_name: str, log: Log = print) -> dict:
    from vqa.evaluation import correlate, load_known_order, load_mos_csv
    from vqa.registry import configure_tracking, load_registered_student
    from vqa.student.checkpoint import load_student

    models: dict[str, dict] = {f"student_{round_name}": {"kind": "student", "model": load_student(layout.student(round_name))}}
    for t in read_json(layout.teacher_scores(round_name))["teachers"]:
        if t["kind"] == "student":
            configure_tracking(params.mlflow)
            models[t["name"]] = {"kind": "student", "model": load_registered_student(f"models:/{params.mlflow.model_name}/{t['version']}")[0]}
        else:
            models[t["name"]] = {"kind": t["kind"], "key": t["key"], "name": t["name"],
                                 "higher_is_better": t["higher_is_better"], "uri": t.get("uri")}

    suites = [load_known_order(params.evaluation.known_order_suite)]
    ugc = Path(params.evaluation.ugc_smoke) / "labels.csv"
    if ugc.exists():
        suites.append(load_mos_csv(ugc, "ugc_smoke"))
    else:
        log(f"evaluate: {ugc} not found: the ugc-smoke suite is skipped")

    # Local copies of real benchmarks (params evaluation.benchmarks): evaluated every round.
    from vqa.evaluation.benchmarks import load_benchmark, resolve_benchmarks
    from vqa.evaluation.suites import suite_from_benchmark

    roles = {}
    for spec in resolve_benchmarks(params.evaluation.benchmarks, base=Path.cwd()):
        bench = load_benchmark(spec)
        log(f"evaluate: {bench.summary()}")
        suites.append(suite_from_benchmark(bench))
        roles[bench.name] = spec.role

    metrics = {"round": round_name, "models": {name: {} for name in models}, "suites": {}}
    details = {}
    for suite in suites:
        if suite.missing:
            log(f"evaluate: {suite.name}: {len(suite.missing)} listed videos are missing, e.g. {suite.missing[0]}")
        scores = _suite_scores(suite, models, params, log)
        teachers = [n for n, m in models.items() if m["kind"] in ("homogeneous", "registry")]
        if len(teachers) > 1:  # the fused teacher signal, as fusion sees it (aligned, averaged)
            scores[ENSEMBLE] = _ensemble(scores, teachers, params.fusion.alignment)
            metrics["models"].setdefault(ENSEMBLE, {})
        metrics["suites"][suite.name] = {"videos": len({str(i.path) for i in suite.items}), "missing": len(suite.missing)}
        for name, by_path in scores.items():
            res = correlate(suite, by_path, min_group_size=params.evaluation.min_group_size)
            details.setdefault(suite.name, {})[name] = res
            metrics["models"][name][suite.name] = {k: _finite(res["all"][k]) for k in ("srcc", "plcc")}
            for subset in ("in_domain", "ood"):
                if subset in res:
                    metrics["models"][name][f"{suite.name}_{subset}"] = {k: _finite(res[subset][k]) for k in ("srcc", "plcc")}
        if teachers:
            student = f"student_{round_name}"
            for key, gain in _w2s_gains(suite, scores, student, teachers, details[suite.name], params).items():
                metrics.setdefault("w2s_gain", {})[key] = gain
                log(f"evaluate: W2S gain on {key}: {student} - {gain['best_teacher']} = SRCC "
                    f"{_signed(gain['srcc'])} [{_signed(gain['low'])}, {_signed(gain['high'])}]")
    if roles:
        _overall_by_role(metrics, roles)
    atomic_write_json(layout.metrics(round_name), metrics)
    atomic_write_json(layout.evaluation_details(round_name), details)
    from vqa.evaluation.report import write_round_report

    names = params.round_names()
    earlier = [read_json(layout.metrics(r)) for r in names[: names.index(round_name)] if layout.metrics(r).exists()]
    write_round_report(metrics, earlier, layout.report_dir(round_name))
    log(f"evaluate: wrote {layout.metrics(round_name)} and {layout.report_dir(round_name)}/")
    return metrics


ENSEMBLE = "teacher_ensemble"


def _overall_by_role(metrics: dict, roles: dict[str, str]) -> None:
    """The paper's "overall": per model, SRCC/PLCC over the in-domain (and the OOD) benchmarks,
    weighted by each benchmark's number of scored videos."""
    from vqa.evaluation.metrics import weighted_mean

    sizes = {name: metrics["suites"][name]["videos"] for name in roles}
    for model, row in metrics["models"].items():
        for role in ("in_domain", "ood"):
            names = [n for n, r in roles.items() if r == role and n in row]
            if names:
                row[f"overall_{role}"] = {k: _finite(weighted_mean(
                    [row[n][k] if row[n][k] is not None else math.nan for n in names],
                    [sizes[n] for n in names])) for k in ("srcc", "plcc")}


def _ensemble(scores: dict[str, dict[str, float]], teachers: list[str], alignment: str) -> dict[str, float]:
    """Per video: the mean of the teachers' aligned scores (those that scored it)."""
    import numpy as np

    from vqa.fusion.pairs import normalise_scores

    aligned = [normalise_scores(scores[t], True, alignment) for t in teachers]  # scores are higher = better
    paths = sorted(set().union(*aligned))
    return {p: float(np.mean([a[p] for a in aligned if p in a])) for p in paths}


def _w2s_gains(suite, scores: dict, student: str, teachers: list[str], results: dict, params: Params) -> dict:
    """Student minus the best single teacher (by SRCC on that subset), with a stratified paired
    bootstrap 95 % CI over the suite's groups, for the whole suite and its in-domain/OOD parts."""
    from vqa.evaluation.metrics import grouped_paired_diff

    subsets = [("all", lambda it: True)]
    if suite.kind == "known_order":
        subsets += [("in_domain", lambda it: not it.tags["ood"]), ("ood", lambda it: it.tags["ood"])]
    out = {}
    for subset, keep in subsets:
        ranked = [(results[t][subset]["srcc"], t) for t in teachers if subset in results[t]
                  and math.isfinite(results[t][subset]["srcc"])]
        if not ranked or subset not in results.get(student, {}):
            continue
        best = max(ranked)[1]
        items = [it for it in suite.items if keep(it)]
        diff, low, high = grouped_paired_diff(
            [scores[student].get(str(it.path), math.nan) for it in items],
            [scores[best].get(str(it.path), math.nan) for it in items],
            [it.target for it in items], [it.group for it in items],
            weighted=suite.kind == "mos", min_group_size=params.evaluation.min_group_size, n_boot=1000,
            seed=params.seed)
        key = suite.name if subset == "all" else f"{suite.name}_{subset}"
        out[key] = {"best_teacher": best, "srcc": _finite(diff), "low": _finite(low), "high": _finite(high)}
    return out


def _signed(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _flatten(prefix: str, obj, out: dict) -> dict:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = obj
    return out


def register(params: Params, round_name: str, log: Log = print) -> dict:
    """One MLflow run per round: params, training curve, metrics, pseudo-labels, the model."""
    import mlflow

    from vqa.registry import configure_tracking, log_and_register_student
    from vqa.registry.mlflow_registry import start_or_resume_run

    uri = configure_tracking(params.mlflow)
    teachers = read_json(layout.teacher_scores(round_name))["teachers"]
    history = read_json(layout.train_history(round_name))
    metrics = read_json(layout.metrics(round_name))
    from vqa.registry import lineage as lin

    # DVC hashes of the round's inputs/outputs, git state, remote (vqa/registry/lineage.py)
    lineage = lin.collect(round_name, corpus_videos=params.corpus.videos, suite_dir=params.evaluation.known_order_suite)
    flat = _flatten("", params.model_dump(mode="json"), {})
    # One run and one version per (round, params, student, metrics): a retry after a crash resumes them.
    key = hashlib.sha256(json.dumps([round_name, flat, {k: h["md5"] for k, h in lineage["dvc"].items()}],
                                    sort_keys=True, default=str).encode()).hexdigest()
    with start_or_resume_run(params.mlflow.experiment, round_name, key) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})
        mlflow.set_tags({
            "w2s.round": round_name,
            "w2s.teachers": ",".join(t["name"] for t in teachers),
            "w2s.teacher_versions": ",".join(t.get("version", t["key"]) for t in teachers),
        })
        for row in history["history"]:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch" and v is not None and not math.isnan(v)},
                               step=row["epoch"])
        flat_metrics = {k: v for k, v in _flatten("", metrics["models"], {}).items() if isinstance(v, (int, float))}
        mlflow.log_metrics(flat_metrics)
        gains = metrics.get("w2s_gain", {})  # student minus the best teacher, with its CI
        mlflow.log_metrics({f"w2s_gain.{suite}.{k}": v for suite, g in gains.items() for k, v in g.items()
                            if k in ("srcc", "low", "high") and v is not None})
        mlflow.set_tags({f"w2s_gain.{suite}.best_teacher": g["best_teacher"] for suite, g in gains.items()})
        for path in (layout.pairs(round_name), layout.pairs_summary(round_name), layout.teacher_scores(round_name),
                     layout.train_history(round_name), layout.metrics(round_name), layout.evaluation_details(round_name)):
            mlflow.log_artifact(str(path), artifact_path="round")
        mlflow.log_artifacts(str(layout.report_dir(round_name)), artifact_path="report")
        lin.log_to_run(lineage)
        reg = log_and_register_student(layout.student(round_name), params.mlflow, aliases=[params.mlflow.teacher_alias])
        lin.tag_model_version(reg.name, reg.version, lineage, run_id=reg.run_id)
        from vqa.registry.champion import ood_figure, update_champion

        figure, value = ood_figure(metrics, f"student_{round_name}")
        champion = update_champion(reg.name, reg.version, figure, value, alias=params.mlflow.champion_alias)
        mlflow.set_tags({f"champion.{k}": str(v) for k, v in champion.items()})
    out = {"model_name": reg.name, "version": reg.version, "run_id": reg.run_id, "uri": reg.uri,
           "alias": params.mlflow.teacher_alias, "tracking_uri": uri, "champion": champion}
    atomic_write_json(layout.registered(round_name), out)
    log(f"register: {reg.name} version {reg.version} (run {run.info.run_id}); @{params.mlflow.teacher_alias} -> {reg.version}")
    log(f"register: @{champion['alias']} {'-> ' + reg.version if champion['promoted'] else 'stays'}: {champion['reason']}")
    return out

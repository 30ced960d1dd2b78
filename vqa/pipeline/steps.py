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
        pooling=s.pooling,
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


def validation_set(params: Params, corpus_ids) -> set[str]:
    """The corpus videos held out for validation (vqa.fusion.split): the same in every step."""
    from vqa.fusion.split import validation_videos

    return validation_videos(corpus_ids, params.validation.fraction, params.seed)


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
    from vqa.teachers.simulators import CODEC_SIMULATORS, Extent, pick_sources, simulate_codec, simulate_frames

    sims = params.teachers.simulators
    extent = Extent(params.teachers.simulation.max_side, params.teachers.simulation.max_seconds)
    videos: list[dict] = []
    items: dict[str, str] = {}
    held_out: set[str] = set()
    # A fixed seed offset per simulator (h264's 0 predates the others): each draws its own
    # subset, stable when other types are added, removed or resized.
    offsets = {"h264": 0, "blur": 1, "noise": 2, "resize": 3, "darken": 4, "brighten": 5, "jitter": 6,
               "stutter": 7, "h265": 8}
    for name in type(sims).model_fields:
        cfg = getattr(sims, name)
        if not (cfg.enabled and cfg.sources):
            continue
        if not items:
            items = dict(_corpus_items())
            held_out = validation_set(params, items)
        chosen = pick_sources(list(items), cfg.sources, params.seed + offsets[name], validation=held_out,
                              validation_share=params.validation.source_share)
        pick = [(vid, items[vid]) for vid in chosen]
        out = layout.SIMULATED / "videos"
        if name in CODEC_SIMULATORS:
            made = simulate_codec(pick, out, simulator=name, crfs=cfg.crf_levels, preset=cfg.preset,
                                  workers=params.teachers.workers, extent=extent)
            levels = f"CRF {cfg.crf_levels} ({cfg.preset})"
        else:
            made = simulate_frames(pick, out, simulator=name, levels=cfg.levels, seed=params.seed,
                                   workers=params.teachers.workers, crf=cfg.crf, extent=extent)
            levels = str(cfg.levels)
        for v in made:
            videos.append({"id": sha256_file(v.path), "path": v.path, "source_id": v.source_id,
                           "simulator": v.simulator, "level": v.level, "param": v.param})
        n_val = sum(1 for v in chosen if v in held_out)
        log(f"simulate: {name} at {levels} on {len(chosen)} sources ({n_val} of them validation videos) "
            f"-> {len(made)} videos")
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
    """Score the corpus and the simulated videos with every homogeneous teacher and calibrate the
    teachers (vqa/fusion/calibration.py); writes the round's score table (a DVC output: what
    fusion reads). Scores are cached per (teacher@version, video hash)."""
    from vqa.teachers import teacher_class
    from vqa.teachers.mlflow_models import score_with_registry_model

    items = _corpus_items()
    sims = _simulated()
    sim_items = [(v["id"], v["path"]) for v in sims]
    names = homogeneous_teacher_names(params)
    teachers = []
    for name in names:
        card = teacher_class(name).card
        teachers.append({"key": card.key, "name": card.name, "kind": card.kind, "higher_is_better": card.higher_is_better,
                         "needs": card.needs, "origin": card.origin})
    # One decode per video: the teachers, and the student's features that training needs next.
    store = corpus_feature_store(params)
    result = analyse(items + sim_items, teacher_names=names, cache_root=layout.CACHE,
                     external_specs=params.teachers.external, key_rate=params.video.key_rate,
                     max_key_frames=params.video.max_key_frames, features=store, workers=params.teachers.workers,
                     log=log)
    corpus_ids = {vid for vid, _ in items}
    sim_ids = {vid for vid, _ in sim_items}

    def part(table: dict, ids: set[str]) -> dict:
        return {k: {v: x for v, x in per.items() if v in ids} for k, per in table.items()}

    scores, failures = part(result.scores, corpus_ids), part(result.failures, corpus_ids)
    simulated = part(result.scores, sim_ids)
    failures.pop("features", None)
    from_registry = _registry_teachers(params, log) if params.teachers.registry_models else []
    if params.previous_round(round_name) and params.rounds[round_name].student_as_teacher:
        from_registry.append(_previous_student(params, round_name, log))
    for model, info in from_registry:
        if info["kind"] == "student":
            scores[info["key"]], failures[info["key"]], simulated[info["key"]] = _score_with_student(
                params, info, items, log)
        else:
            both, failed = score_with_registry_model(
                model, items + sim_items, cache_root=layout.CACHE, key_rate=params.video.key_rate,
                max_key_frames=params.video.max_key_frames, workers=params.teachers.workers, log=log)
            scores[info["key"]], failures[info["key"]] = part({0: both}, corpus_ids)[0], part({0: failed}, corpus_ids)[0]
            simulated[info["key"]] = part({0: both}, sim_ids)[0]
        teachers.append(info)
    calibration = _calibrate(params, [t for t in teachers if t["kind"] != "student"], scores, simulated, sims, log)
    out = {"round": round_name, "teachers": teachers, "calibration": calibration, "scores": scores,
           "failures": failures,
           "simulated": {k: {v: round(x, 6) for v, x in sorted(per.items())} for k, per in simulated.items()}}
    atomic_write_json(layout.teacher_scores(round_name), out)
    scored = sum(result.scored.values())
    log(f"teach: {len(teachers)} teachers x {len(items)} corpus + {len(sim_items)} simulated videos -> "
        f"{layout.teacher_scores(round_name)} ({scored} teacher-video scores computed now, the rest from the cache)")
    return out


def _calibrate(params: Params, weak: list[dict], scores: dict, simulated: dict, sims: list[dict], log: Log) -> list[dict]:
    """The weak teachers' calibration on the training side of the split: corpus videos that are
    not validation videos, and the simulated versions of their sources."""
    from vqa.fusion.calibration import calibrate

    held_out = validation_set(params, {v for per in scores.values() for v in per})
    corpus = {k: {v: x for v, x in per.items() if v not in held_out} for k, per in scores.items()}
    versions = [(v["id"], v["source_id"], v["level"], v["simulator"]) for v in sims if v["source_id"] not in held_out]
    cfg = params.fusion.calibration
    records = calibrate(weak, corpus, simulated, versions, enabled=cfg.enabled, accuracy_margin=cfg.accuracy_margin,
                        agreement_margin=cfg.agreement_margin, reversed_action=cfg.reversed, weights=cfg.weights,
                        max_weight=cfg.max_weight, alignment=params.fusion.alignment)
    for r in records:
        acc = "n/a" if r.known_order_accuracy is None else f"{r.known_order_accuracy:.3f}"
        agr = "n/a" if r.corpus_agreement is None else f"{r.corpus_agreement:+.3f}"
        log(f"teach: calibration {r.name}: known-order accuracy {acc} ({r.known_order_pairs} pairs), corpus "
            f"agreement {agr} -> {r.direction}, {r.action}, weight {r.weight:.2f}")
    return [r.to_dict() for r in records]


def _score_with_student(params: Params, record: dict, items: list[tuple[str, str]], log: Log):
    """The previous student as a teacher, loaded once: its scores of the corpus and failures, and
    its scores of the simulated videos (hard-pair mining and the validation figure), both from
    the shared feature cache. Its preference model (cutpoints, loss: label refinement by the student
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
    res = run([(v["id"], v["path"]) for v in _simulated()])
    simulated = scores_from_features(student, res.features)
    log(f"teach: {record['name']} scored {len(simulated)} simulated videos")
    return scores_from_features(student, corpus.features), dict(corpus.failures.get("features", {})), simulated


def fuse(params: Params, round_name: str, log: Log = print) -> dict:
    """Round 1: random teacher pairs labelled by the calibrated teachers' rule, and the simulator
    pairs. Rounds 2+ (params iteration): labels refined with the previous student, hard synthetic
    and gMAD pairs added, and (cumulative) the previous round's pairs carried forward with the new
    labels. Training pairs never touch a validation video; validation pairs are made the same way
    among validation videos (vqa/fusion/split.py)."""
    from vqa.fusion import Labeller, random_pairs, simulator_pairs, write_pairs

    table = read_json(layout.teacher_scores(round_name))
    normalised, weights = aligned_teachers(params, table)
    corpus = sorted({v for per in table["scores"].values() for v in per})
    held_out = validation_set(params, corpus)
    split_ids = {"train": [v for v in corpus if v not in held_out], "val": [v for v in corpus if v in held_out]}
    counts = {"train": params.fusion.homogeneous_pairs, "val": params.validation.teacher_pairs}
    seed = _round_seed(params, round_name)
    sims = [(v["id"], v["source_id"], v["level"], v["simulator"]) for v in _simulated()]
    previous = params.previous_round(round_name)
    if previous is None:
        labeller = Labeller(normalised, weights, params.fusion.min_pair_std, rule=params.fusion.rule)
        pairs = [p for split, ids in split_ids.items()
                 for p in random_pairs(labeller, counts[split], seed=seed + (split == "val"), round_name=round_name,
                                       split=split, videos=ids)]
        pairs += [dataclasses.replace(p, round=round_name) for p in simulator_pairs(
            sims, seed=seed, budgets=params.teachers.simulators.pair_budgets(), validation=held_out)]
    else:
        pairs = _later_round_pairs(params, round_name, previous, table, normalised, weights, sims, split_ids,
                                   counts, held_out, seed, log)
    write_pairs(layout.pairs(round_name), pairs)
    summary = pair_summary(pairs, params.fusion.collapse_warning)
    atomic_write_json(layout.pairs_summary(round_name), summary)
    log(f"fuse: {len(pairs)} pairs ({summary['by_split']['train']} train, {summary['by_split'].get('val', 0)} "
        f"validation) " + json.dumps(summary["by_kind"], sort_keys=True))
    log("fuse: level shares of the training pairs by kind " + json.dumps(summary["labels"], sort_keys=True))
    for warning in summary["warnings"]:
        log(f"fuse: WARNING: {warning}")
    if previous is not None:
        log("fuse: by round and selection " + json.dumps(summary["by_round_and_selection"], sort_keys=True))
    return summary


def aligned_teachers(params: Params, table: dict) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Each teacher's corpus scores on the common scale, in the direction calibration chose, and
    the weak teachers' weights (a dropped teacher weighs 0; the student is weighted by the
    labeller, vqa.fusion.iteration.make_labeller)."""
    from vqa.fusion import normalise_scores

    calibration = {c["key"]: c for c in table.get("calibration", [])}
    normalised, weights = {}, {}
    for t in table["teachers"]:
        c = calibration.get(t["key"])
        higher = t["higher_is_better"] if c is None else t["higher_is_better"] != (c["action"] == "flip")
        normalised[t["key"]] = normalise_scores(table["scores"].get(t["key"], {}), higher, params.fusion.alignment)
        if t["kind"] != "student":
            weights[t["key"]] = 1.0 if c is None else float(c["weight"])
    return normalised, weights


def pair_summary(pairs: list, collapse: float) -> dict:
    """Counts by kind, split, source, round and selection; the five-level shares of the training
    pairs of each kind; a warning when one level holds more than `collapse` of the teacher pairs."""
    from vqa.fusion import LEVEL_NAMES, level_shares

    by_source: dict[str, dict[str, int]] = {}
    by_kind: dict[str, dict[str, int]] = {}
    by_selection: dict[str, dict[str, int]] = {}
    levels: dict[str, list[int]] = {}
    by_split: dict[str, int] = {"train": 0}
    for p in pairs:
        row = by_source.setdefault(p.source, {})
        row[p.level_name] = row.get(p.level_name, 0) + 1
        row = by_kind.setdefault(p.kind, {})
        row[p.split] = row.get(p.split, 0) + 1
        row = by_selection.setdefault(p.round, {})
        row[p.selection] = row.get(p.selection, 0) + 1
        by_split[p.split] = by_split.get(p.split, 0) + 1
        if p.split == "train":
            levels.setdefault(p.kind, []).append(p.label)
    labels = {kind: level_shares(v) for kind, v in sorted(levels.items())}
    warnings = []
    teacher = labels.get("teacher")
    if teacher:
        top = max(LEVEL_NAMES, key=lambda k: teacher[k])
        if teacher[top] > collapse:
            warnings.append(f"{teacher[top]:.0%} of the teacher pairs are {top!r} (more than {collapse:.0%}): "
                            "the teachers' signal barely reaches the labels (see fusion.rule, fusion.calibration)")
    return {"pairs": len(pairs), "by_split": by_split, "by_kind": by_kind, "labels": labels, "warnings": warnings,
            "by_source": by_source, "by_round_and_selection": by_selection}


def _later_round_pairs(params: Params, round_name: str, previous: str, table: dict, normalised: dict, weights: dict,
                       sims: list, split_ids: dict, counts: dict, held_out: set[str], seed: int, log: Log) -> list:
    from vqa.fusion import iteration as it
    from vqa.fusion import random_pairs, read_pairs

    cfg = params.iteration
    student = next((t for t in table["teachers"] if t["kind"] == "student"), None)
    mode = cfg.label_refinement if student else "off"
    if student is None and cfg.label_refinement != "off":
        log(f"fuse: no previous student among the teachers (rounds.{round_name}.student_as_teacher is false): "
            "weak teachers label, and no hard or gMAD pairs are mined")
    labeller = it.make_labeller(normalised, weights, student, mode=mode, student_weight=cfg.student_weight,
                                min_pair_std=params.fusion.min_pair_std, rule=params.fusion.rule,
                                raw_student=table["scores"].get(student["key"]) if student else None)
    earlier = read_pairs(layout.pairs(previous)) if cfg.cumulative else []
    carried = it.carry_forward(earlier, labeller, previous)
    taken = it.pair_keys(carried)
    fresh = [p for split, ids in split_ids.items()
             for p in random_pairs(labeller, cfg.homogeneous_pairs if split == "train" else counts["val"],
                                   seed=seed + (split == "val"), round_name=round_name, split=split, videos=ids,
                                   exclude=taken)]
    taken |= it.pair_keys(fresh)
    gmad, hard = [], []
    train_only = {k: {v: z for v, z in per.items() if v not in held_out} for k, per in normalised.items()}
    weak = [k for k, w in weights.items() if w > 0]
    if student and cfg.gmad.enabled:
        # Not excluding pairs already in the set: on a small corpus random pairs cover most of
        # them, and a hard pair chosen again simply weighs more.
        gmad = it.gmad_pairs(labeller, train_only, weak, student["key"], budget=cfg.gmad.pairs, bins=cfg.gmad.bins,
                             seed=seed, round_name=round_name)
    if student and cfg.hard_synthetic.enabled:
        hard = it.hard_synthetic_pairs([v for v in sims if v[1] not in held_out],
                                       table.get("simulated", {}).get(student["key"], {}),
                                       cutpoints=student.get("cutpoints"), loss=student.get("loss", "five_level"),
                                       budget=cfg.hard_synthetic.pairs, seed=seed, round_name=round_name)
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


def validation_suite(params: Params) -> "Suite | None":
    """The validation set's figure as a suite: the simulated versions of the validation videos,
    graded by their known level inside each (source, simulator) group. It chooses the champion
    and the defaults; no reported suite or benchmark does."""
    from vqa.evaluation.suites import Suite, SuiteItem

    from vqa.fusion.split import is_validation

    items = [SuiteItem(Path(v["path"]), f"{v['source_id'][:12]}/{v['simulator']}", -float(v["level"]),
                       {"ood": False, "source": v["source_id"]}) for v in _simulated()
             if is_validation(v["source_id"], params.validation.fraction, params.seed)]
    return Suite(VALIDATION, items, "validation") if items else None


def evaluate(params: Params, round_name: str, log: Log = print) -> dict:
    from vqa.evaluation import correlate, load_known_order, load_mos_csv
    from vqa.registry import configure_tracking, load_registered_student
    from vqa.student.checkpoint import load_student

    table = read_json(layout.teacher_scores(round_name))
    models: dict[str, dict] = {f"student_{round_name}": {"kind": "student", "model": load_student(layout.student(round_name))}}
    for t in table["teachers"]:
        if t["kind"] == "student":
            configure_tracking(params.mlflow)
            models[t["name"]] = {"kind": "student", "model": load_registered_student(f"models:/{params.mlflow.model_name}/{t['version']}")[0]}
        else:
            models[t["name"]] = {"kind": t["kind"], "key": t["key"], "name": t["name"],
                                 "higher_is_better": t["higher_is_better"], "uri": t.get("uri")}
    calibration = {c["key"]: c for c in table.get("calibration", [])}

    suites = [s for s in [validation_suite(params)] if s is not None]
    suites.append(load_known_order(params.evaluation.known_order_suite))
    if params.evaluation.ugc_smoke:
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
        if spec.optional and not spec.labels.exists():
            log(f"evaluate: {spec.name}: {spec.labels} not found: skipped (optional)")
            continue
        bench = load_benchmark(spec)
        log(f"evaluate: {bench.summary()}")
        suites.append(suite_from_benchmark(bench))
        roles[bench.name] = spec.role

    metrics = {"round": round_name, "models": {name: {} for name in models}, "suites": {}}
    details = {}
    teachers = [n for n, m in models.items() if m["kind"] in ("homogeneous", "registry")]
    student = f"student_{round_name}"
    for suite in suites:
        if suite.missing:
            log(f"evaluate: {suite.name}: {len(suite.missing)} listed videos are missing, e.g. {suite.missing[0]}")
        scores = _suite_scores(suite, models, params, log)
        if len(teachers) > 1:  # the fused teacher signal, as fusion sees it (calibrated, aligned, weighted)
            scores[ENSEMBLE] = fused_ensemble(scores, {n: models[n]["key"] for n in teachers}, calibration,
                                              params.fusion.alignment)
            metrics["models"].setdefault(ENSEMBLE, {})
        metrics["suites"][suite.name] = {"videos": len({str(i.path) for i in suite.items}), "missing": len(suite.missing)}
        for name, by_path in scores.items():
            res = correlate(suite, by_path, min_group_size=params.evaluation.min_group_size)
            details.setdefault(suite.name, {})[name] = res
            for key, sub in _subsets(suite, res, params.evaluation.report_group_min).items():
                metrics["models"][name][key] = {k: _finite(sub[k]) for k in ("srcc", "plcc")}
        if teachers and suite.kind != "validation":
            for key, gain in _w2s_gains(suite, scores, student, teachers, details[suite.name], params).items():
                metrics.setdefault("w2s_gain", {})[key] = gain
                vs = gain.get("vs_ensemble") or {}
                log(f"evaluate: W2S gain on {key}: {student} - {gain['best_teacher']} = SRCC "
                    f"{_signed(gain['srcc'])} [{_signed(gain['low'])}, {_signed(gain['high'])}]"
                    + (f"; - {ENSEMBLE} = {_signed(vs.get('srcc'))} [{_signed(vs.get('low'))}, "
                       f"{_signed(vs.get('high'))}]" if vs else ""))
    if roles:
        _overall_by_role(metrics, roles)
    if layout.pairs_summary(round_name).exists():
        summary = read_json(layout.pairs_summary(round_name))
        metrics["labels"] = summary.get("labels", {})
        metrics["warnings"] = summary.get("warnings", [])
    if calibration:
        metrics["calibration"] = {c["name"]: {k: c[k] for k in ("known_order_accuracy", "corpus_agreement",
                                                                 "direction", "action", "weight")}
                                  for c in calibration.values()}
    atomic_write_json(layout.metrics(round_name), metrics)
    atomic_write_json(layout.evaluation_details(round_name), details)
    from vqa.evaluation.report import write_round_report

    names = params.round_names()
    earlier = [read_json(layout.metrics(r)) for r in names[: names.index(round_name)] if layout.metrics(r).exists()]
    write_round_report(metrics, earlier, layout.report_dir(round_name))
    for warning in metrics.get("warnings", []):
        log(f"evaluate: WARNING (fusion): {warning}")
    log(f"evaluate: wrote {layout.metrics(round_name)} and {layout.report_dir(round_name)}/")
    return metrics


ENSEMBLE = "teacher_ensemble"
VALIDATION = "validation"


def group_key(suite: str, group: str) -> str:
    """metrics key of one group of a MOS suite, e.g. ugc_mos / KoNViD-1k -> ugc_mos_konvid_1k."""
    slug = "".join(c if c.isalnum() else "_" for c in group.lower()).strip("_")
    return f"{suite}_{slug}"


def _subsets(suite, res: dict, group_min: int) -> dict[str, dict]:
    """metrics key -> correlation summary: the whole suite; a known-order suite's in-domain and
    OOD parts; a MOS suite's groups of at least `group_min` videos (reported on their own)."""
    out = {suite.name: res["all"]}
    for subset in ("in_domain", "ood"):
        if subset in res and res[subset]["groups"]:
            out[f"{suite.name}_{subset}"] = res[subset]
    if suite.kind == "mos":
        for group, g in res["groups"].items():
            if g["n"] >= group_min:
                out[group_key(suite.name, group)] = g
    return out


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


def fused_ensemble(scores: dict[str, dict[str, float]], teacher_keys: dict[str, str], calibration: dict,
                   alignment: str) -> dict[str, float]:
    """Per video, the teachers' mean as fusion forms it (vqa.fusion.rules.ensemble_moments): each
    teacher's scores (higher = better as declared) aligned, flipped where calibration flips it,
    and weighted by its calibrated weight (equal without calibration)."""
    from vqa.fusion import normalise_scores
    from vqa.fusion.rules import ensemble_moments

    aligned, weights = {}, {}
    for name, key in teacher_keys.items():
        c = calibration.get(key)
        flip = c is not None and c["action"] == "flip"
        aligned[name] = normalise_scores(scores[name], not flip, alignment)
        weights[name] = 1.0 if c is None else float(c["weight"])
    if not any(w > 0 for w in weights.values()):
        weights = {n: 1.0 for n in weights}
    return {v: m.mean for v, m in sorted(ensemble_moments(aligned, weights).items())}


def _w2s_gains(suite, scores: dict, student: str, teachers: list[str], results: dict, params: Params) -> dict:
    """Student minus the best single teacher (by SRCC on that subset), and student minus the
    teacher ensemble, each with a stratified paired bootstrap 95 % CI over the suite's groups: for
    the whole suite, its in-domain/OOD parts, and a MOS suite's large groups on their own."""
    from vqa.evaluation.metrics import grouped_paired_diff

    subsets = [("all", suite.name, lambda it: True)]
    if suite.kind == "known_order":
        subsets += [("in_domain", f"{suite.name}_in_domain", lambda it: not it.tags["ood"]),
                    ("ood", f"{suite.name}_ood", lambda it: it.tags["ood"])]
    if suite.kind == "mos":
        big = [g for g, r in results.get(student, {}).get("groups", {}).items()
               if r["n"] >= params.evaluation.report_group_min]
        subsets += [(("group", g), group_key(suite.name, g), (lambda it, g=g: it.group == g)) for g in big]

    def summary(name, subset):
        r = results.get(name, {})
        if isinstance(subset, tuple):
            return r.get("groups", {}).get(subset[1])
        return r.get(subset)

    def diff(other, keep):
        items = [it for it in suite.items if keep(it)]
        d, low, high = grouped_paired_diff(
            [scores[student].get(str(it.path), math.nan) for it in items],
            [scores[other].get(str(it.path), math.nan) for it in items],
            [it.target for it in items], [it.group for it in items],
            weighted=suite.kind == "mos", min_group_size=params.evaluation.min_group_size, n_boot=1000,
            seed=params.seed)
        return {"srcc": _finite(d), "low": _finite(low), "high": _finite(high)}

    out = {}
    for subset, key, keep in subsets:
        ranked = [(summary(t, subset)["srcc"], t) for t in teachers
                  if summary(t, subset) is not None and math.isfinite(summary(t, subset)["srcc"])]
        if not ranked or summary(student, subset) is None:
            continue
        best = max(ranked)[1]
        out[key] = {"best_teacher": best, **diff(best, keep)}
        if ENSEMBLE in scores:
            out[key]["vs_ensemble"] = diff(ENSEMBLE, keep)
    return out


def _signed(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def _finite(x: float) -> float | None:
    # 3 decimals: tracked metrics must match across machines, and the 4th moves with the summation
    # order of another CPU's BLAS (seen: PLCC -0.1242 vs -0.1243); the CIs are a hundred times wider.
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 3)


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
        # student minus the best teacher and minus the ensemble, with CIs; label shares; calibration
        numbers = {f"w2s_gain.{k}": v for k, v in _flatten("", metrics.get("w2s_gain", {}), {}).items()
                   if isinstance(v, (int, float))}
        numbers |= {f"labels.{k}": v for k, v in _flatten("", metrics.get("labels", {}), {}).items()}
        numbers |= {f"calibration.{k}": v for k, v in _flatten("", metrics.get("calibration", {}), {}).items()
                    if isinstance(v, (int, float))}
        mlflow.log_metrics(numbers)
        mlflow.set_tags({f"w2s_gain.{suite}.best_teacher": g["best_teacher"]
                         for suite, g in metrics.get("w2s_gain", {}).items()})
        mlflow.set_tags({f"calibration.{name}": f"{c['direction']}, {c['action']}"
                         for name, c in metrics.get("calibration", {}).items()})
        for path in (layout.pairs(round_name), layout.pairs_summary(round_name), layout.teacher_scores(round_name),
                     layout.train_history(round_name), layout.metrics(round_name), layout.evaluation_details(round_name)):
            mlflow.log_artifact(str(path), artifact_path="round")
        mlflow.log_artifacts(str(layout.report_dir(round_name)), artifact_path="report")
        lin.log_to_run(lineage)
        reg = log_and_register_student(layout.student(round_name), params.mlflow, aliases=[params.mlflow.teacher_alias])
        lin.tag_model_version(reg.name, reg.version, lineage, run_id=reg.run_id)
        from vqa.registry.champion import selection_figure, update_champion

        figure, value = selection_figure(metrics, f"student_{round_name}")
        champion = update_champion(reg.name, reg.version, figure, value, alias=params.mlflow.champion_alias)
        mlflow.set_tags({f"champion.{k}": str(v) for k, v in champion.items()})
    out = {"model_name": reg.name, "version": reg.version, "run_id": reg.run_id, "uri": reg.uri,
           "alias": params.mlflow.teacher_alias, "tracking_uri": uri, "champion": champion}
    atomic_write_json(layout.registered(round_name), out)
    log(f"register: {reg.name} version {reg.version} (run {run.info.run_id}); @{params.mlflow.teacher_alias} -> {reg.version}")
    log(f"register: @{champion['alias']} {'-> ' + reg.version if champion['promoted'] else 'stays'}: {champion['reason']}")
    return out

"""Labelled pairs: the two kinds the first round makes, and the pairs file.

A label is the preference of video A over video B on five levels, stored as an integer:
0 inferior, 1 worse, 2 similar, 3 better, 4 superior (A much better than B).

Teacher pairs: every teacher's scores are first put on one scale (rank -> standard normal
quantile, sign flipped for lower-is-better teachers: a robust, label-free stand-in for the paper's
logistic mapping), then a `Labeller` (vqa/fusion/rules.py, the one home of the rule) labels
random pairs of videos from the teachers' weighted mean and spread.

Simulator pairs: two versions of one source at levels i < j (j more distorted) are superior when
j - i > 1 and better when j - i = 1 ("similar" is never used).
"""
from __future__ import annotations

import csv
import io
import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import norm, rankdata

from vqa.fusion.rules import LEVEL_NAMES, Labeller, preference_level  # noqa: F401 (re-exported)
from vqa.io import atomic_write_text


@dataclass(frozen=True)
class Pair:
    a: str  # video id
    b: str
    label: int  # 0..4, see LEVEL_NAMES
    source: str  # "homogeneous" or the simulator's name
    d: float = math.nan  # teacher pairs: m_A - m_B; simulator pairs: level_B - level_A
    s: float = math.nan
    selection: str = "random"  # how the pair was chosen: random, gmad, hard (vqa.fusion.iteration)
    round: str = ""  # the round that first chose it (cumulative sets carry earlier rounds' pairs)
    split: str = "train"  # train, or val: both videos are validation videos (vqa.fusion.split)

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.label]

    @property
    def kind(self) -> str:
        """What the training mix weighs it as (params student.mix): teacher, simulator, gmad, hard."""
        if self.selection in ("gmad", "hard"):
            return self.selection
        return "teacher" if self.source == HOMOGENEOUS else "simulator"


HOMOGENEOUS = "homogeneous"
PAIR_KINDS = ("teacher", "simulator", "gmad", "hard")


ALIGNMENTS = ("rank_normal", "robust_z")


def normalise_scores(scores: dict[str, float], higher_is_better: bool, method: str = "rank_normal") -> dict[str, float]:
    """Put one teacher's scores on the common scale, higher = better, about N(0, 1).

    rank_normal: N(0,1) quantiles of the ranks (ties share a rank); immune to each teacher's
    range, skew and outliers. robust_z: (x - median) / (1.4826 MAD), which keeps the teacher's
    own spacing (a teacher with no spread, MAD 0, falls back to the standard deviation, then 1).
    Videos a teacher failed on are simply absent: fusion uses the teachers that scored them.
    """
    if method not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {method!r}; expected one of {ALIGNMENTS}")
    ids = sorted(scores)
    if not ids:
        return {}
    values = np.array([scores[i] for i in ids], dtype=np.float64)
    if method == "robust_z":
        x = values if higher_is_better else -values
        med = np.median(x)
        spread = 1.4826 * np.median(np.abs(x - med))
        if not spread > 0:
            spread = float(np.std(x)) or 1.0
        return dict(zip(ids, ((x - med) / spread).tolist()))
    ranks = rankdata(values if higher_is_better else -values, method="average")
    z = norm.ppf((ranks - 0.5) / len(ids))
    return dict(zip(ids, z.tolist()))


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def labelled_pair(labeller: Labeller, a: str, b: str, selection: str = "random", round_name: str = "",
                  split: str = "train") -> Pair | None:
    """A teacher pair of A and B with the labeller's level, or None when it cannot label them."""
    got = labeller.label(a, b)
    if got is None:
        return None
    return Pair(a, b, got[0], HOMOGENEOUS, got[1], got[2], selection, round_name, split)


def random_pairs(labeller: Labeller, count: int, *, seed: int, round_name: str = "", split: str = "train",
                 videos: list[str] | None = None, exclude: set[tuple[str, str]] = frozenset()) -> list[Pair]:
    """`count` distinct random pairs of `videos` (default: every video the labeller can label),
    none in `exclude`, labelled by `labeller`; seeded, order of A/B random."""
    ids = sorted(videos) if videos is not None else labeller.videos()
    n, known = len(ids), set(ids)
    seen = {k for k in exclude if k[0] in known and k[1] in known}
    total = n * (n - 1) // 2
    count = max(0, min(count, total - len(seen)))
    rng = np.random.default_rng(seed)
    out: list[Pair] = []
    while len(out) < count and len(seen) < total:
        i, j = rng.choice(n, size=2, replace=False).tolist()
        key = _key(ids[i], ids[j])
        if key in seen:
            continue
        seen.add(key)
        p = labelled_pair(labeller, ids[i], ids[j], "random", round_name, split)
        if p is not None:
            out.append(p)
    return out


def homogeneous_pairs(normalised: dict[str, dict[str, float]], *, count: int, min_pair_std: float, seed: int,
                      rule: str = "paper", weights: dict[str, float] | None = None) -> list[Pair]:
    """`count` random pairs of all scored videos labelled by the (weighted) teachers' rule."""
    weights = weights if weights is not None else {k: 1.0 for k in normalised}
    return random_pairs(Labeller(normalised, weights, min_pair_std, rule=rule), count, seed=seed)


def known_order_pairs(versions: list[tuple[str, str, int, str]]):
    """Every two versions of one source at different levels, sources in sorted order: yields
    (simulator, less distorted id, more distorted id, label of the first over the second, level gap)."""
    by_source: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for vid, source_id, level, simulator in versions:
        by_source.setdefault((simulator, source_id), []).append((level, vid))
    for (simulator, _), items in sorted(by_source.items()):
        items.sort()
        for x in range(len(items)):
            for y in range(x + 1, len(items)):
                (li, vi), (lj, vj) = items[x], items[y]
                if li != lj:
                    yield simulator, vi, vj, (4 if lj - li > 1 else 3), lj - li


def simulator_pairs(
    versions: list[tuple[str, str, int, str]], *, seed: int, budgets: dict[str, int | None] | None = None,
    validation: set[str] = frozenset(),
) -> list[Pair]:
    """All pairs of versions of each source. `versions`: (video_id, source_id, level, simulator).

    `budgets`: per simulator, the most training pairs kept (None or absent: all). A type over
    budget keeps a uniform sample drawn with its own generator (seed, name), so one type's budget
    never changes another's pairs; kept pairs stay in their original order. Versions of a source
    in `validation` (ids of validation videos) give validation pairs, all of them.
    """
    rng = np.random.default_rng(seed)
    by_type: dict[str, list[Pair]] = {}
    held_out: list[Pair] = []
    source_of = {v[0]: v[1] for v in versions}
    for simulator, vi, vj, label, gap in known_order_pairs(versions):
        split = "val" if source_of[vi] in validation else "train"
        pairs = held_out if split == "val" else by_type.setdefault(simulator, [])
        if rng.random() < 0.5:  # present both orders so the student sees both
            pairs.append(Pair(vi, vj, label, simulator, float(gap), split=split))
        else:
            pairs.append(Pair(vj, vi, 4 - label, simulator, float(-gap), split=split))
    out: list[Pair] = []
    for simulator, pairs in by_type.items():
        budget = (budgets or {}).get(simulator)
        if budget is not None and budget < 0:
            raise ValueError(f"pair budget of {simulator!r} must be >= 0 or None, got {budget}")
        if budget is not None and budget < len(pairs):
            # crc32: a stable per-name stream (Python's hash() is salted per process)
            sub = np.random.default_rng([seed, zlib.crc32(simulator.encode())])
            keep = np.sort(sub.choice(len(pairs), size=budget, replace=False))
            pairs = [pairs[i] for i in keep]
        out.extend(pairs)
    return out + held_out


_FIELDS = ["a", "b", "label", "level_name", "source", "d", "s", "selection", "round", "split"]


def write_pairs(path: str | Path, pairs: list[Pair]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_FIELDS, lineterminator="\n")
    w.writeheader()
    for p in pairs:
        row = asdict(p)
        row["level_name"] = p.level_name
        row["d"] = "" if math.isnan(p.d) else f"{p.d:.6f}"
        row["s"] = "" if math.isnan(p.s) else f"{p.s:.6f}"
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())


def read_pairs(path: str | Path) -> list[Pair]:
    pairs = []
    with open(path, newline="", encoding="utf-8") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            try:
                label = int(row["label"])
                if not 0 <= label <= 4:
                    raise ValueError("label outside 0..4")
                if row.get("split") not in (None, "", "train", "val"):
                    raise ValueError(f"split {row['split']!r} is neither train nor val")
                pairs.append(
                    Pair(
                        row["a"],
                        row["b"],
                        label,
                        row["source"],
                        float(row["d"]) if row.get("d") else math.nan,
                        float(row["s"]) if row.get("s") else math.nan,
                        row.get("selection") or "random",
                        row.get("round") or "",
                        row.get("split") or "train",
                    )
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: bad pair row ({exc})") from None
    return pairs

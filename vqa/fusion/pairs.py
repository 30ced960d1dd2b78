"""The paper's two labelling rules.

A label is the preference of video A over video B on five levels, stored as an integer:
0 inferior, 1 worse, 2 similar, 3 better, 4 superior (A much better than B).

Teacher pairs: every teacher's scores are first put on one scale (rank -> standard normal
quantile, sign flipped for lower-is-better teachers: a robust, label-free stand-in for the paper's
logistic mapping), then per video m = mean and v = variance over teachers, and for a pair
d = m_A - m_B, s = sqrt(v_A + v_B) (floored, see FusionParams.min_pair_std):
superior d > 2s; better s < d <= 2s; similar -s < d <= s; worse -2s < d <= -s; inferior d <= -2s.

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

from vqa.io import atomic_write_text

LEVEL_NAMES = ("inferior", "worse", "similar", "better", "superior")


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

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.label]


def preference_level(d: float, s: float) -> int:
    if d > 2 * s:
        return 4
    if d > s:
        return 3
    if d > -s:
        return 2
    if d > -2 * s:
        return 1
    return 0


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


def ensemble_moments(normalised: dict[str, dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Per video (mean, variance) over the teachers that scored it."""
    per_video: dict[str, list[float]] = {}
    for table in normalised.values():
        for vid, z in table.items():
            per_video.setdefault(vid, []).append(z)
    return {vid: (float(np.mean(zs)), float(np.var(zs))) for vid, zs in per_video.items()}


def homogeneous_pairs(
    normalised: dict[str, dict[str, float]], *, count: int, min_pair_std: float, seed: int
) -> list[Pair]:
    """`count` distinct random pairs (seeded, order of A/B random) labelled by the ensemble rule."""
    moments = ensemble_moments(normalised)
    ids = sorted(moments)
    n = len(ids)
    possible = n * (n - 1) // 2
    count = min(count, possible)
    rng = np.random.default_rng(seed)
    chosen: set[tuple[int, int]] = set()
    pairs: list[Pair] = []
    while len(pairs) < count:
        i, j = rng.choice(n, size=2, replace=False).tolist()
        key = (min(i, j), max(i, j))
        if key in chosen:
            continue
        chosen.add(key)
        (ma, va), (mb, vb) = moments[ids[i]], moments[ids[j]]
        d = ma - mb
        s = max(math.sqrt(va + vb), min_pair_std)
        pairs.append(Pair(ids[i], ids[j], preference_level(d, s), "homogeneous", d, s))
    return pairs


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
    versions: list[tuple[str, str, int, str]], *, seed: int, budgets: dict[str, int | None] | None = None
) -> list[Pair]:
    """All pairs of versions of each source. `versions`: (video_id, source_id, level, simulator).

    `budgets`: per simulator, the most pairs kept (None or absent: all). A type over budget keeps
    a uniform sample drawn with its own generator (seed, name), so one type's budget never
    changes another's pairs; kept pairs stay in their original order.
    """
    rng = np.random.default_rng(seed)
    by_type: dict[str, list[Pair]] = {}
    for simulator, vi, vj, label, gap in known_order_pairs(versions):
        pairs = by_type.setdefault(simulator, [])
        if rng.random() < 0.5:  # present both orders so the student sees both
            pairs.append(Pair(vi, vj, label, simulator, float(gap)))
        else:
            pairs.append(Pair(vj, vi, 4 - label, simulator, float(-gap)))
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
    return out


_FIELDS = ["a", "b", "label", "level_name", "source", "d", "s", "selection", "round"]


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
                    )
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: bad pair row ({exc})") from None
    return pairs

"""The end-of-run table: every teacher and every round's student, SRCC/PLCC per suite."""
from __future__ import annotations

from vqa.config import Params
from vqa.io import read_json
from vqa.pipeline import layout

SUITE_COLUMNS = [
    ("validation", "validation"),  # the held-out set that chooses; not a result
    ("known_order", "known-order"),
    ("known_order_in_domain", "k-o in-domain"),
    ("known_order_ood", "k-o OOD"),
    ("ugc_smoke", "ugc-smoke"),
]
OVERALL_COLUMNS = [
    ("overall_in_domain", "overall in-domain"),  # configured benchmarks, weighted by size
    ("overall_ood", "overall OOD"),
]


def columns(rows: dict[str, dict]) -> list[tuple[str, str]]:
    """The fixed suites, then configured benchmarks and their large groups (e.g. ugc_mos,
    ugc_mos_konvid_1k), then the overall figures; only those some row has."""
    present = list(dict.fromkeys(k for r in rows.values() for k in r))
    fixed = {k for k, _ in SUITE_COLUMNS + OVERALL_COLUMNS}
    extra = [(k, k.replace("_", "-")) for k in present if k not in fixed]
    return [c for c in SUITE_COLUMNS if c[0] in present] + extra + [c for c in OVERALL_COLUMNS if c[0] in present]


def collect(params: Params) -> dict[str, dict]:
    """model name -> suite -> {srcc, plcc}; teachers from the last round that evaluated them."""
    rows: dict[str, dict] = {}
    for name in params.round_names():
        path = layout.metrics(name)
        if not path.exists():
            continue
        for model, suites in read_json(path)["models"].items():
            rows[model] = suites
    teachers = sorted(m for m in rows if not m.startswith("student_"))
    students = sorted(m for m in rows if m.startswith("student_"))
    return {m: rows[m] for m in teachers + students}


def format_table(rows: dict[str, dict]) -> str:
    cols = columns(rows)
    head = ["model"] + [f"{label} SRCC/PLCC" for _, label in cols]
    body = []
    for model, suites in rows.items():
        cells = [model]
        for key, _ in cols:
            m = suites.get(key)
            cells.append("-" if not m else f"{_fmt(m.get('srcc'))} / {_fmt(m.get('plcc'))}")
        body.append(cells)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in body])


def _fmt(x) -> str:
    return "  n/a" if x is None else f"{x:+.3f}"


def format_gains(params: Params) -> str:
    """The weak-to-strong gain of each round: its student minus the best single teacher of that
    suite, and minus the teacher ensemble (SRCC), each with the 95 % CI of a stratified paired
    bootstrap over the suite's groups."""
    lines = []
    for name in params.round_names():
        path = layout.metrics(name)
        if not path.exists():
            continue
        for suite, g in sorted(read_json(path).get("w2s_gain", {}).items()):
            e = g.get("vs_ensemble") or {}
            lines.append(f"{name:<8} {suite:<26} {g['best_teacher']:<14} {_fmt(g['srcc'])}  "
                         f"[{_fmt(g['low'])}, {_fmt(g['high'])}]  {_fmt(e.get('srcc'))}  "
                         f"[{_fmt(e.get('low'))}, {_fmt(e.get('high'))}]")
    if not lines:
        return ""
    head = (f"{'round':<8} {'W2S gain (SRCC) on':<26} {'best teacher':<14} {'gain':>6}  {'95% CI':<16}  "
            f"{'vs ensemble':>6}  95% CI")
    return "\n".join([head, "-" * len(head)] + lines)


"""The end-of-run table: every teacher and every round's student, SRCC/PLCC per suite."""
from __future__ import annotations

from vqa.config import Params
from vqa.io import read_json
from vqa.pipeline import layout

SUITE_COLUMNS = [
    ("known_order", "known-order"),
    ("known_order_in_domain", "k-o in-domain"),
    ("known_order_ood", "k-o OOD"),
    ("ugc_smoke", "ugc-smoke"),
    ("overall_in_domain", "overall in-domain"),  # configured benchmarks, weighted by size
    ("overall_ood", "overall OOD"),
]


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
    cols = [c for c in SUITE_COLUMNS if any(c[0] in r for r in rows.values())]
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
    suite (SRCC), with the 95 % CI of a stratified paired bootstrap over the suite's groups."""
    lines = []
    for name in params.round_names():
        path = layout.metrics(name)
        if not path.exists():
            continue
        for suite, g in sorted(read_json(path).get("w2s_gain", {}).items()):
            lines.append(f"{name:<8} {suite:<24} {g['best_teacher']:<16} {_fmt(g['srcc'])}  "
                         f"[{_fmt(g['low'])}, {_fmt(g['high'])}]")
    if not lines:
        return ""
    head = f"{'round':<8} {'W2S gain (SRCC) on':<24} {'best teacher':<16} {'gain':>6}  95% CI"
    return "\n".join([head, "-" * len(head)] + lines)


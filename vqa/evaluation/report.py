"""The per-round report: a Markdown table, PNG plots (DVC plots) and a CSV of the figures.

Inputs are the rounds' metrics.json (vqa.pipeline.steps.evaluate): per model and suite SRCC/PLCC,
the W2S gains (student minus the best teacher, and minus the teacher ensemble, with bootstrap
CIs), the five-level shares of the training pairs, and the teachers' calibration.
"""
from __future__ import annotations

import io
from pathlib import Path

from vqa.io import atomic_write_bytes

SUITE_LABELS = {
    "validation": "validation (chooses)",
    "known_order": "known-order",
    "known_order_in_domain": "k-o in-domain",
    "known_order_ood": "k-o OOD",
    "ugc_smoke": "ugc-smoke",
    "overall_in_domain": "overall in-domain",
    "overall_ood": "overall OOD",
}


def _suites(metrics: dict) -> list[str]:
    """Built-in suites first, then configured benchmarks (by name), then the weighted overalls."""
    present = list(dict.fromkeys(s for m in metrics["models"].values() for s in m))
    fixed = [s for s in SUITE_LABELS if s in present and not s.startswith("overall_")]
    return fixed + [s for s in present if s not in SUITE_LABELS] + [s for s in SUITE_LABELS
                                                                   if s.startswith("overall_") and s in present]


def _label(suite: str) -> str:
    return SUITE_LABELS.get(suite, suite.replace("_", "-"))


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def _ordered_models(metrics: dict) -> list[str]:
    models = list(metrics["models"])
    students = sorted(m for m in models if m.startswith("student_"))
    return sorted(m for m in models if m not in students) + students


def markdown(metrics: dict) -> str:
    """SRCC / PLCC of every model on every suite, then the W2S gains."""
    suites = _suites(metrics)
    rnd = metrics["round"]
    lines = [f"# {rnd}: SRCC / PLCC", "",
             "| model | " + " | ".join(_label(s) for s in suites) + " |",
             "|---|" + "---|" * len(suites)]
    for name in _ordered_models(metrics):
        row = metrics["models"][name]
        cells = [f"{_fmt(row[s]['srcc'])} / {_fmt(row[s]['plcc'])}" if s in row else "-" for s in suites]
        bold = name == f"student_{rnd}"
        lines.append(f"| {'**' + name + '**' if bold else name} | " + " | ".join(cells) + " |")
    gains = metrics.get("w2s_gain", {})
    if gains:
        lines += ["", "## Weak-to-strong gain (SRCC; 95 % CI of a stratified paired bootstrap)", "",
                  "| suite | best teacher | student - best teacher | 95 % CI | student - ensemble | 95 % CI |",
                  "|---|---|---|---|---|---|"]
        for suite in suites:
            if suite in gains:
                g = gains[suite]
                e = g.get("vs_ensemble") or {}
                lines.append(f"| {_label(suite)} | {g['best_teacher']} | {_fmt(g['srcc'])} | "
                             f"[{_fmt(g['low'])}, {_fmt(g['high'])}] | {_fmt(e.get('srcc'))} | "
                             f"[{_fmt(e.get('low'))}, {_fmt(e.get('high'))}] |")
    labels = metrics.get("labels", {})
    if labels:
        names = ("inferior", "worse", "similar", "better", "superior")
        lines += ["", "## Training pairs: share of each level, by kind", "",
                  "| kind | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for kind, shares in labels.items():
            lines.append(f"| {kind} | " + " | ".join(f"{shares.get(n, 0):.2f}" for n in names) + " |")
    for warning in metrics.get("warnings", []):
        lines += ["", f"**Warning:** {warning}"]
    calibration = metrics.get("calibration", {})
    if calibration:
        lines += ["", "## Teacher calibration (label-free)", "",
                  "| teacher | known-order accuracy | corpus agreement | direction | action | weight |",
                  "|---|---|---|---|---|---|"]
        for name, c in sorted(calibration.items()):
            acc = "n/a" if c["known_order_accuracy"] is None else f"{c['known_order_accuracy']:.3f}"
            lines.append(f"| {name} | {acc} | {_fmt(c['corpus_agreement'])} | {c['direction']} | {c['action']} | "
                         f"{c['weight']:.2f} |")
    return "\n".join(lines) + "\n"


def figures_csv(metrics: dict) -> str:
    """round,model,suite,srcc,plcc rows: the data behind the plots (and a DVC plot of its own)."""
    out = ["round,model,suite,srcc,plcc"]
    for name in _ordered_models(metrics):
        for suite, m in metrics["models"][name].items():
            if suite in _suites(metrics):
                out.append(f"{metrics['round']},{name},{suite},{m['srcc'] if m['srcc'] is not None else ''},"
                           f"{m['plcc'] if m['plcc'] is not None else ''}")
    return "\n".join(out) + "\n"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def plot_suites(metrics: dict) -> bytes:
    """Bars: SRCC per suite for this round's student, the teacher ensemble and the best teachers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = _suites(metrics)
    rnd = metrics["round"]
    student = f"student_{rnd}"
    best = {g["best_teacher"] for g in metrics.get("w2s_gain", {}).values() if g["best_teacher"] in metrics["models"]}
    shown = [student] + [m for m in ("teacher_ensemble",) if m in metrics["models"]] + sorted(best)
    fig, ax = plt.subplots(figsize=(1.6 + 1.9 * len(suites), 3.6))
    width = 0.8 / max(len(shown), 1)
    for i, name in enumerate(shown):
        vals = [(metrics["models"][name].get(s) or {}).get("srcc") for s in suites]
        xs = [k + (i - (len(shown) - 1) / 2) * width for k in range(len(suites))]
        ax.bar(xs, [v if v is not None else 0.0 for v in vals], width, label=name,
               color="C3" if name == student else f"C{i % 10}")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(suites)), [_label(s) for s in suites], fontsize=8, rotation=15)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("SRCC")
    ax.set_title(f"{rnd}: student vs teachers")
    ax.legend(fontsize=7, loc="lower left")
    data = _png(fig)
    plt.close(fig)
    return data


def plot_rounds(by_round: list[dict]) -> bytes:
    """Lines: each round's student SRCC per suite, with the best single teacher dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [m["round"] for m in by_round]
    suites = _suites(by_round[-1])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for k, suite in enumerate(suites):
        ys = [((m["models"].get(f"student_{m['round']}") or {}).get(suite) or {}).get("srcc") for m in by_round]
        ax.plot(rounds, [y if y is not None else float("nan") for y in ys], marker="o", color=f"C{k}",
                label=_label(suite))
        best = []
        for m in by_round:
            g = m.get("w2s_gain", {}).get(suite)
            best.append(m["models"][g["best_teacher"]][suite]["srcc"] if g else float("nan"))
        ax.plot(rounds, best, linestyle="--", color=f"C{k}", alpha=0.6)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("SRCC (dashed: best teacher)")
    ax.set_title("students over rounds")
    ax.legend(fontsize=7, loc="lower left")
    data = _png(fig)
    plt.close(fig)
    return data


def write_round_report(metrics: dict, earlier: list[dict], out_dir: str | Path) -> list[Path]:
    """report.md, figures.csv, plots/suites.png, plots/rounds.png under out_dir (atomically)."""
    out = Path(out_dir)
    files = {out / "report.md": markdown(metrics).encode(), out / "figures.csv": figures_csv(metrics).encode(),
             out / "plots" / "suites.png": plot_suites(metrics),
             out / "plots" / "rounds.png": plot_rounds(earlier + [metrics])}
    for path, data in files.items():
        atomic_write_bytes(path, data)
    return list(files)

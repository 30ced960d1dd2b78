"""The per-round report: Markdown table with the W2S gains, figures CSV, PNG plots (DVC plots)."""
from __future__ import annotations

from vqa.evaluation.report import figures_csv, markdown, write_round_report


def _metrics(rnd: str, student: float) -> dict:
    suites = ("known_order", "known_order_in_domain", "known_order_ood", "ugc_smoke")
    models = {
        "brisque": {s: {"srcc": 0.8, "plcc": 0.82} for s in suites},
        "niqe": {s: {"srcc": 0.1, "plcc": None} for s in suites},
        "teacher_ensemble": {s: {"srcc": 0.6, "plcc": 0.65} for s in suites},
        f"student_{rnd}": {s: {"srcc": student, "plcc": student} for s in suites},
    }
    gains = {s: {"best_teacher": "brisque", "srcc": student - 0.8, "low": student - 0.9, "high": student - 0.7}
             for s in suites}
    return {"round": rnd, "models": models, "suites": {}, "w2s_gain": gains}


def test_markdown_lists_every_model_and_the_gains():
    text = markdown(_metrics("round2", 0.5))
    assert "| model | known-order | k-o in-domain | k-o OOD | ugc-smoke |" in text
    assert "| **student_round2** | +0.500 / +0.500 |" in text
    assert "| niqe | +0.100 / n/a |" in text
    assert "| known-order | brisque | -0.300 | [-0.400, -0.200] |" in text
    assert text.index("brisque |") < text.index("student_round2")  # teachers first, then students


def test_figures_csv_and_plots_are_written_and_reproducible(tmp_path):
    m1, m2 = _metrics("round1", 0.3), _metrics("round2", 0.5)
    assert figures_csv(m2).splitlines()[0] == "round,model,suite,srcc,plcc"
    assert "round2,niqe,known_order,0.1," in figures_csv(m2)
    files = write_round_report(m2, [m1], tmp_path / "a")
    again = write_round_report(m2, [m1], tmp_path / "b")
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in files)
    assert names == ["figures.csv", "plots/rounds.png", "plots/suites.png", "report.md"]
    for p, q in zip(files, again):
        data = p.read_bytes()
        assert data == q.read_bytes()  # same figures, same bytes: DVC sees no change on a re-run
        if p.suffix == ".png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000

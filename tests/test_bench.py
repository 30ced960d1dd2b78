"""`vqa bench teachers`: runs on a folder and ends with one JSON line of figures."""
from __future__ import annotations

import json

from tests.media import make_clip
from vqa.cli import main


def test_bench_teachers_prints_json_last(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml: defaults
    for i in range(3):
        make_clip(tmp_path / "v" / f"c{i}.mp4", frames=12, fps=6, seed=i)
    assert main(["bench", "teachers", "--videos", "v", "--teachers", "brisque", "--workers", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(out[-1])
    assert figures["videos"] == 3 and figures["key_frames"] == 6
    assert figures["statistics_to_decode_ratio"] > 1.0  # the step includes the decode
    assert set(figures["seconds_per_video"]) >= {"decode", "blockiness", "ti", "brisque"}
    assert figures["peak_rss_mb"]["statistics_worker_all"] > 0
    assert not figures["failures"]


def test_bench_teachers_without_videos_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert main(["bench", "teachers", "--videos", "empty"]) == 2
    assert "empty: no video files to benchmark" in capsys.readouterr().err

"""Benchmark label readers, registry resolution and loading (vqa.evaluation.benchmarks)."""
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from vqa.evaluation.benchmarks import (
    PAPER_BENCHMARKS,
    BenchmarkSpec,
    load_benchmark,
    read_labels,
    resolve_benchmarks,
    ugc_smoke_spec,
)

UGC_SMOKE = Path("/work/shared/benchmarks/ugc-smoke")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _video(path: Path, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    return path


def _pairs(labels):
    return [(lab.name, lab.mos) for lab in labels]


# --------------------------------------------------------------------------- readers


def test_csv_header_variants_and_tags(tmp_path):
    p = _write(tmp_path / "a.csv", "Dataset,Filename,Score,scale\nK,x/a.mp4,3.5,1-5\nL, b.mp4 ,70,0-100\n\n")
    labels = read_labels(p)
    assert _pairs(labels) == [("x/a.mp4", 3.5), ("b.mp4", 70.0)]
    assert labels[0].tags == {"Dataset": "K", "scale": "1-5"}
    assert labels[1].where == "line 3"
    # file/mos preferred over name/score when both exist
    p2 = _write(tmp_path / "b.csv", "name,file,score,MOS\nn1,f1.mp4,1,2\n")
    assert _pairs(read_labels(p2, "csv")) == [("f1.mp4", 2.0)]
    assert read_labels(p2)[0].tags == {"name": "n1", "score": "1"}


def test_csv_bad_mos_names_file_and_line(tmp_path):
    p = _write(tmp_path / "l.csv", "file,mos\na.mp4,1\nb.mp4,2\nc.mp4,abc\n")
    with pytest.raises(ValueError) as e:
        read_labels(p)
    assert str(e.value) == f"{p}: line 4: mos 'abc' is not a number"
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text,msg", [
    ("clip,mos\na.mp4,1\n", "header has no file column"),
    ("file,quality\na.mp4,1\n", "header has no MOS column"),
    ("file,mos\na.mp4,1,extra\n", "line 2: expected 2 fields, got 3"),
    ("file,mos\n,1\n", "line 2: empty file"),
    ("file,mos\na.mp4,nan\n", "line 2: mos 'nan' is not a finite number"),
    ("file,mos\na.mp4,\n", "line 2: mos '' is not a number"),
])
def test_csv_errors(tmp_path, text, msg):
    p = _write(tmp_path / "l.csv", text)
    with pytest.raises(ValueError, match=msg) as e:
        read_labels(p)
    assert str(e.value).startswith(f"{p}: ") and "\n" not in str(e.value)


def test_json_w2s_format(tmp_path):
    data = {"annotations": [{"image_id": "clip_a", "score": 3.2},
                            {"image_id": 10053703034, "score": "4.5", "extra": 1}]}
    p = _write(tmp_path / "ann.json", json.dumps(data))
    labels = read_labels(p)
    assert _pairs(labels) == [("clip_a", 3.2), ("10053703034", 4.5)]
    assert labels[1].tags == {"extra": 1} and labels[1].where == "annotations[1]"


@pytest.mark.parametrize("data,msg", [
    ({"annotations": [{"image_id": "a", "score": 1}, {"image_id": "b", "score": "abc"}]},
     "annotations[1]: score 'abc' is not a number"),
    ({"annotations": [{"image_id": "a"}]}, "annotations[0]: missing key 'score'"),
    ({"annotations": [{"score": 2}]}, "annotations[0]: missing key 'image_id'"),
    ({"annotations": [{"image_id": "a", "score": True}]}, "annotations[0]: score True is not a number"),
    ({"videos": []}, "no 'annotations' key"),
    ({"annotations": {"a": 1}}, "'annotations' is a dict"),
])
def test_json_errors(tmp_path, data, msg):
    p = _write(tmp_path / "ann.json", json.dumps(data))
    with pytest.raises(ValueError) as e:
        read_labels(p)
    assert str(e.value) == f"{p}: {msg}" or str(e.value).startswith(f"{p}: {msg}")


def test_json_syntax_error_names_line(tmp_path):
    p = _write(tmp_path / "ann.json", '{"annotations": [\n{"image_id": "a", "score": 1},\n{oops}\n]}')
    with pytest.raises(ValueError, match=r"ann\.json: line 3: invalid JSON"):
        read_labels(p)


def test_dover_txt(tmp_path):
    text = ("# DOVER labels\n\n"
            "  a.mp4 , 0, 240 , 3.90  \n"
            "b.mp4,1,2,55\n"
            "sub/c,4.5\n")
    p = _write(tmp_path / "labels.txt", text)
    labels = read_labels(p)
    assert _pairs(labels) == [("a.mp4", 3.9), ("b.mp4", 55.0), ("sub/c", 4.5)]
    assert labels[0].tags == {"a": "0", "b": "240"} and labels[0].where == "line 3"


@pytest.mark.parametrize("line,msg", [
    ("c.mp4, 1, 2.5", "line 3: expected 'name, a, b, mos' or 'name, mos', got 3 fields"),
    ("c.mp4, 0, 0, x", "line 3: mos 'x' is not a number"),
    (", 4", "line 3: empty video name"),
])
def test_dover_txt_errors(tmp_path, line, msg):
    p = _write(tmp_path / "labels.txt", f"a.mp4,1,2,3\n# comment\n{line}\n")
    with pytest.raises(ValueError) as e:
        read_labels(p)
    assert str(e.value) == f"{p}: {msg}"


def test_auto_format_detection(tmp_path):
    csv_txt = _write(tmp_path / "labels.txt", "video,mos\na.mp4,2\n")  # header -> csv
    assert _pairs(read_labels(csv_txt)) == [("a.mp4", 2.0)]
    json_noext = _write(tmp_path / "labels", json.dumps({"annotations": [{"image_id": "a", "score": 1}]}))
    assert _pairs(read_labels(json_noext)) == [("a", 1.0)]
    dover_noext = _write(tmp_path / "labels.lst", "a.mp4,0,0,1.5\n")
    assert _pairs(read_labels(dover_noext)) == [("a.mp4", 1.5)]
    with pytest.raises(ValueError, match="unknown labels format 'xml'"):
        read_labels(csv_txt, "xml")
    with pytest.raises(FileNotFoundError, match="nope.csv: labels file not found"):
        read_labels(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- loading


def test_three_missing_videos_evaluation_runs_on_rest(tmp_path):
    """Issue acceptance: a labels file listing 3 missing videos -> loads the rest, reports 3."""
    vids = tmp_path / "videos"
    for n in ("a", "b", "c", "d"):
        _video(vids / f"{n}.mp4")
    rows = "".join(f"{n}.mp4,{i}\n" for i, n in enumerate("axbyczd"))
    labels = _write(tmp_path / "labels.csv", "file,mos\n" + rows)
    lb = load_benchmark(BenchmarkSpec("mine", "ood", 7, labels, vids))
    assert [it.name for it in lb.items] == ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    assert [it.mos for it in lb.items] == [0.0, 2.0, 4.0, 6.0]
    assert lb.items[0].path == vids / "a.mp4" and lb.items[0].group == "mine"
    assert lb.missing == ["x.mp4", "y.mp4", "z.mp4"]
    assert (lb.n_labelled, lb.n_found, lb.n_missing) == (7, 4, 3)
    assert lb.warnings == []
    assert lb.summary() == "mine: 3 of 7 videos missing (x.mp4, y.mp4, z.mp4)"


def test_empty_file_and_directory_count_as_missing(tmp_path):
    vids = tmp_path / "v"
    _video(vids / "ok.mp4")
    _video(vids / "empty.mp4", size=0)
    (vids / "dir.mp4").mkdir()
    labels = _write(tmp_path / "labels.txt", "ok.mp4,1\nempty.mp4,2\ndir.mp4,3\n")
    lb = load_benchmark(BenchmarkSpec("t", "smoke", None, labels, vids))
    assert [it.name for it in lb.items] == ["ok.mp4"]
    assert lb.missing_reasons == {"empty.mp4": "empty file (0 bytes)", "dir.mp4": "not a regular file"}


def test_json_stem_matching(tmp_path):
    vids = tmp_path / "v"
    _video(vids / "clip_a.mp4")
    _video(vids / "sub" / "clip_b.mkv")
    _video(vids / "clip_a.json")  # not a video: never matched
    _video(vids / "two.mp4")
    _video(vids / "two.webm")
    _video(vids / "gone.json")
    anns = [{"image_id": n, "score": i} for i, n in enumerate(["clip_a", "sub/clip_b", "two", "gone"])]
    labels = _write(tmp_path / "ann.json", json.dumps({"annotations": anns}))
    lb = load_benchmark(BenchmarkSpec("j", "ood", 4, labels, vids, "json"))
    assert {it.name: it.path for it in lb.items} == {
        "clip_a": vids / "clip_a.mp4", "sub/clip_b": vids / "sub" / "clip_b.mkv", "two": vids / "two.mp4"}
    assert lb.missing == ["gone"]
    assert len(lb.warnings) == 1 and "'two' matches 2 files" in lb.warnings[0]


def test_groups_size_warning_and_duplicates(tmp_path):
    vids = tmp_path
    for n in "abc":
        _video(vids / f"{n}.mp4")
    labels = _write(tmp_path / "labels.csv",
                    "file,mos,dataset\na.mp4,1,K\nb.mp4,50,L\nc.mp4,2,\na.mp4,9,K\n")
    lb = load_benchmark(BenchmarkSpec("KoNViD-1k", "in_domain", 1200, labels, vids, group_column="dataset"))
    assert [(it.name, it.group) for it in lb.items] == [("a.mp4", "K"), ("b.mp4", "L"), ("c.mp4", "KoNViD-1k")]
    assert lb.items[0].mos == 1.0  # first occurrence of a duplicate wins
    assert lb.warnings[0] == "KoNViD-1k: 3 labelled videos, expected 1200"
    assert "1 duplicate labels ignored" in lb.warnings[1]
    assert lb.groups == {"K": 1, "L": 1, "KoNViD-1k": 1}
    bad = BenchmarkSpec("x", "ood", None, labels, vids, group_column="split")
    with pytest.raises(ValueError, match="group column 'split' not found"):
        load_benchmark(bad)


def test_missing_videos_folder_and_unset_labels(tmp_path):
    labels = _write(tmp_path / "labels.csv", "file,mos\na.mp4,1\n")
    with pytest.raises(FileNotFoundError, match="videos folder .* not found"):
        load_benchmark(BenchmarkSpec("x", "ood", None, labels, tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="KVQ: no labels path configured"):
        load_benchmark(PAPER_BENCHMARKS["KVQ"])


def test_large_labels_file_is_fast(tmp_path):
    vids = tmp_path / "v"
    vids.mkdir()
    n = 7182
    for i in range(0, n, 2):  # half the videos exist, without extension in the labels
        (vids / f"{i}.mp4").write_bytes(b"x")
    labels = _write(tmp_path / "labels.txt", "".join(f"{i},0,0,{i % 100}\n" for i in range(n)))
    t0 = time.perf_counter()
    lb = load_benchmark(replace(PAPER_BENCHMARKS["LSVQ-test"], labels=labels, videos=vids))
    assert time.perf_counter() - t0 < 2.0
    assert (lb.n_found, lb.n_missing, lb.warnings) == (n // 2, n - n // 2, [])


# --------------------------------------------------------------------------- registry


def test_paper_registry():
    assert len(PAPER_BENCHMARKS) == 10
    roles = {n: (s.role, s.expected_size) for n, s in PAPER_BENCHMARKS.items()}
    assert roles["LSVQ-test"] == ("in_domain", 7182)
    assert roles["YouTube-UGC"] == ("in_domain", 1020)
    assert roles["KVQ"] == ("ood", 2926)
    assert sum(r == "in_domain" for r, _ in roles.values()) == 5
    assert all(s.labels is None and s.videos is None for s in PAPER_BENCHMARKS.values())


def test_resolve_merges_user_paths(tmp_path):
    specs = resolve_benchmarks({
        "KVQ": {"labels": "kvq/labels.txt", "videos": "/data/kvq"},
        "KoNViD-1k": {"labels": "k/w2s.json", "format": "json"},
        "MyGames": {"labels": "g.csv", "role": "ood", "group_column": "dataset"},
    }, base=tmp_path)
    assert [s.name for s in specs] == ["KoNViD-1k", "KVQ", "MyGames"]  # paper order, then extras
    k, kvq, mine = specs
    assert (k.role, k.expected_size, k.format) == ("in_domain", 1200, "json")
    assert k.labels == tmp_path / "k/w2s.json" and k.videos == tmp_path / "k"  # videos default
    assert (kvq.role, kvq.expected_size, kvq.videos) == ("ood", 2926, Path("/data/kvq"))
    assert (mine.role, mine.expected_size, mine.group_column) == ("ood", None, "dataset")
    assert PAPER_BENCHMARKS["KVQ"].labels is None  # registry untouched


@pytest.mark.parametrize("configured,msg", [
    ({"konvid-1k": {"labels": "l.txt"}},
     r"evaluation.benchmarks.konvid-1k: unknown benchmark 'konvid-1k'; did you mean 'KoNViD-1k'\?$"),
    ({"konvid_1k": {"labels": "l.txt", "role": "ood"}},  # same name, other spelling: even with a role
     r"evaluation.benchmarks.konvid_1k: unknown benchmark 'konvid_1k'; did you mean 'KoNViD-1k'\?$"),
    ({"LIVE-VQCC": {"labels": "l.txt"}}, r"did you mean 'LIVE-VQC'\? an extra benchmark needs 'role'"),
    ({"MyThing": {"labels": "l.txt"}},
     "evaluation.benchmarks.MyThing: unknown benchmark 'MyThing'; an extra benchmark needs 'role'"),
    ({"KVQ": {"labels": "l.txt", "format": "xlsx"}}, "evaluation.benchmarks.KVQ.format: unknown format 'xlsx'"),
    ({"KVQ": {"labels": "l.txt", "role": "in-domain"}},
     "evaluation.benchmarks.KVQ.role: unknown role 'in-domain' .*did you mean 'in_domain'"),
    ({"KVQ": {"labels": "l.txt", "video": "v"}}, "evaluation.benchmarks.KVQ: unknown key 'video'.*'videos'"),
    ({"KVQ": {"videos": "v"}}, r"evaluation.benchmarks.KVQ.labels: required"),
    ({"KVQ": {"labels": "l.txt", "expected_size": "many"}}, "evaluation.benchmarks.KVQ: expected_size"),
])
def test_resolve_errors(configured, msg):
    with pytest.raises(ValueError, match=msg) as e:
        resolve_benchmarks(configured)
    assert "\n" not in str(e.value)


def test_extra_benchmark_close_to_paper_name_allowed_with_role():
    (spec,) = resolve_benchmarks({"KoNViD-150k": {"labels": "l.csv", "role": "ood"}})
    assert (spec.name, spec.role, spec.expected_size) == ("KoNViD-150k", "ood", None)


# --------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (UGC_SMOKE / "labels.csv").exists(), reason="ugc-smoke not available")
def test_ugc_smoke_loads_14_in_dataset_groups():
    lb = load_benchmark(ugc_smoke_spec(UGC_SMOKE))
    assert lb.spec.role == "smoke"
    assert (lb.n_labelled, lb.n_found, lb.missing, lb.warnings) == (14, 14, [], [])
    assert lb.groups == {"KoNViD-1k": 6, "FineVD": 1, "LSVQ test": 2, "unstated (W2S anchor)": 3, "YouTube-UGC": 2}
    assert all(it.path.is_file() and it.path.parent == UGC_SMOKE / "videos" for it in lb.items)
    konvid = next(it for it in lb.items if it.name == "videos/konvid_10053703034.mp4")
    assert konvid.mos == 3.46 and konvid.tags["scale"] == "1-5"

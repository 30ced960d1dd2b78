import pytest

from vqa.evaluation import correlate, load_known_order, load_mos_csv


def test_known_order_pristine_joins_every_group_and_missing_are_listed(tmp_path):
    (tmp_path / "videos").mkdir()
    rows = ["file,source,distortion,level,ood", "videos/a_p.mp4,a,pristine,0,0"]
    for dist, ood in (("blur", 0), ("banding", 1)):
        for lvl in (1, 2, 3):
            rows.append(f"videos/a_{dist}{lvl}.mp4,a,{dist},{lvl},{ood}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    for r in rows[1:]:
        name = r.split(",")[0]
        if name != "videos/a_banding3.mp4":  # one listed video is missing
            (tmp_path / name).write_bytes(b"x")
    suite = load_known_order(tmp_path)
    assert suite.missing == [str(tmp_path / "videos/a_banding3.mp4")]
    groups = {}
    for it in suite.items:
        groups.setdefault(it.group, []).append(it.target)
    assert sorted(groups["a/blur"]) == [-3.0, -2.0, -1.0, 0.0]
    assert sorted(groups["a/banding"]) == [-2.0, -1.0, 0.0]
    scores = {str(it.path): it.target for it in suite.items}  # a perfect model
    res = correlate(suite, scores)
    assert res["all"]["srcc"] == pytest.approx(1.0)
    assert res["ood"]["groups"] == 1 and res["in_domain"]["groups"] == 1


def test_mos_csv_groups_by_dataset_and_counts_missing(tmp_path):
    lines = ["file,mos,dataset"] + [f"v{i}.mp4,{i},{'A' if i < 4 else 'B'}" for i in range(6)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    for i in range(5):
        (tmp_path / f"v{i}.mp4").write_bytes(b"x")
    suite = load_mos_csv(tmp_path / "labels.csv", "mini")
    assert len(suite.missing) == 1 and len(suite.items) == 5
    res = correlate(suite, {str(it.path): it.target for it in suite.items}, min_group_size=3)
    assert list(res["groups"]) == ["A"]  # group B has 1 video left


def test_bad_labels_row_names_file_and_line(tmp_path):
    (tmp_path / "labels.csv").write_text("file,mos\nv.mp4,not-a-number\n")
    with pytest.raises(ValueError, match=r"labels\.csv:2"):
        load_mos_csv(tmp_path / "labels.csv", "bad")

import hashlib
import os

import numpy as np
import pytest
import yaml

from vqa.config import ConfigError, load_params
from vqa.config.params import SimulatorParams
from vqa.distortions import laplacian_variance
from vqa.fusion import simulator_pairs
from vqa.teachers.simulators import (
    SIMULATOR_CARDS,
    jitter_shifts,
    pick_sources,
    provenance,
    simulate_codec,
    simulate_frames,
)
from vqa.video.encode import read_frames, write_video

from tests.media import make_clip

LEVELS = {
    "blur": [0.1, 0.5, 1.0, 2.0, 5.0],
    "noise": [0.001, 0.002, 0.003, 0.005, 0.01],
    "resize": [2.0, 3.0, 4.0, 8.0, 16.0],
    "darken": [0.05, 0.1, 0.2, 0.4, 0.8],
    "brighten": [0.1, 0.2, 0.4, 0.7, 1.1],
    "jitter": [0.01, 0.02, 0.04],
    "stutter": [0.1, 0.2, 0.4],
    "h264": [24, 36, 48, 63],
    "h265": [36, 40, 44, 48],
}
ALL = ("h264", "h265", "blur", "noise", "resize", "darken", "brighten", "jitter", "stutter")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    out = []
    for i in range(2):
        path = make_clip(d / f"s{i}.mp4", frames=12, fps=10, size=(96, 64), seed=i)
        # content ids are sha256 hex in the real corpus; noise seeding reads their first 8 digits
        out.append((hashlib.sha256(path.read_bytes()).hexdigest(), str(path)))
    return out


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _frames(path) -> np.ndarray:
    return np.stack(list(read_frames(path))).astype(np.float32)


def test_cards_exist():
    cards = {c.name: c for c in SIMULATOR_CARDS}
    assert set(cards) == set(ALL)
    for name in ALL:
        assert cards[name].kind == "heterogeneous" and not cards[name].higher_is_better
        assert cards[name].needs == "file"


@pytest.mark.parametrize("simulator", ["blur", "noise", "resize"])
def test_levels_get_worse(tmp_path, sources, simulator):
    crf = getattr(SimulatorParams(), simulator).crf  # the pipeline's default for this simulator
    made = simulate_frames(sources, tmp_path, simulator=simulator, levels=LEVELS[simulator], seed=0, workers=1,
                           crf=crf)
    assert len(made) == 2 * 5
    for sid, src in sources:
        versions = sorted((v for v in made if v.source_id == sid), key=lambda v: v.level)
        assert [v.level for v in versions] == [1, 2, 3, 4, 5]
        assert [v.param for v in versions] == LEVELS[simulator]
        ref = _frames(src)
        if simulator == "noise":
            # luma residual vs the source grows with sigma (on this random-colour texture, 4:2:0
            # chroma loss alone is ~6 grey levels and would swamp sub-grey-level noise)
            measure = [-float(np.std((_frames(v.path) - ref) @ LUMA)) for v in versions]
        else:
            # detail (Laplacian variance) falls with blur sigma / resize factor
            measure = [float(np.mean([laplacian_variance(f.astype(np.uint8)) for f in _frames(v.path)]))
                       for v in versions]
        assert all(b < a for a, b in zip(measure, measure[1:])), (simulator, measure)


def test_deterministic_and_independent_of_workers(tmp_path, sources):
    a = simulate_frames(sources, tmp_path / "a", simulator="noise", levels=LEVELS["noise"], seed=3, workers=1)
    b = simulate_frames(sources, tmp_path / "b", simulator="noise", levels=LEVELS["noise"], seed=3, workers=2)
    assert [_sha(v.path) for v in a] == [_sha(v.path) for v in b]
    c = simulate_frames(sources[:1], tmp_path / "c", simulator="noise", levels=LEVELS["noise"], seed=4, workers=1)
    assert _sha(c[0].path) != _sha(a[0].path)  # the seed matters


def test_resume_rebuilds_only_missing(tmp_path, sources):
    made = simulate_frames(sources, tmp_path, simulator="resize", levels=LEVELS["resize"], seed=0, workers=1)
    before = {v.path: (_sha(v.path), os.stat(v.path).st_mtime_ns) for v in made}
    gone = made[2].path
    os.remove(gone)
    again = simulate_frames(sources, tmp_path, simulator="resize", levels=LEVELS["resize"], seed=0, workers=1)
    assert [v.path for v in again] == [v.path for v in made]
    for v in again:
        sha, mtime = _sha(v.path), os.stat(v.path).st_mtime_ns
        assert sha == before[v.path][0]
        if v.path != gone:
            assert mtime == before[v.path][1]  # untouched


def test_changed_settings_rebuild(tmp_path, sources):
    one = sources[:1]
    a = simulate_frames(one, tmp_path, simulator="blur", levels=[0.5, 2.0], seed=0, workers=1)
    first = [_sha(v.path) for v in a]
    # same file names (L1, L2), new sigma for L2: only L2 is rebuilt
    b = simulate_frames(one, tmp_path, simulator="blur", levels=[0.5, 3.0], seed=0, workers=1)
    assert [v.path for v in b] == [v.path for v in a]
    assert _sha(b[0].path) == first[0] and _sha(b[1].path) != first[1]
    assert b[1].param == 3.0


def test_bad_levels_rejected(tmp_path, sources):
    with pytest.raises(ValueError, match="strictly increasing"):
        simulate_frames(sources, tmp_path, simulator="blur", levels=[1.0, 0.5], seed=0)
    with pytest.raises(ValueError, match="unknown frame simulator"):
        simulate_frames(sources, tmp_path, simulator="jpeg", levels=[1.0], seed=0)


ROUNDS = {"round1": {"after": "artifacts/corpus/manifest.json"}, "round2": {"after": "artifacts/round1/registered.json"}}


def test_params_have_frame_simulators():
    sims = load_params("params.yaml").teachers.simulators
    assert sims.blur.levels == LEVELS["blur"] and sims.blur.sources >= 1 and sims.blur.enabled
    assert sims.noise.levels == LEVELS["noise"] and sims.noise.sources >= 1
    assert sims.resize.levels == LEVELS["resize"] and sims.resize.sources >= 1
    assert (sims.blur.crf, sims.noise.crf, sims.resize.crf) == (12, 6, 12)
    assert sims.h264.crf_levels == [24, 36, 48, 63]
    # the paper's levels and presets are the defaults
    assert sims.h265.crf_levels == LEVELS["h265"] and sims.h265.preset == "veryslow" and sims.h264.preset == "fast"
    for name in ("darken", "brighten", "jitter", "stutter"):
        assert getattr(sims, name).levels == LEVELS[name]
    assert sims.pair_budgets() == {name: None for name in ALL}


def test_params_reject_unknown_and_unordered(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"rounds": ROUNDS, "teachers": {"simulators": {"blur": {"sigmas": [1]}}}}))
    with pytest.raises(ConfigError, match=r"teachers\.simulators\.blur\.sigmas: unknown key"):
        load_params(p)
    p.write_text(yaml.safe_dump({"rounds": ROUNDS, "teachers": {"simulators": {"resize": {"levels": [4, 2]}}}}))
    with pytest.raises(ConfigError, match=r"teachers\.simulators\.resize\.levels"):
        load_params(p)
    p.write_text(yaml.safe_dump({"rounds": ROUNDS, "teachers": {"simulators": {"noise": {"levels": []}}}}))
    with pytest.raises(ConfigError, match=r"teachers\.simulators\.noise\.levels"):
        load_params(p)


# ----------------------------------------------------------------------------- the other six types

def _luma(frames: np.ndarray) -> np.ndarray:
    return frames @ LUMA


def _sid(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def smooth_source(tmp_path_factory):
    """A static, smooth 160x120 clip: jitter shows as frame-to-frame change that grows with the shift
    (on white-noise texture any 1 px shift already saturates the difference)."""
    from scipy import ndimage

    rng = np.random.default_rng(7)
    field = ndimage.gaussian_filter(rng.random((120, 160, 3)), sigma=(6, 6, 0))
    field = (field - field.min()) / (field.max() - field.min())
    path = tmp_path_factory.mktemp("smooth") / "smooth.mp4"
    write_video(path, [field] * 12, fps=10, crf=12, preset="fast")
    return [(_sid(path), str(path))]


@pytest.fixture(scope="module")
def long_source(tmp_path_factory):
    """120 frames of drifting texture (no two consecutive frames alike) for stutter rates. Long
    enough that adjacent rates (.1, .2) almost surely differ in repeats whatever the source id
    (which seeds the draws): with 40 frames about 1 source in 60 repeated the same frames at both."""
    path = make_clip(tmp_path_factory.mktemp("long") / "long.mp4", frames=120, fps=10, size=(64, 48), seed=5)
    return [(_sid(path), str(path))]


def _versions(made, sid):
    return sorted((v for v in made if v.source_id == sid), key=lambda v: v.level)


def _strictly(xs, *, decreasing=False):
    return all((b < a) if decreasing else (b > a) for a, b in zip(xs, xs[1:]))


@pytest.mark.parametrize("simulator", ["darken", "brighten"])
def test_exposure_levels_move_mean_luma(tmp_path, sources, simulator):
    made = simulate_frames(sources, tmp_path, simulator=simulator, levels=LEVELS[simulator], seed=0, workers=1)
    for sid, src in sources:
        versions = _versions(made, sid)
        assert [v.param for v in versions] == LEVELS[simulator]
        means = [float(_luma(_frames(src)).mean())] + [float(_luma(_frames(v.path)).mean()) for v in versions]
        assert _strictly(means, decreasing=simulator == "darken"), (simulator, means)


def test_jitter_raises_frame_to_frame_change(tmp_path, smooth_source):
    made = simulate_frames(smooth_source, tmp_path, simulator="jitter", levels=LEVELS["jitter"], seed=0, workers=1)
    (sid, src), = smooth_source
    assert jitter_shifts(LEVELS["jitter"], 120, 160) == [1, 2, 5]
    change = [float(np.abs(np.diff(_luma(_frames(p)), axis=0)).mean())
              for p in [src] + [v.path for v in _versions(made, sid)]]
    assert _strictly(change), change
    assert change[1] > 3 * change[0]  # the static source barely changes; jitter does
    assert [provenance(v.path)["max_shift_px"] for v in _versions(made, sid)] == [1, 2, 5]


def test_jitter_op_shifts_and_crops():
    from vqa.distortions import apply_op, jitter, jitter_window

    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    assert np.array_equal(jitter(frame, 0, np.random.default_rng(1)), frame)
    out = apply_op(frame, {"op": "jitter", "max_shift": 3}, np.random.default_rng(1))
    assert out.shape == frame.shape and np.array_equal(out, jitter(frame, 3, np.random.default_rng(1)))
    # the same uniforms give the extreme windows, whatever m: common random numbers across levels
    assert jitter_window(48, 64, 3, np.array([0.0, 0.999])) == (0, 6, 42, 58)
    assert jitter_window(48, 64, 5, np.array([0.0, 0.999])) == (0, 10, 38, 54)
    assert jitter_window(48, 64, 5, np.array([0.5, 0.5])) == (5, 5, 38, 54)  # centred


def test_jitter_shifts_keep_levels_apart():
    assert jitter_shifts([0.001, 0.002, 0.003], 48, 64) == [1, 2, 3]  # all round to 0 px: floors keep the order
    with pytest.raises(ValueError, match="more than"):
        jitter_shifts([0.1, 0.6], 48, 64)


def _repeat_fraction(frames: np.ndarray) -> float:
    diffs = np.abs(np.diff(_luma(frames), axis=0)).mean(axis=(1, 2))
    return float(np.mean(diffs < 1.0))  # a repeat differs only by re-encoding error


def test_stutter_raises_repeated_frames(tmp_path, long_source):
    made = simulate_frames(long_source, tmp_path, simulator="stutter", levels=LEVELS["stutter"], seed=0, workers=1)
    (sid, src), = long_source
    versions = _versions(made, sid)
    fractions = [_repeat_fraction(_frames(p)) for p in [src] + [v.path for v in versions]]
    assert fractions[0] == 0.0 and _strictly(fractions), fractions
    assert all(len(_frames(v.path)) == 120 for v in versions)  # length and rate unchanged


@pytest.mark.parametrize("simulator", ["h264", "h265"])
def test_codec_levels_raise_error(tmp_path, sources, simulator):
    preset = getattr(SimulatorParams(), simulator).preset  # the paper's preset
    made = simulate_codec(sources, tmp_path, simulator=simulator, crfs=LEVELS[simulator], preset=preset, workers=1)
    assert len(made) == 2 * 4
    for sid, src in sources:
        versions = _versions(made, sid)
        assert [v.param for v in versions] == LEVELS[simulator]
        ref = _frames(src)
        mse = [float(np.mean((_frames(v.path) - ref) ** 2)) for v in versions]
        assert _strictly(mse), (simulator, mse)


def test_provenance_in_every_output(tmp_path, sources):
    one = sources[:1]
    sid = one[0][0]
    made = (simulate_codec(one, tmp_path, simulator="h265", crfs=[36, 48], preset="ultrafast", workers=1)
            + simulate_frames(one, tmp_path, simulator="stutter", levels=[0.1, 0.4], seed=3, workers=1))
    for v in made:
        info = provenance(v.path)
        assert info["source"] == sid and info["simulator"].startswith(v.simulator + "@")
        assert (info["level"], info["value"]) == (v.level, v.param)
    assert provenance(made[0].path)["preset"] == "ultrafast" and provenance(made[-1].path)["seed"] == 3


@pytest.mark.parametrize("simulator", ["jitter", "stutter", "h265"])
def test_new_types_deterministic_and_independent_of_workers(tmp_path, sources, simulator):
    def run(out, workers, seed=3):
        if simulator == "h265":
            return simulate_codec(sources, out, simulator="h265", crfs=[40, 48], preset="veryslow", workers=workers)
        return simulate_frames(sources, out, simulator=simulator, levels=LEVELS[simulator], seed=seed, workers=workers)

    a, b = run(tmp_path / "a", 1), run(tmp_path / "b", 2)
    assert [_sha(v.path) for v in a] == [_sha(v.path) for v in b]
    if simulator != "h265":
        c = run(tmp_path / "c", 1, seed=4)
        assert [_sha(v.path) for v in c] != [_sha(v.path) for v in a]  # the seed matters


def test_resume_encodes_nothing_the_second_time(tmp_path, sources, monkeypatch):
    import vqa.video.encode as enc

    def run():
        return (simulate_codec(sources, tmp_path, simulator="h264", crfs=[24, 48], preset="fast", workers=1)
                + simulate_codec(sources, tmp_path, simulator="h265", crfs=[36, 48], preset="ultrafast", workers=1)
                + [v for name in ("darken", "brighten", "jitter", "stutter")
                   for v in simulate_frames(sources, tmp_path, simulator=name, levels=LEVELS[name][:2], seed=0,
                                            workers=1)])

    first = run()
    before = {v.path: os.stat(v.path).st_mtime_ns for v in first}
    calls = []
    for fn in ("reencode", "write_video"):  # count every encode of the second run
        real = getattr(enc, fn)
        monkeypatch.setattr(enc, fn, lambda *a, _real=real, _fn=fn, **k: (calls.append(_fn), _real(*a, **k))[1])
    again = run()
    assert [v.path for v in again] == [v.path for v in first] and calls == []
    assert {v.path: os.stat(v.path).st_mtime_ns for v in again} == before
    # a changed preset makes the codec versions stale: only those are rebuilt
    simulate_codec(sources, tmp_path, simulator="h265", crfs=[36, 48], preset="fast", workers=1)
    assert calls == ["reencode"] * 4
    # an untagged file (older code, foreign file) at a version's path is rebuilt, not trusted
    path = first[0].path
    with open(path, "wb") as fh:
        fh.write(b"junk")
    simulate_codec(sources, tmp_path, simulator="h264", crfs=[24, 48], preset="fast", workers=1)
    assert calls == ["reencode"] * 5 and provenance(path)["crf"] == 24


# ----------------------------------------------------------------------------- pair budgets

def _versions_table():
    out = []
    for sim, levels in (("blur", 5), ("h264", 4), ("jitter", 3)):
        for s in range(6):
            out += [(f"{sim}-{s}-{k}", f"src{s}", k, sim) for k in range(1, levels + 1)]
    return out


def test_pair_budgets_respected_and_deterministic():
    table = _versions_table()
    full = simulator_pairs(table, seed=1)
    by = lambda ps, sim: [p for p in ps if p.source == sim]  # noqa: E731
    assert [len(by(full, s)) for s in ("blur", "h264", "jitter")] == [60, 36, 18]
    assert simulator_pairs(table, seed=1, budgets={"blur": None, "h264": None}) == full  # None: every pair
    budgets = {"blur": 10, "h264": 0, "jitter": 100}
    cut = simulator_pairs(table, seed=1, budgets=budgets)
    assert [len(by(cut, s)) for s in ("blur", "h264", "jitter")] == [10, 0, 18]
    assert cut == simulator_pairs(table, seed=1, budgets=budgets)  # deterministic
    assert set(by(cut, "blur")) <= set(by(full, "blur"))  # a sample of the same pairs, labels unchanged
    assert by(cut, "jitter") == by(full, "jitter")
    assert by(simulator_pairs(table, seed=2, budgets=budgets), "blur") != by(cut, "blur")  # the seed matters
    # one type's budget does not change another's sample
    other = simulator_pairs(table, seed=1, budgets={"blur": 10, "h264": 5})
    assert by(other, "blur") == by(cut, "blur")
    level = {v[0]: v[2] for v in table}
    for p in cut:  # the level-gap rule still holds for sampled pairs
        gap = level[p.b] - level[p.a]
        assert p.level_name == {1: "better", -1: "worse"}.get(gap, "superior" if gap > 1 else "inferior")
    with pytest.raises(ValueError, match="budget"):
        simulator_pairs(table, seed=1, budgets={"blur": -1})


# ----------------------------------------------------------------------------- params

@pytest.mark.parametrize("section, body, message", [
    ("darken", {"levels": [0.4, 0.2]}, "strictly increasing"),
    ("brighten", {"levels": [0.5]}, "at least two"),
    ("brighten", {"levels": [0.1, 2.5]}, r"brighten p must lie in \(0, 2\]"),
    ("darken", {"levels": [0.5, 1.2]}, r"darken p must lie in \(0, 1\]"),
    ("stutter", {"levels": [0.5, 1.0]}, r"stutter rates must lie in \(0, 1\)"),
    ("jitter", {"levels": [0.01, 0.3]}, "jitter fractions"),
    ("jitter", {"levels": ["0.01", 0.02]}, "must list numbers, got '0.01'"),
    ("stutter", {"levels": [True, 0.5]}, "must list numbers, got True"),
    ("h265", {"crf_levels": [36, 40.5]}, "must list integers"),
    ("h265", {"crf_levels": [48, 36]}, "strictly increasing"),
    ("h265", {"preset": "glacial"}, "unknown preset 'glacial'"),
    ("jitter", {"pairs": -3}, "greater than or equal to 0"),
    ("stutter", {"pairs": "some"}, "expected an integer"),
    ("h265", {"sources": -1}, "greater than or equal to 0"),
])
def test_params_reject_bad_simulator_sections(tmp_path, section, body, message):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"rounds": ROUNDS, "teachers": {"simulators": {section: body}}}))
    with pytest.raises(ConfigError, match=rf"teachers\.simulators\.{section}\.\w+: .*{message}"):
        load_params(p)


def test_params_accept_budgets(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"rounds": ROUNDS, "teachers": {"simulators": {
        "h265": {"sources": 3, "pairs": 12, "crf_levels": [30, 40]}, "stutter": {"pairs": 0, "enabled": False}}}}))
    sims = load_params(p).teachers.simulators
    assert sims.pair_budgets()["h265"] == 12 and sims.pair_budgets()["stutter"] == 0
    assert sims.h265.preset == "veryslow" and sims.brighten.levels[-1] == 1.1


# ----------------------------------------------------------------------------- the simulate step

def test_simulate_step_makes_every_type_with_stable_subsets(tmp_path, monkeypatch, sources):
    from vqa.pipeline import steps

    corpus = []
    for i in range(4):  # four tiny sources, each type draws one
        path = make_clip(tmp_path / "corpus" / f"c{i}.mp4", frames=6, fps=10, size=(64, 48), seed=10 + i)
        corpus.append((_sid(path), str(path)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(steps, "_corpus_items", lambda: corpus)
    fast = {name: {"sources": 1, "levels": LEVELS[name][:2]} for name in ALL if not name.startswith("h26")}
    fast |= {"h264": {"sources": 1}, "h265": {"sources": 1, "preset": "ultrafast", "crf_levels": [36, 48]}}

    def run(sims):
        p = tmp_path / "params.yaml"
        p.write_text(yaml.safe_dump({"rounds": ROUNDS, "teachers": {"workers": 1, "simulators": sims}}))
        videos = steps.simulate(load_params(p), log=lambda _: None)
        return {name: sorted({v["source_id"] for v in videos if v["simulator"] == name}) for name in ALL}, videos

    chosen, videos = run(fast)
    assert all(len(chosen[name]) == 1 for name in ALL)
    assert {v["simulator"] for v in videos} == set(ALL)
    assert all(provenance(v["path"])["source"] == v["source_id"] for v in videos)
    # each type keeps its subset when another type is switched off
    without, _ = run(fast | {"blur": fast["blur"] | {"enabled": False}})
    assert without["blur"] == [] and all(without[n] == chosen[n] for n in ALL if n != "blur")
    ids = [vid for vid, _ in corpus]
    assert chosen["h265"] == pick_sources(ids, 1, 0 + 8) and chosen["h264"] == pick_sources(ids, 1, 0)

import hashlib
import os

import numpy as np
import pytest
import yaml

from vqa.config import ConfigError, load_params
from vqa.config.params import SimulatorParams
from vqa.distortions import laplacian_variance
from vqa.teachers.simulators import SIMULATOR_CARDS, simulate_frames
from vqa.video.encode import read_frames

from tests.media import make_clip

LEVELS = {
    "blur": [0.1, 0.5, 1.0, 2.0, 5.0],
    "noise": [0.001, 0.002, 0.003, 0.005, 0.01],
    "resize": [2.0, 3.0, 4.0, 8.0, 16.0],
}
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
    for name in ("h264", "blur", "noise", "resize"):
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
    assert sims.blur.levels == LEVELS["blur"] and sims.blur.sources == 8 and sims.blur.enabled
    assert sims.noise.levels == LEVELS["noise"] and sims.noise.sources == 8
    assert sims.resize.levels == LEVELS["resize"] and sims.resize.sources == 8
    assert (sims.blur.crf, sims.noise.crf, sims.resize.crf) == (12, 6, 12)
    assert sims.h264.crf_levels == [24, 36, 48, 63]


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

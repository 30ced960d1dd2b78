"""External teachers: tiny TorchScript / ONNX models whose scores are known in closed form, so the
checks pin down resize, scale, mean/std, layout, batching and the output reduction exactly."""
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from vqa.teachers.base import ClipTeacher, FrameTeacher, TeacherError
from vqa.teachers.external import load_external_teacher

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class ImageMean(torch.nn.Module):  # [B,3,H,W] -> [B]
    def forward(self, x):
        return x.mean(dim=(1, 2, 3))


class PerChannel(torch.nn.Module):  # [B,3,H,W] -> [B,3]: shows the channel order
    def forward(self, x):
        return x.mean(dim=(2, 3))


class ClipNCTHW(torch.nn.Module):  # red of the last frame minus red of the first -> [B,1]
    def forward(self, x):
        return (x[:, 0, -1] - x[:, 0, 0]).mean(dim=(1, 2)).unsqueeze(1)


class ClipNTCHW(torch.nn.Module):
    def forward(self, x):
        return (x[:, -1, 0] - x[:, 0, 0]).mean(dim=(1, 2)).unsqueeze(1)


class NaNModel(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(1, 2, 3)) * float("nan")


class Raises(torch.nn.Module):
    def forward(self, x):
        if x.shape[-1] != 7:
            raise RuntimeError("wants width 7")
        return x.mean(dim=(1, 2, 3))


def save_ts(module, path):
    torch.jit.script(module).save(str(path))
    return path


def save_onnx(module, example, path, dynamic=True):
    axes = {"frames": {0: "batch"}} if dynamic else None
    torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["frames"], dynamic_axes=axes)
    return path


def write_spec(tmp_path, model_file, /, name="t", fname="spec.yaml", **over):
    spec = {"name": name, "version": "1", "model": model_file.name, "higher_is_better": True,
            "input": {"frames": 1, "size": [8, 8], "mean": MEAN, "std": STD, "batch": 4}}
    inp = over.pop("input", {})
    spec.update(over)
    spec["input"].update(inp)
    p = tmp_path / fname
    p.write_text(yaml.safe_dump(spec))
    return p


def constant_frames(colours, h=12, w=20):
    return np.stack([np.broadcast_to(np.array(c, np.uint8), (h, w, 3)) for c in colours]).copy()


def normalised(c):  # per-channel value of a constant frame after scale/mean/std
    return (np.array(c) / 255.0 - MEAN) / STD


COLOURS = [(0, 0, 0), (255, 255, 255), (200, 40, 90), (10, 120, 250), (77, 77, 77)]


def test_image_torchscript_scores_are_the_normalised_mean(tmp_path):
    cls = load_external_teacher(write_spec(tmp_path, save_ts(ImageMean(), tmp_path / "m.pt")))
    got = cls().score_frames(constant_frames(COLOURS))
    np.testing.assert_allclose(got, [normalised(c).mean() for c in COLOURS], rtol=1e-5, atol=1e-5)


def test_output_reductions_and_channel_order(tmp_path):
    model = save_ts(PerChannel(), tmp_path / "m.pt")
    frames = constant_frames(COLOURS)
    first = load_external_teacher(write_spec(tmp_path, model, output="first"))().score_frames(frames)
    mean = load_external_teacher(write_spec(tmp_path, model, output="mean"))().score_frames(frames)
    np.testing.assert_allclose(first, [normalised(c)[0] for c in COLOURS], atol=1e-5)
    np.testing.assert_allclose(mean, [normalised(c).mean() for c in COLOURS], atol=1e-5)
    single = load_external_teacher(write_spec(tmp_path, model, output="single"))()
    with pytest.raises(TeacherError, match="3 values per item"):
        single.score_frames(frames)


def test_stretch_matches_antialiased_bilinear(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    model = save_ts(PerChannel(), tmp_path / "m.pt")
    t = load_external_teacher(write_spec(tmp_path, model, output="first", input={"size": [16, 10]}))()
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    ref = F.interpolate(x, size=(16, 10), mode="bilinear", antialias=True, align_corners=False)
    want = ((ref[:, 0] - MEAN[0]) / STD[0]).mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(t.score_frames(frames), want, atol=1e-5)


def test_center_crop_fit_and_none(tmp_path):
    model = save_ts(PerChannel(), tmp_path / "m.pt")
    # 20x80 frame, red only in the left quarter: a centred 10x10 crop sees no red
    frame = np.zeros((1, 20, 80, 3), np.uint8)
    frame[:, :, :20, 0] = 255
    crop = load_external_teacher(write_spec(tmp_path, model, output="first", input={"size": [10, 10], "resize": "center_crop", "mean": [0, 0, 0], "std": [1, 1, 1]}))()
    assert crop.score_frames(frame)[0] == pytest.approx(0.0, abs=1e-6)
    # fit: a 20x40 constant frame becomes 5x10 inside 10x10, padded with 0 (normalised units)
    c = (200, 40, 90)
    fit = load_external_teacher(write_spec(tmp_path, model, output="mean", input={"size": [10, 10], "resize": "fit"}))()
    assert fit.score_frames(constant_frames([c], 20, 40))[0] == pytest.approx(normalised(c).mean() / 2, abs=1e-5)
    # none: the model sees the decoded size (Raises wants width 7)
    none = load_external_teacher(write_spec(tmp_path, save_ts(Raises(), tmp_path / "r.pt"), input={"size": None, "resize": "none"}))()
    assert none.score_frames(constant_frames([c], 5, 7))[0] == pytest.approx(normalised(c).mean(), abs=1e-5)


def clips(n=3, length=4, h=10, w=12):
    out = np.zeros((n, length, h, w, 3), np.uint8)
    for i in range(n):
        for t in range(length):
            out[i, t, ..., 0] = 20 * i + 10 * t  # red rises by 10 a frame
            out[i, t, ..., 1] = 200 - 30 * t  # green falls: a wrong channel would show
    return out


@pytest.mark.parametrize("layout,module", [("NCTHW", ClipNCTHW()), ("NTCHW", ClipNTCHW())])
def test_clip_layouts(tmp_path, layout, module):
    model = save_ts(module, tmp_path / "c.pt")
    cls = load_external_teacher(write_spec(tmp_path, model, input={"frames": 4, "layout": layout, "batch": 2}))
    assert issubclass(cls, ClipTeacher) and cls.clip_len == 4
    want = 30 / 255 / STD[0]  # red: +10 a frame over 3 steps
    np.testing.assert_allclose(cls().score_clips(clips()), [want] * 3, rtol=1e-5)
    # clips longer than clip_len are cut to their first clip_len frames
    np.testing.assert_allclose(cls().score_decoded(None, clips(length=6), "x")["clips"], [want] * 3, rtol=1e-5)


def test_onnx_image_and_clip_models(tmp_path):
    model = save_onnx(PerChannel(), torch.zeros(2, 3, 8, 8), tmp_path / "img.onnx")
    t = load_external_teacher(write_spec(tmp_path, model, output="first"))()
    np.testing.assert_allclose(t.score_frames(constant_frames(COLOURS)), [normalised(c)[0] for c in COLOURS], atol=1e-5)
    cmodel = save_onnx(ClipNCTHW(), torch.zeros(2, 3, 4, 8, 8), tmp_path / "clip.onnx")
    c = load_external_teacher(write_spec(tmp_path, cmodel, fname="c.yaml", input={"frames": 4, "batch": 2}))
    assert c.card.needs == "clips"
    np.testing.assert_allclose(c().score_clips(clips()), [30 / 255 / STD[0]] * 3, rtol=1e-5)


def test_onnx_fixed_batch_pads_the_last_batch(tmp_path):
    model = save_onnx(ImageMean(), torch.zeros(2, 3, 8, 8), tmp_path / "fixed.onnx", dynamic=False)
    t = load_external_teacher(write_spec(tmp_path, model, input={"batch": 5}))()
    np.testing.assert_allclose(t.score_frames(constant_frames(COLOURS)), [normalised(c).mean() for c in COLOURS], atol=1e-5)


def test_onnx_wrong_size_is_a_clear_teacher_error(tmp_path):
    model = save_onnx(ImageMean(), torch.zeros(2, 3, 8, 8), tmp_path / "fixed.onnx", dynamic=False)
    t = load_external_teacher(write_spec(tmp_path, model, input={"size": [9, 9]}))()
    with pytest.raises(TeacherError, match=r"t: ONNX model wants input \[2, 3, 8, 8\]"):
        t.score_frames(constant_frames(COLOURS))


def test_card(tmp_path):
    spec = write_spec(tmp_path, save_ts(ImageMean(), tmp_path / "m.pt"), name="dover-tech", version=3,
                      higher_is_better=False, score_range=[0, None])
    cls = load_external_teacher(spec)
    assert issubclass(cls, FrameTeacher)
    card = cls.card
    assert (card.name, card.needs, card.kind, card.origin) == ("dover-tech", "key_frames", "homogeneous", str(spec))
    assert card.version.startswith("3+") and len(card.version) == 10
    assert card.direction == "lower is better" and card.score_range == (0.0, None)
    assert card.key == f"dover-tech@{card.version}"


def test_version_follows_model_bytes_and_preprocessing(tmp_path):
    model = tmp_path / "m.pt"
    spec = write_spec(tmp_path, save_ts(ImageMean(), model))
    v1 = load_external_teacher(spec).card.version
    assert load_external_teacher(spec).card.version == v1  # stable
    save_ts(PerChannel(), model)  # the user replaces the file, keeps version "1"
    v2 = load_external_teacher(spec).card.version
    assert v2 != v1 and v2.startswith("1+")
    spec = write_spec(tmp_path, model, input={"std": [1, 1, 1]})
    assert load_external_teacher(spec).card.version not in (v1, v2)


def test_batching_and_determinism(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (7, 30, 41, 3), dtype=np.uint8)
    model = save_ts(PerChannel(), tmp_path / "m.pt")
    runs = []
    for batch in (1, 3, 8):
        t = load_external_teacher(write_spec(tmp_path, model, output="mean", input={"batch": batch, "size": [13, 17]}))()
        runs.append(t.score_frames(frames))
    runs.append(t.score_frames(frames))
    for r in runs[1:]:
        np.testing.assert_allclose(r, runs[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(runs[-1], runs[-2])  # same call twice: bit-identical


def test_nan_and_raising_models_are_teacher_errors(tmp_path):
    nan = load_external_teacher(write_spec(tmp_path, save_ts(NaNModel(), tmp_path / "n.pt")))()
    with pytest.raises(TeacherError, match="non-finite"):
        nan.score_video(constant_frames(COLOURS))
    bad = load_external_teacher(write_spec(tmp_path, save_ts(Raises(), tmp_path / "r.pt"), fname="r.yaml"))()
    with pytest.raises(TeacherError, match="t: model failed: .*wants width 7"):
        bad.score_frames(constant_frames(COLOURS))


def test_not_a_torchscript_file(tmp_path):
    model = tmp_path / "weights.pt"
    torch.save(ImageMean().state_dict(), model)
    t = load_external_teacher(write_spec(tmp_path, model))()
    with pytest.raises(TeacherError, match="cannot load TorchScript"):
        t.score_frames(constant_frames(COLOURS))


def test_instances_pickle(tmp_path):
    t = load_external_teacher(write_spec(tmp_path, save_ts(ImageMean(), tmp_path / "m.pt")))()
    back = pickle.loads(pickle.dumps(t))
    assert back.card == t.card
    np.testing.assert_array_equal(back.score_frames(constant_frames(COLOURS)), t.score_frames(constant_frames(COLOURS)))


@pytest.mark.parametrize(
    "over,key,reason",
    [
        ({"model": "missing.pt"}, "model", "file not found"),
        ({"input": {"layout": "NHWC"}}, "input.layout", "must be 'NCHW', 'NCTHW' or 'NTCHW'"),
        ({"input": {"layout": "NCHW", "frames": 8}}, "input.layout", "NCHW needs input.frames <= 1"),
        ({"input": {"layout": "NCTHW"}}, "input.layout", "needs input.frames > 1"),
        ({"input": {"mean": [0.5, 0.5]}}, "input.mean", "needs 3 values"),
        ({"input": {"std": [1, 0, 1]}}, "input.std", "must be > 0"),
        ({"input": {"size": [0, 8]}}, "input.size", ">= 1"),
        ({"input": {"size": None}}, "input.size", "required with input.resize: stretch"),
        ({"input": {"batch": 0}}, "input.batch", "greater than or equal to 1"),
        ({"input": {"fps": 2}}, "input.fps", "unknown key"),
        ({"weights": "x"}, "weights", "unknown key"),
        ({"name": "a/b"}, "name", "no '@', '/'"),
        ({"output": "max"}, "output", "must be"),
        ({"higher_is_better": None}, "higher_is_better", ""),
        ({"score_range": [1, 0]}, "score_range", "low < high"),
        ({"model": "m.bin"}, "format", "cannot tell it from the model file's suffix"),
    ],
)
def test_bad_specs_name_file_and_key_in_one_line(tmp_path, over, key, reason):
    save_ts(ImageMean(), tmp_path / "m.pt")
    (tmp_path / "m.bin").write_bytes(b"x")
    spec = write_spec(tmp_path, tmp_path / "m.pt", **over)
    with pytest.raises(ValueError) as err:
        load_external_teacher(spec)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{spec}: {key}: "), msg
    assert reason in msg


def test_missing_spec_and_bad_yaml(tmp_path):
    with pytest.raises(ValueError, match="nope.yaml: not found"):
        load_external_teacher(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        load_external_teacher(bad)

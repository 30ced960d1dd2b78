"""The student: a pretrained backbone over two views of 1 fps key frames, a per-frame quality
head, and mean pooling over time to one score per video (higher = better quality)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vqa.student.backbones import get_backbone


@dataclass(frozen=True)
class StudentConfig:
    backbone: str = "efficientnet-lite0"
    input_size: int = 224
    fragment_grid: int = 7
    hidden: int = 128
    dropout: float = 0.2
    freeze_backbone: bool = True
    key_rate: float = 1.0
    max_key_frames: int = 8

    def to_dict(self) -> dict:
        return asdict(self)

    def feature_fingerprint(self) -> str:
        """Everything that determines cached backbone features (not the head)."""
        spec = get_backbone(self.backbone)
        return (
            f"{spec.weights_id}_s{self.input_size}_g{self.fragment_grid}"
            f"_r{self.key_rate:g}_k{self.max_key_frames}_nhwc"  # NHWC kernels round differently
        )


class StudentModel(nn.Module):
    N_VIEWS = 2

    def __init__(self, config: StudentConfig, *, load_backbone: bool = True):
        super().__init__()
        self.config = config
        spec = get_backbone(config.backbone)
        self.backbone = spec.build() if load_backbone else None
        if self.backbone is not None:
            # NHWC convolutions: about 2x faster on CPU for this network (measured 27.6 -> 14.4 ms
            # per 224 image on 2 cores), and what cuDNN prefers under autocast.
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        dim = spec.feature_dim * self.N_VIEWS
        self.head = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Dropout(config.dropout),
            nn.Linear(dim, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, 1),
        )
        # Half-widths of the "similar" and "better" bands of the five-level model (softplus'ed),
        # symmetric so that label(A,B) and 4 - label(B,A) get the same probability.
        self.band = nn.Parameter(torch.tensor([0.0, 0.5]))
        if config.freeze_backbone and self.backbone is not None:
            self.backbone.requires_grad_(False)

    def cutpoints(self) -> torch.Tensor:
        w = F.softplus(self.band)
        inner, outer = w[0], w[0] + w[1]
        return torch.stack([-outer, -inner, inner, outer])

    def frame_features(self, views: torch.Tensor) -> torch.Tensor:
        """uint8 views [T,2,3,S,S] -> features [T, 2*C] (global-average-pooled backbone maps)."""
        if self.backbone is None:
            raise RuntimeError("student was built without its backbone")
        t = views.shape[0]
        x = views.flatten(0, 1).float().div_(255.0)
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        maps = self.backbone(x)
        return maps.mean(dim=(2, 3)).view(t, -1)

    def video_scores(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """feats [B,T,D] (+ mask [B,T] of valid frames) -> one score per video [B]."""
        per_frame = self.head(feats).squeeze(-1)
        if mask is None:
            return per_frame.mean(dim=1)
        mask = mask.to(per_frame.dtype)
        return (per_frame * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    def trainable_state(self) -> dict:
        """What a checkpoint must hold: the head and bands, plus the backbone when fine-tuned."""
        return {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith("backbone.") or not self.config.freeze_backbone
        }

"""The student: a pretrained backbone over two views of 1 fps key frames, a per-frame quality
head, and mean pooling over time to one score per video (higher = better quality)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vqa.student.backbones import get_backbone
from vqa.student.motion import MOTION_DIM, MOTION_VERSION


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
    # Fine-tuned backbones: a hash of the trained backbone weights ("" = the packaged weights), so
    # features cached for one fine-tuned student are never reused for another.
    backbone_weights: str = ""
    # Motion branch: a descriptor of the clip of this many frames at each key frame
    # (vqa.student.motion); 0 turns the branch off.
    motion_frames: int = 8
    # Per image: "gap" = the final map's global average; "multilevel" = mean and spread of every
    # stage's map (vqa.student.model.pool_features).
    pooling: str = "gap"

    def to_dict(self) -> dict:
        return asdict(self)

    def feature_fingerprint(self, device: str = "cpu") -> str:
        """Everything that determines cached backbone features (not the head), on that device."""
        from vqa.student.runtime import runtime_tag  # the runtime (ONNX Runtime / torch NHWC) rounds differently
        from vqa.student.views import VIEWS_VERSION

        spec = get_backbone(self.backbone)
        return (
            f"{spec.weights_id}_s{self.input_size}_g{self.fragment_grid}_vw{VIEWS_VERSION}"
            f"_r{self.key_rate:g}_k{self.max_key_frames}{runtime_tag(self, device)}"
            + (f"_ft{self.backbone_weights}" if self.backbone_weights else "")
            + ("" if self.pooling == "gap" else f"_{self.pooling}")
            + (f"_mv{MOTION_VERSION}l{self.motion_frames}" if self.motion_frames else "")
        )


def pool_features(backbone: nn.Module, x: torch.Tensor, pooling: str) -> torch.Tensor:
    """Normalised images [N,3,S,S] -> features [N,D]. gap: the mean of the final map. multilevel:
    the mean and the standard deviation of each stage's map and of the final one: the spread of a
    low-level map carries grain, edges and blocking that averaging the final map washes out (as
    in multi-level IQA features). The one definition for training, scoring and the ONNX export."""
    if pooling == "gap":
        return backbone(x).mean(dim=(2, 3))
    out = []
    for m in backbone.levels(x):
        mu = m.mean(dim=(2, 3), keepdim=True)
        out += [mu.flatten(1), ((m - mu) ** 2).mean(dim=(2, 3)).add(1e-6).sqrt()]
    return torch.cat(out, dim=1)


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
        dim = self.appearance_dim = spec.pooled_dim(config.pooling) * self.N_VIEWS
        self.feature_dim = dim + (MOTION_DIM if config.motion_frames else 0)  # per key frame, as cached
        # The motion branch adds its own per-frame term: the clip descriptor is small and on
        # another scale than the backbone's features, so it is normalised and projected alone.
        self.motion_head = nn.Sequential(
            nn.LayerNorm(MOTION_DIM),
            nn.Linear(MOTION_DIM, 32),
            nn.GELU(),
            nn.Linear(32, 1),
        ) if config.motion_frames else None
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
        return pool_features(self.backbone, x, self.config.pooling).view(t, -1)

    def scores(self, inputs: dict) -> torch.Tensor:
        """One score per video from either cached features {"feats", "mask"} or uint8 views
        {"views" [N,T,2,3,S,S], "mask" [N,T]} (fine-tuning: only the valid frames are run, padded
        with blank frames up to "pad_frames" if given; BatchNorm is frozen, so these change nothing)."""
        mask = inputs["mask"]
        if "feats" in inputs:
            return self.video_scores(inputs["feats"], mask)
        frames = inputs["views"][mask]
        n, pad = frames.shape[0], inputs.get("pad_frames", 0)
        if pad > n:
            # One frame count for every batch: cuDNN's channels-last kernels are built per input
            # shape (measured on an H200: ~13 s for the first bf16 step of each new shape, then
            # 0.1 s), so varying counts would rebuild them at almost every step.
            frames = torch.cat([frames, frames.new_zeros((pad - n, *frames.shape[1:]))])
        frame_feats = self.frame_features(frames)[:n].float()
        if self.motion_head is not None:
            frame_feats = torch.cat([frame_feats, inputs["motion"][mask].float()], dim=1)
        feats = frame_feats.new_zeros((*mask.shape, frame_feats.shape[-1]))
        feats[mask] = frame_feats
        return self.video_scores(feats, mask)

    forward = scores  # what DistributedDataParallel calls

    def train(self, mode: bool = True) -> "StudentModel":
        super().train(mode)
        if mode and self.backbone is not None:
            # Fine-tuning keeps the pretrained BatchNorm statistics: pair batches hold few videos,
            # whose statistics would be noisy and differ between GPUs.
            for m in self.backbone.modules():
                # (TorchScript backbones hide the class; their modules keep its name)
                if isinstance(m, nn.modules.batchnorm._BatchNorm) or \
                        getattr(m, "original_name", "").startswith("BatchNorm"):
                    m.eval()
        return self

    def backbone_digest(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for k, v in sorted(self.backbone.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:12]

    def video_scores(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """feats [B,T,D] (+ mask [B,T] of valid frames) -> one score per video [B]."""
        per_frame = self.head(feats[..., : self.appearance_dim]).squeeze(-1)
        if self.motion_head is not None:
            per_frame = per_frame + self.motion_head(feats[..., self.appearance_dim :]).squeeze(-1)
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

"""Tiny stand-ins for the real networks, so tests run on the CPU without downloads.

``build_tiny_models(folder)`` writes, into ``folder``:

- ``configs/clipasso-tiny-rn.json`` and ``configs/clipasso-tiny-vit.json``: open_clip architecture configs (a
  ModifiedResNet with layers [1, 1, 1, 1] and width 8; a 2-block, 2-head ViT with 32-pixel patches; both at 224²
  with a one-layer text tower);
- ``clipasso-tiny-rn.pt``: the ResNet CLIP's state_dict saved with ``torch.save``;
- ``clipasso-tiny-vit.safetensors``: the ViT CLIP's state_dict in safetensors;
- ``tiny-dino.safetensors``: a timm VisionTransformer with DINO's structure (8-pixel patches, 64-wide heads),
  2 blocks of width 128.

The engine loads all of them through the same code path as real weights (``--model-config`` + a checkpoint
path). Weights are random but seeded; every ResNet bottleneck's ``bn3`` scale is set non-zero, because open_clip
initialises it to 0 and the residual branches would otherwise output exactly 0 (spec §10).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from clipasso_engine.config import SketchSettings

LOSS_ARCH = "clipasso-tiny-rn"
SALIENCY_ARCH = "clipasso-tiny-vit"

_TEXT = {"context_length": 77, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1}
#: ModifiedResNet: layer2 is (B, 64, 28, 28), layer3 (B, 128, 14, 14), the embedding (B, 32).
RESNET_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "text_cfg": _TEXT,
}
#: ViT with a 7×7 patch grid, like ViT-B/32.
VIT_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": _TEXT,
}


@dataclass(frozen=True)
class TinyModels:
    """Where the tiny models live; ``env()`` and ``settings()`` point the engine at them."""

    model_config: Path  # folder of open_clip config JSONs
    loss_model: str  # architecture name of the ResNet
    loss_weights: Path  # its checkpoint (.pt state_dict)
    saliency_model: str  # architecture name of the ViT
    saliency_weights: Path  # its checkpoint (.safetensors)
    dino_weights: Path  # a DINO-structured timm ViT checkpoint (.safetensors)

    def env(self) -> dict[str, str]:
        """The ``CLIPASSO_*`` variables that select the tiny models."""
        return {
            "CLIPASSO_MODEL_CONFIG": str(self.model_config),
            "CLIPASSO_LOSS_MODEL": self.loss_model,
            "CLIPASSO_LOSS_WEIGHTS": str(self.loss_weights),
            "CLIPASSO_SALIENCY_MODEL": self.saliency_model,
            "CLIPASSO_SALIENCY_WEIGHTS": str(self.saliency_weights),
        }

    def settings(self, **changes: Any) -> SketchSettings:
        """Settings that use the tiny models, with ``changes`` on top."""
        base = {
            "model_config": str(self.model_config),
            "loss_model": self.loss_model,
            "loss_weights": str(self.loss_weights),
            "saliency_model": self.saliency_model,
            "saliency_weights": str(self.saliency_weights),
        }
        return SketchSettings(**{**base, **changes})


def make_clip(arch: str, config_folder: Path, seed: int = 0) -> Any:  # an open_clip CLIP (untyped library)
    """A random open_clip model of a registered tiny ``arch``, seeded, with non-zero bn3 scales."""
    open_clip.add_model_config(config_folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None)
        for name, param in model.visual.named_parameters():
            # Bottleneck bn3 only ("layerN.M.bn3"), not the stem's bn3, which open_clip leaves at 1.
            if name.startswith("layer") and name.endswith("bn3.weight"):
                param.data.uniform_(0.5, 1.5)
        _calibrate_batch_norms(model.visual)
    return model.eval()


def _calibrate_batch_norms(visual: torch.nn.Module) -> None:
    """Set every BatchNorm's running statistics from a batch of smooth random images.

    PyTorch's default conv initialisation shrinks activations layer after layer, so a random ResNet's stage outputs
    are ~1e-3 and its CLIP loss ~1e-6: so flat that Adam's epsilon dominates and float noise decides the steps.
    Real CLIP ResNets have unit-scale normalised activations; calibrated running statistics give the same.
    """
    norms = [m for m in visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batch
    noise = torch.rand(8, 3, 14, 14)
    images = torch.nn.functional.interpolate(noise, size=224, mode="bicubic", align_corners=False)
    visual.train()
    with torch.no_grad():
        visual(images.clamp(0, 1) * 4.0 - 2.0)  # roughly CLIP-normalised value range
    visual.eval()
    for norm in norms:
        norm.momentum = 0.1


def make_dino(seed: int = 0) -> VisionTransformer:
    """A random timm ViT shaped like DINO ViT-S/8 but small: 8-pixel patches, width 128, 2 blocks, 2 heads."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VisionTransformer(img_size=224, patch_size=8, embed_dim=128, depth=2, num_heads=2, num_classes=0)
    return model.eval()


def build_tiny_models(folder: Path) -> TinyModels:
    """Write the tiny configs and checkpoints into ``folder`` (see the module docstring)."""
    configs = folder / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    (configs / f"{LOSS_ARCH}.json").write_text(json.dumps(RESNET_CONFIG), encoding="utf-8")
    (configs / f"{SALIENCY_ARCH}.json").write_text(json.dumps(VIT_CONFIG), encoding="utf-8")
    loss_weights = folder / f"{LOSS_ARCH}.pt"
    torch.save(make_clip(LOSS_ARCH, configs, seed=1).state_dict(), loss_weights)
    saliency_weights = folder / f"{SALIENCY_ARCH}.safetensors"
    save_file(make_clip(SALIENCY_ARCH, configs, seed=2).state_dict(), str(saliency_weights))
    dino_weights = folder / "tiny-dino.safetensors"
    save_file(make_dino(seed=3).state_dict(), str(dino_weights))
    return TinyModels(
        model_config=configs,
        loss_model=LOSS_ARCH,
        loss_weights=loss_weights,
        saliency_model=SALIENCY_ARCH,
        saliency_weights=saliency_weights,
        dino_weights=dino_weights,
    )

"""Building the frozen image towers: CLIP's (open_clip) for the loss and saliency, and the DINO ViT (timm)."""

from __future__ import annotations

import open_clip
import torch
from torch import nn

from .availability import resolve
from .checkpoints import LOAD_ERRORS, load_error, read_state_dict
from .model_configs import check_arch, register_model_configs
from .weights import Role, clip_source, dino_source


def freeze(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in eval mode, fp32, on ``device``, with no parameter requiring gradients."""
    module = module.to(device=device, dtype=torch.float32).eval()
    module.requires_grad_(False)
    return module


def load_clip_visual(
    arch: str, weights: str, *, device: torch.device, model_config: str | None = None, role: Role = "loss"
) -> nn.Module:
    """The frozen, eval-mode, fp32 image tower of open_clip ``arch`` with ``weights``, on ``device``.

    ``weights`` is a pretrained tag (resolved from the cache, downloaded when missing and possible) or a local
    checkpoint of the whole CLIP model. ``role`` only words the error messages after the right option.
    """
    register_model_configs(model_config)
    check_arch(arch, role)
    source = clip_source(arch, weights, role)
    checkpoint = resolve(source, model_config)
    tag_config = open_clip.get_pretrained_cfg(arch, weights) if source.path is None else {}
    try:
        # Built on the CPU so the text tower, discarded below, never reaches the accelerator. A tag trained with
        # QuickGELU forces it, as open_clip's own warning for that mismatch recommends.
        model = open_clip.create_model(
            arch,
            pretrained=checkpoint,
            device="cpu",
            precision="fp32",
            force_quick_gelu=bool(tag_config.get("quick_gelu", False)),
            weights_only=True,
        )
    except LOAD_ERRORS as err:
        raise load_error(checkpoint, arch, role, err) from err
    visual = model.visual
    if not isinstance(visual, nn.Module):
        raise load_error(checkpoint, arch, role, TypeError(f"{arch} has no image tower"))
    return freeze(visual, device)


def load_dino(weights: str, *, device: torch.device) -> nn.Module:
    """The frozen DINO ViT (timm VisionTransformer) for ``weights``: ``dino`` (ViT-S/8) or a checkpoint file.

    The architecture is read from the checkpoint (patch size, width, depth, MLP ratio; 64-wide heads as in every
    DINO ViT), so ViT-S/8, ViT-S/16, ViT-B/8 and ViT-B/16 DINO checkpoints in timm's layout all load.
    """
    from timm.models.vision_transformer import VisionTransformer

    path = resolve(dino_source(weights))
    state = {k: v for k, v in read_state_dict(path, "saliency").items() if not k.startswith("head.")}
    fix = "pass a DINO ViT checkpoint in timm's layout, or leave --saliency-weights out with --saliency dino"
    try:
        width = state["cls_token"].shape[-1]
        patch = state["patch_embed.proj.weight"].shape[-1]
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
        mlp_ratio = state["blocks.0.mlp.fc1.weight"].shape[0] / width
        model = VisionTransformer(
            img_size=grid * patch,
            patch_size=patch,
            embed_dim=width,
            depth=depth,
            num_heads=max(1, width // 64),
            mlp_ratio=mlp_ratio,
            qkv_bias="blocks.0.attn.qkv.bias" in state,
            num_classes=0,
        )
        model.load_state_dict(state, strict=True)
    except LOAD_ERRORS as err:
        raise load_error(path, "a DINO ViT", "saliency", err, fix) from err
    return freeze(model, device)

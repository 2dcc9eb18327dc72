"""Saliency-guided initialisation, part 1: where strokes start (spec §3, steps 1-4).

The saliency map is a ViT's attention (CLIP ViT-B/32 averaged over blocks and heads, or DINO's last block),
min-max normalised, masked by the dark side of an XDoG edge map, and turned into a probability per pixel by a
softmax with temperature over its positive entries.

Where this differs from the reference on purpose (spec "ours"): the DINO backend is an option beside the default
CLIP one; an object mask (from alpha or the user) zeroes the map outside the object; an all-zero map falls back to
uniform sampling instead of failing. Otherwise each step follows the reference's (the XDoG map with the same
libraries, in float64, as the reference computes it).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SketchSettings
from .errors import ModelConfigError
from .model_cache import saliency_tower
from .normalize import clip_normalize, imagenet_normalize

# XDoG constants (spec §3.2).
XDOG_SIGMA = 0.8
XDOG_K = 10.0
XDOG_GAMMA = 0.98
XDOG_EPSILON = -0.1
XDOG_PHI = 200.0


def min_max(values: Tensor) -> Tensor:
    """``values`` rescaled to [0, 1]; all zeros when they are constant (nothing stands out)."""
    low, high = values.min(), values.max()
    if high <= low:
        return torch.zeros_like(values)
    return (values - low) / (high - low)


# --- attention maps ----------------------------------------------------------------------------------------------


def _upsample(patch_map: Tensor, size: tuple[int, int]) -> Tensor:
    """A (gh, gw) patch map, bicubic-upsampled to ``size`` (align_corners=False) and min-max normalised."""
    up = F.interpolate(patch_map[None, None], size=size, mode="bicubic", align_corners=False)
    return min_max(up[0, 0])


#: The attention maps hook into the (shared, cached) saliency model: two threads sketching at once would collect
#: each other's attention. Saliency runs once per sketch and takes a fraction of a second, so one lock serialises it
#: (simpler than a hand-written forward for every ViT layout open_clip and timm have).
_HOOKED_FORWARD = threading.Lock()


def clip_attention_map(vit_visual: nn.Module, images: Tensor) -> Tensor:
    """CLIP ViT attention saliency of ``images``, CLIP-normalised, shape (1, 3, H, W); returns (H, W) in [0, 1].

    Every block's softmax attention probabilities, averaged over heads, CLS row over the patch tokens, averaged
    over blocks, reshaped to the patch grid, upsampled. The blocks' attention modules are found by name
    (``transformer.resblocks.N.attn``) and asked for their weights through hooks, so any open_clip ViT serves.
    """
    if images.ndim != 4 or images.shape[0] != 1:
        raise ValueError(f"images must have shape (1, 3, H, W), got {tuple(images.shape)}")
    attentions = [
        module
        for name, module in vit_visual.named_modules()
        if name.startswith("transformer.resblocks.") and isinstance(module, nn.MultiheadAttention)
    ]
    grid = getattr(vit_visual, "grid_size", None)
    if not attentions or grid is None:
        raise ModelConfigError("The saliency model must be an open_clip ViT (such as ViT-B-32-quickgelu).")
    captured: list[Tensor] = []

    def want_weights(_module: nn.Module, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        # open_clip asks for no weights (the fast path); ask for the head-averaged probabilities instead.
        return args, {**kwargs, "need_weights": True, "average_attn_weights": True}

    def keep_weights(_module: nn.Module, _args: Any, output: tuple[Tensor, Tensor]) -> None:
        captured.append(output[1])

    with _HOOKED_FORWARD:
        handles = [a.register_forward_pre_hook(want_weights, with_kwargs=True) for a in attentions]
        handles += [a.register_forward_hook(keep_weights) for a in attentions]
        try:
            with torch.no_grad():
                vit_visual(images)
        finally:
            for handle in handles:
                handle.remove()
    # (blocks, 1, L, L), batch-first; the CLS token comes first and the patch tokens last.
    attention = torch.stack(captured).mean(dim=0)[0]
    patches = grid[0] * grid[1]
    cls_row = attention[0, -patches:].reshape(grid[0], grid[1]).float()
    return _upsample(cls_row, (images.shape[-2], images.shape[-1]))


def dino_attention_map(model: nn.Module, images: Tensor) -> Tensor:
    """DINO saliency of ``images``, ImageNet-normalised, shape (1, 3, H, W); returns (H, W) in [0, 1].

    The last block's CLS attention over the patch tokens, averaged over heads. ``model`` is a timm
    VisionTransformer; the probabilities are recomputed from the last attention's input, because timm's fused
    attention never forms them.
    """
    if images.ndim != 4 or images.shape[0] != 1:
        raise ValueError(f"images must have shape (1, 3, H, W), got {tuple(images.shape)}")
    from timm.layers import Attention
    from timm.models.vision_transformer import VisionTransformer

    attn = model.blocks[-1].attn if isinstance(model, VisionTransformer) else None
    if not isinstance(model, VisionTransformer) or not isinstance(attn, Attention):
        raise ModelConfigError("The DINO saliency model must be a timm VisionTransformer.")
    inputs: list[Tensor] = []

    def keep_input(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
        inputs.append(args[0])

    with _HOOKED_FORWARD:
        handle = attn.register_forward_pre_hook(keep_input)
        try:
            with torch.no_grad():
                model.forward_features(images)
        finally:
            handle.remove()
    x = inputs[0]
    batch, tokens, _ = x.shape
    qkv = attn.qkv(x).reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    probabilities = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (1, heads, L, L)
    grid: tuple[int, int] = getattr(model.patch_embed, "grid_size")  # noqa: B009 (typed loosely by timm)
    patches = grid[0] * grid[1]
    cls_row = probabilities[0, :, 0, -patches:].mean(dim=0).reshape(grid[0], grid[1]).float()
    return _upsample(cls_row, (images.shape[-2], images.shape[-1]))


# --- XDoG edges --------------------------------------------------------------------------------------------------


def xdog(image: Tensor) -> Tensor:
    """The binary XDoG edge map of spec §3.2 for one CLIP-normalised ``image`` (3, H, W); (H, W) in {0, 1}.

    Computed on the CPU in float64 with the libraries the spec names (scipy's ``gaussian_filter``, mode reflect,
    truncate 4; skimage's ``rgb2gray`` weights and ``threshold_otsu`` over 256 bins), as the reference does: it
    runs once per sketch, and the binarisation is sensitive to rounding. Returned in ``image``'s dtype and device.
    """
    # Imported here: only a sketch's set-up needs them, not every user of the package.
    from scipy.ndimage import gaussian_filter
    from skimage.color import rgb2gray
    from skimage.filters import threshold_otsu

    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W), got {tuple(image.shape)}")
    # rgb2gray (0.2125 R + 0.7154 G + 0.0721 B) leaves float values as they are: no clipping of the normalised image.
    gray = rgb2gray(image.detach().to("cpu", torch.float64).permute(1, 2, 0).numpy())
    dog = gaussian_filter(gray, XDOG_SIGMA, mode="reflect", truncate=4.0) - XDOG_GAMMA * gaussian_filter(
        gray, XDOG_SIGMA * XDOG_K, mode="reflect", truncate=4.0
    )
    value = np.where(dog < XDOG_EPSILON, 1.0, 1.0 + np.tanh(XDOG_PHI * dog))
    low, high = value.min(), value.max()
    value = (value - low) / (high - low) if high > low else np.zeros_like(value)
    binary = value >= threshold_otsu(value, nbins=256)
    return torch.from_numpy(binary).to(device=image.device, dtype=image.dtype)


# --- probabilities -----------------------------------------------------------------------------------------------


def sampling_probabilities(
    attention: Tensor,
    edges: Tensor,
    mask: Tensor | None,
    temperature: float,
    detail: Tensor | None = None,
    detail_weight: float = 1.0,
) -> Tensor:
    """Start-point probabilities, shape (H, W), summing to 1 (spec §3.3-3.4).

    ``attention`` (H, W); ``edges`` the binary XDoG map; ``mask`` (H, W) object mask in [0, 1] (inside where > 0.5)
    or None. Map = (1 - edges) · min_max(attention) (· mask): the attention is normalised *before* the product and
    the product is not normalised again, as the reference does (renormalising would rescale the map by 1/max
    whenever the edges cover the attention peak, sharpening the softmax from τ to τ·max). Softmax with
    ``temperature`` over the map's positive entries; zero elsewhere.

    Ours, not the reference's: the object mask (the reference has none here), and the fallback when no entry is
    positive (an empty mask, a flat map), where every pixel inside the mask (or every pixel) is equally likely, so
    a run never fails here (the reference's sampler would fail on an all-zero map).

    Also ours: ``detail`` (H, W) in [0, 1], the detail shapes' coverage, multiplies each probability by
    ``1 + (detail_weight − 1)·detail`` before renormalising, so a pixel inside is ``detail_weight`` times as likely
    a start as an equally salient pixel outside (the same as adding τ·ln(detail_weight) to its map value).
    """
    saliency = (1 - edges) * min_max(attention)
    inside = torch.ones_like(saliency, dtype=torch.bool) if mask is None else mask > 0.5
    saliency = torch.where(inside, saliency, torch.zeros_like(saliency))
    positive = saliency > 0
    if not positive.any():
        positive = inside if inside.any() else torch.ones_like(inside)
        probabilities = positive.to(saliency.dtype) / positive.sum()
    else:
        probabilities = torch.zeros_like(saliency)
        probabilities[positive] = torch.softmax(saliency[positive] / temperature, dim=0)
    if detail is None or detail_weight == 1.0:
        return probabilities
    weighted = probabilities * (1.0 + (detail_weight - 1.0) * detail.to(probabilities))
    return weighted / weighted.sum()


def saliency_probabilities(
    image: Tensor, mask: Tensor | None, settings: SketchSettings, device: torch.device, detail: Tensor | None = None
) -> Tensor:
    """Start-point probabilities for ``image``, shape (3, 224, 224), values in [0, 1], composited on white.

    Loads the saliency model the settings name (``saliency`` clip or dino, with its weights), computes the
    attention map on ``device``, the XDoG edges on the CLIP-normalised image, and combines them; ``detail``
    (224, 224) in [0, 1] weights the detail shapes up by ``settings.detail_weight``.
    Returns (224, 224) probabilities on ``device``.
    """
    batch = image.to(device=device, dtype=torch.float32)[None]
    clip_batch = clip_normalize(batch)
    network = saliency_tower(settings, device)
    if settings.saliency == "dino":
        attention = dino_attention_map(network, imagenet_normalize(batch))
    else:
        attention = clip_attention_map(network, clip_batch)
    edges = xdog(clip_batch[0])
    return sampling_probabilities(
        attention,
        edges,
        None if mask is None else mask.to(device),
        settings.softmax_temperature,
        None if detail is None else detail.to(device),
        settings.detail_weight,
    )

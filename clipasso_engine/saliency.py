"""Saliency-guided initialisation, part 1: where strokes start (spec §3, steps 1-4).

The saliency map is a ViT's attention (CLIP ViT-B/32 averaged over blocks and heads, or DINO's last block),
masked by the dark side of an XDoG edge map, min-max normalised, and turned into a probability per pixel by a
softmax with temperature over its positive entries.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SketchSettings
from .errors import ModelConfigError
from .models import clip_normalize, dino_weights, imagenet_normalize, load_clip_visual, load_dino

# XDoG constants (spec §3.2).
XDOG_SIGMA = 0.8
XDOG_K = 10.0
XDOG_GAMMA = 0.98
XDOG_EPSILON = -0.1
XDOG_PHI = 200.0
#: skimage's rgb2gray weights (ITU-R BT.709).
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)


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


def _gaussian_filter(image: Tensor, sigma: float, truncate: float = 4.0) -> Tensor:
    """``scipy.ndimage.gaussian_filter(image, sigma, mode="reflect", truncate=truncate)`` of an (H, W) image."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = image
    for axis in (0, 1):  # separable, in scipy's axis order
        n = out.shape[axis]
        # scipy's "reflect" repeats the edge pixel (d c b a | a b c d); folding indices modulo 2n covers any radius.
        index = torch.arange(-radius, n + radius, device=image.device) % (2 * n)
        index = torch.where(index >= n, 2 * n - 1 - index, index)
        padded = out.index_select(axis, index)
        if axis == 0:
            out = F.conv2d(padded[None, None], kernel.view(1, 1, -1, 1))[0, 0]
        else:
            out = F.conv2d(padded[None, None], kernel.view(1, 1, 1, -1))[0, 0]
    return out


def otsu_threshold(values: Tensor, bins: int = 256) -> Tensor:
    """Otsu's threshold of ``values`` over ``bins`` equal bins from min to max (as skimage's threshold_otsu)."""
    flat = values.flatten().double()
    low, high = flat.min(), flat.max()
    if high <= low:
        return low.to(values.dtype)
    # numpy's edges (start + i·step, last edge exactly the max) and its bin rule: [e_i, e_i+1), last bin closed.
    edges = low + torch.arange(bins + 1, dtype=torch.float64, device=flat.device) * ((high - low) / bins)
    edges[-1] = high
    index = (torch.searchsorted(edges, flat, right=True) - 1).clamp(0, bins - 1)
    counts = torch.bincount(index, minlength=bins).double()
    centers = (edges[:-1] + edges[1:]) / 2
    weight1 = counts.cumsum(0)
    weight2 = counts.flip(0).cumsum(0).flip(0)
    mean1 = (counts * centers).cumsum(0) / weight1
    mean2 = ((counts * centers).flip(0).cumsum(0) / weight2.flip(0)).flip(0)
    between = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    # Empty leading bins give 0/0 means; they never hold the maximum, so read them as 0.
    return centers[torch.nan_to_num(between, nan=0.0).argmax()].to(values.dtype)


def xdog(images: Tensor) -> Tensor:
    """The binary XDoG edge map of spec §3.2 for ``images``, CLIP-normalised, shape (3, H, W); (H, W) in {0, 1}.

    Computed on the CPU in float64: it is a single small image, the binarisation is sensitive to rounding, and
    MPS has no float64.
    """
    image = images.detach().to("cpu", torch.float64)
    weights = torch.tensor(GRAY_WEIGHTS, dtype=torch.float64).view(3, 1, 1)
    gray = (image * weights).sum(dim=0)  # rgb2gray without clipping, as on the normalised image
    dog = _gaussian_filter(gray, XDOG_SIGMA) - XDOG_GAMMA * _gaussian_filter(gray, XDOG_SIGMA * XDOG_K)
    value = torch.where(dog < XDOG_EPSILON, torch.ones_like(dog), 1 + torch.tanh(XDOG_PHI * dog))
    value = min_max(value)
    binary = (value >= otsu_threshold(value)).to(images.dtype)
    return binary.to(images.device)


# --- probabilities -----------------------------------------------------------------------------------------------


def sampling_probabilities(attention: Tensor, edges: Tensor, mask: Tensor | None, temperature: float) -> Tensor:
    """Start-point probabilities, shape (H, W), summing to 1 (spec §3.3-3.4).

    ``attention`` (H, W) in [0, 1]; ``edges`` the binary XDoG map; ``mask`` (H, W) object mask in [0, 1] (inside
    where > 0.5) or None. Map = (1 - edges) · attention (· mask), min-max normalised; softmax with ``temperature``
    over its positive entries; zero elsewhere. When no entry is positive (an empty mask, a flat map), every pixel
    inside the mask (or every pixel) is equally likely, so a run never fails here.
    """
    saliency = (1 - edges) * attention
    inside = torch.ones_like(saliency, dtype=torch.bool) if mask is None else mask > 0.5
    saliency = min_max(torch.where(inside, saliency, torch.zeros_like(saliency)))
    positive = saliency > 0
    if not positive.any():
        positive = inside if inside.any() else torch.ones_like(inside)
        return positive.to(saliency.dtype) / positive.sum()
    probabilities = torch.zeros_like(saliency)
    probabilities[positive] = torch.softmax(saliency[positive] / temperature, dim=0)
    return probabilities


@functools.lru_cache(maxsize=1)
def _saliency_network(
    backend: str, arch: str, weights: str, model_config: str | None, device: torch.device
) -> nn.Module:
    """The saliency model, kept so that sketching many images in one process loads it once."""
    if backend == "dino":
        return load_dino(dino_weights(SketchSettings(saliency="dino", saliency_weights=weights)), device=device)
    return load_clip_visual(arch, weights, device=device, model_config=model_config, role="saliency")


def saliency_probabilities(
    image: Tensor, mask: Tensor | None, settings: SketchSettings, device: torch.device
) -> Tensor:
    """Start-point probabilities for ``image``, shape (3, 224, 224), values in [0, 1], composited on white.

    Loads the saliency model the settings name (``saliency`` clip or dino, with its weights), computes the
    attention map on ``device``, the XDoG edges on the CLIP-normalised image, and combines them.
    Returns (224, 224) probabilities on ``device``.
    """
    batch = image.to(device=device, dtype=torch.float32)[None]
    clip_batch = clip_normalize(batch)
    network = _saliency_network(settings.saliency, settings.saliency_model, settings.saliency_weights,
                                settings.model_config, device)  # fmt: skip
    if settings.saliency == "dino":
        attention = dino_attention_map(network, imagenet_normalize(batch))
    else:
        attention = clip_attention_map(network, clip_batch)
    edges = xdog(clip_batch[0])
    return sampling_probabilities(
        attention, edges, None if mask is None else mask.to(device), settings.softmax_temperature
    )

"""Image normalisation for the networks: CLIP's (OpenAI) for the CLIP towers, ImageNet's for the DINO ViT."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

#: CLIP's image normalisation (OpenAI), applied to images in [0, 1].
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
#: ImageNet normalisation, which the DINO ViT was trained with.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def clip_normalize(images: Tensor) -> Tensor:
    """CLIP normalisation of ``images``, shape (B, 3, H, W), values in [0, 1]."""
    return _normalize(images, CLIP_MEAN, CLIP_STD)


def imagenet_normalize(images: Tensor) -> Tensor:
    """ImageNet normalisation (for DINO) of ``images``, shape (B, 3, H, W), values in [0, 1]."""
    return _normalize(images, IMAGENET_MEAN, IMAGENET_STD)


def _normalize(images: Tensor, mean: tuple[float, float, float], std: tuple[float, float, float]) -> Tensor:
    m, s = _constants(mean, std, images.device, images.dtype)
    return (images - m) / s


@functools.lru_cache(maxsize=16)
def _constants(
    mean: tuple[float, float, float], std: tuple[float, float, float], device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    # Built once per device: a host-to-device copy on every call would sit inside the optimisation loop. The
    # tensors are only read, so threads may share them.
    m = torch.tensor(mean, dtype=dtype, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=dtype, device=device).view(1, 3, 1, 1)
    return m, s

"""The CLIP loss: geometric (intermediate ResNet activations) plus semantic (embedding cosine), spec §4.

Each function is plain and works on feature dictionaries as returned by
:class:`clipasso_engine.loss_network.LossNetwork`: ``{"layer2": (B, C2, H2, W2), "layer3": ..., "embedding": (B, D)}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


def geometric_loss(
    sketch: Mapping[str, Tensor], target: Mapping[str, Tensor], layers: Sequence[str], weights: Sequence[float]
) -> Tensor:
    """Per-pair weighted MSE over the named stages.

    sketch, target: feature dicts whose ``layers`` entries have shape (B, C, H, W); ``target`` may have batch 1
    (broadcast). Returns (B,): for each pair, Σ_l w_l · mean((sketch_l − target_l)²) over that pair's elements.
    """
    total: Tensor | None = None
    for name, weight in zip(layers, weights, strict=True):
        difference = sketch[name].float() - target[name].float()
        term = weight * difference.pow(2).flatten(1).mean(dim=1)
        total = term if total is None else total + term
    if total is None:
        return sketch["embedding"].new_zeros(sketch["embedding"].shape[0], dtype=torch.float32)
    return total


def semantic_loss(sketch_embedding: Tensor, target_embedding: Tensor) -> Tensor:
    """Per-pair 1 − cosine similarity. Shapes (B, D) and (B or 1, D); returns (B,)."""
    return 1.0 - torch.cosine_similarity(sketch_embedding.float(), target_embedding.float(), dim=1)


def clip_pair_losses(
    sketch: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    layers: Sequence[str] = ("layer2", "layer3"),
    weights: Sequence[float] = (1.0, 1.0),
    semantic_weight: float = 0.1,
) -> Tensor:
    """Total loss of each (sketch, target) pair, shape (B,): Σ w_l·L2_l + semantic_weight·(1 − cos)."""
    loss = geometric_loss(sketch, target, layers, weights)
    if semantic_weight:
        loss = loss + semantic_weight * semantic_loss(sketch["embedding"], target["embedding"])
    return loss


class ClipLoss(nn.Module):
    """Thin module around :func:`clip_pair_losses`, averaged over the batch of pairs (the method's total)."""

    def __init__(
        self,
        layers: Sequence[str] = ("layer2", "layer3"),
        weights: Sequence[float] = (1.0, 1.0),
        semantic_weight: float = 0.1,
    ) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.weights = tuple(weights)
        self.semantic_weight = semantic_weight

    def forward(self, sketch: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor:
        return clip_pair_losses(sketch, target, self.layers, self.weights, self.semantic_weight).mean()

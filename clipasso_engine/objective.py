"""One iteration's losses: every seed's sketch, its augmentations and a ladder's prefixes in one network batch.

What makes it fast without changing the method (spec §5):
- every seed's sketch and every augmentation go through the loss network as one batch;
- the seeds share each iteration's augmentation parameters, so the augmented targets are computed once per
  iteration, without gradients, and the clean target once per run;
- the clean pair is part of every training batch, so its loss *is* the evaluation loss of the points before the step;
- the per-seed total is summed (not averaged) over seeds, so each seed gets exactly the gradient it would get alone.
A ladder's prefix pairs (``ladder.py``) ride in the same batch as extra pairs: one network pass per iteration still.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from .augment import apply_augmentations
from .config import CANVAS, SketchSettings
from .losses import clip_pair_losses
from .normalize import clip_normalize
from .render import render

FeatureNetwork = Callable[[Tensor], Mapping[str, Tensor]]


def sketch_images(points: Tensor, width: float) -> Tensor:
    """Render (S, N, 4, 2) canvas points to (S, 3, 224, 224) images in [0, 1] (grey repeated to RGB)."""
    grey = render(points, (CANVAS, CANVAS), stroke_width=width)
    return grey.unsqueeze(1).expand(-1, 3, -1, -1)


def pair_features(
    network: FeatureNetwork, images: Tensor, autocast: contextlib.AbstractContextManager[object]
) -> dict[str, Tensor]:
    with autocast:
        return dict(network(clip_normalize(images)))


def _batch_targets(
    clean: Mapping[str, Tensor], augmented: Mapping[str, Tensor], seeds: int, prefixes: Sequence[Prefix]
) -> dict[str, Tensor]:
    """Target features laid out like the sketch batch: S clean rows, S rows per prefix (the clean target or its
    augmentation ``a``), then S·A augmented (seed-major)."""
    out = {}
    for name, value in clean.items():

        def rows_of(a: int, value: Tensor = value, name: str = name) -> Tensor:
            one = value if a < 0 else augmented[name][a : a + 1]
            return one.expand(seeds, *value.shape[1:])

        rows = [rows_of(-1), *(rows_of(a) for _, a in prefixes)]
        if name in augmented and augmented[name].shape[0]:
            rows.append(augmented[name].repeat(seeds, *([1] * (value.dim() - 1))))
        out[name] = torch.cat(rows)
    return out


def target_features(
    network: FeatureNetwork,
    target: Tensor,
    grids: Tensor,
    autocast: contextlib.AbstractContextManager[object] | None = None,
) -> dict[str, Tensor]:
    """Features of the target (3, 224, 224) under each of the (A, 224, 224, 2) grids, without gradients."""
    if not grids.shape[0]:
        return {}
    with torch.no_grad():
        return pair_features(
            network, apply_augmentations(target.unsqueeze(0), grids), autocast or contextlib.nullcontext()
        )


#: A ladder's prefix pair (``ladder.py``): (k, a), each seed's first k strokes against the clean target (a = -1) or
#: under this iteration's augmentation a (the same warp and target features as the top level's pair a).
Prefix = tuple[int, int]


def iteration_losses(
    points: Tensor,
    target: Tensor,
    clean_target_features: Mapping[str, Tensor],
    network: FeatureNetwork,
    grids: Tensor,
    settings: SketchSettings,
    width: float,
    autocast: contextlib.AbstractContextManager[object] | None = None,
    augmented_target_features: Mapping[str, Tensor] | None = None,
    prefixes: Sequence[Prefix] = (),
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`batch_losses`, plus the loss of each :data:`Prefix` pair in ``prefixes``:
    returns (per_seed_training (S,), clean (S,), prefix_losses (S, P))."""
    autocast = autocast or contextlib.nullcontext()
    seeds, augs = points.shape[0], grids.shape[0]
    # Warp the grey sketches, then repeat them to RGB: a third of the resampling work of warping three equal channels.
    # No finiteness read here (a host sync per iteration): the loop checks its loss at its own sync points.
    grey = render(points, (CANVAS, CANVAS), stroke_width=width, check_finite=False).unsqueeze(1)
    rendered: dict[int, Tensor] = {}  # one render per prefix size, however many pairs it has
    rows = [grey]
    for k, a in prefixes:
        if k not in rendered:
            rendered[k] = render(points[:, :k], (CANVAS, CANVAS), stroke_width=width, check_finite=False)[:, None]
        rows.append(rendered[k] if a < 0 else apply_augmentations(rendered[k], grids[a : a + 1]))
    if augs:
        rows.append(apply_augmentations(grey, grids))
    sketch_features = pair_features(network, torch.cat(rows).expand(-1, 3, -1, -1), autocast)
    augmented_targets = augmented_target_features
    if augmented_targets is None:
        augmented_targets = target_features(network, target, grids, autocast)
    head_rows = seeds * (1 + len(prefixes))  # the clean rows, then each prefix pair's
    targets = _batch_targets(clean_target_features, augmented_targets, seeds, prefixes)
    pairs = clip_pair_losses(
        sketch_features, targets, settings.geometric_layers, settings.geometric_weights, settings.semantic_weight
    )
    clean = pairs[:seeds]
    per_seed = (clean + pairs[head_rows:].reshape(seeds, augs).sum(dim=1)) / (1 + augs)
    return per_seed, clean, pairs[seeds:head_rows].reshape(len(prefixes), seeds).T


def batch_losses(
    points: Tensor,
    target: Tensor,
    clean_target_features: Mapping[str, Tensor],
    network: FeatureNetwork,
    grids: Tensor,
    settings: SketchSettings,
    width: float,
    autocast: contextlib.AbstractContextManager[object] | None = None,
    augmented_target_features: Mapping[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """One iteration's losses for S batched seeds.

    points: (S, N, 4, 2); target: (3, 224, 224) in [0, 1]; grids: (A, 224, 224, 2) augmentation grids shared by
    all seeds. Returns (per_seed_training_loss (S,), clean_pair_loss (S,)): the training loss is the mean over the
    seed's 1 + A pairs; the clean pair loss is the method's evaluation loss of these points.
    ``augmented_target_features``: the target's features under ``grids`` when already known (a cached pool).
    """
    per_seed, clean, _ = iteration_losses(
        points, target, clean_target_features, network, grids, settings, width, autocast, augmented_target_features
    )
    return per_seed, clean

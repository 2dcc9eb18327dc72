"""Saliency-guided initialisation, part 2: the initial strokes (spec §3, steps 5-6).

Each stroke starts at a pixel drawn from the saliency probabilities without replacement; its further control
points follow a random walk. Coordinates are pixels of the canvas (x = column, y = row); a sampled pixel (row r,
column c) starts its stroke at (x, y) = (c, r), the pixel's top-left corner, as the reference does (spec §3.5).

Where this differs from the reference on purpose: the draws come from a private CPU ``torch.Generator`` seeded by
the caller's integer (the reference draws from global generators), so the same distribution but a different
random stream, identical on every device and never touching the global RNG; and fewer positive pixels
than strokes fall back to uniform draws from the rest (the reference's sampler fails there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import CANVAS, SketchSettings
from .render import render
from .seeding import initialisation_seed

#: Gaussian σ (canvas px) of the blur of the current sketch when placing added strokes (``uncovered_probabilities``):
#: about one and a half random-walk steps (0.025 · 224 = 5.6 px), so the area a stroke already draws, and the
#: stroke-sized neighbourhood around it, count as covered.
COVERAGE_BLUR = 8.0


def sample_start_points(probabilities: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """``count`` distinct pixels drawn from ``probabilities`` (H, W) without replacement, as (count, 2) (x, y) points.

    Pixel (row r, column c) gives the point (c, r), its top-left corner (spec §3.5).

    When fewer than ``count`` pixels have a positive probability, all of them are taken and the rest are drawn
    uniformly, again without replacement, from the zero-probability pixels: no pixel ever repeats.
    ``generator`` lives on the CPU, where the drawing happens, so a seed gives the same points on every device.
    """
    height, width = probabilities.shape
    if not 0 < count <= height * width:
        raise ValueError(f"count must be between 1 and {height * width}, got {count}")
    flat = probabilities.detach().to("cpu", torch.float64).flatten().clamp_min(0)
    positive = int((flat > 0).sum())
    picked = (
        torch.multinomial(flat, min(count, positive), replacement=False, generator=generator)
        if positive
        else (torch.empty(0, dtype=torch.long))
    )
    if count > positive:
        rest = torch.multinomial((flat == 0).double(), count - positive, replacement=False, generator=generator)
        picked = torch.cat([picked, rest])
    rows, cols = picked // width, picked % width
    return torch.stack([cols, rows], dim=1).to(torch.float32)


def initial_strokes(
    probabilities: Tensor,
    count: int,
    seed: int,
    *,
    step: float = 0.025,
    canvas: int = CANVAS,
    control_points: int = 4,
    device: torch.device | None = None,
) -> Tensor:
    """Initial control points, shape (count, control_points, 2), (x, y) pixels, float32, on ``device``.

    Start points from ``sample_start_points``; each further point is the previous one plus U(-step, step)·canvas
    per axis. Deterministic per ``seed`` on any device: a private CPU generator seeded by ``seed`` draws everything,
    and the global RNG is left alone.
    """
    if control_points < 1:
        raise ValueError(f"control_points must be at least 1, got {control_points}")
    generator = torch.Generator().manual_seed(seed)
    points = [sample_start_points(probabilities, count, generator)]
    for _ in range(control_points - 1):
        move = (torch.rand(count, 2, generator=generator) * 2 - 1) * (step * canvas)
        points.append(points[-1] + move)
    return torch.stack(points, dim=1).to(device or probabilities.device)


def initial_strokes_per_run(probabilities: Tensor, settings: SketchSettings, device: torch.device) -> Tensor:
    """Every run's initial strokes, (seeds, N, 4, 2) canvas px, each run from its own stream (``seeding.py``): the one
    place a new sketch (``api.py``) and the benchmark (``bench.py``) draw them."""
    return torch.stack(
        [
            initial_strokes(
                probabilities,
                settings.strokes,
                initialisation_seed(settings.seed, run),
                step=settings.random_walk_step,
                canvas=CANVAS,
                device=device,
            )
            for run in range(settings.seeds)
        ]
    )


def uncovered_probabilities(
    probabilities: Tensor, current: Tensor, *, width: float, blur: float = COVERAGE_BLUR
) -> Tensor:
    """Start-point probabilities for strokes added to a sketch: ``probabilities`` (H, W) where ``current`` misses.

    ``current``: (N, 4, 2) canvas px, the sketch's strokes; ``width``: their width in canvas px. The strokes are
    rendered (ink = 1 − image), blurred by a Gaussian of σ = ``blur`` px and divided by the blur's value on the
    centre line of a long straight stroke of that width, erf(w / (2√2·σ)), then clamped to [0, 1]: that is the
    coverage, 1 on and right around a stroke, falling off over about σ. Each pixel's probability is weighted by
    (1 − coverage) and the map renormalised; sampling it (``initial_strokes``) then starts new strokes where the
    map is salient and the sketch leaves it least covered. When the strokes cover every salient pixel, the
    probabilities come back unchanged. Same device and dtype as ``probabilities``.
    """
    if current.shape[0] == 0:
        return probabilities
    height, width_px = probabilities.shape
    points = current.detach().to("cpu", torch.float32)
    ink = 1 - render(points, (height, width_px), stroke_width=width)
    peak = math.erf(width / (2 * math.sqrt(2) * blur))
    coverage = (_gaussian_blur(ink, blur) / peak).clamp(0, 1)
    weights = probabilities.detach().to("cpu", torch.float64).clamp_min(0) * (1 - coverage.double())
    total = weights.sum()
    if not total > 0:
        return probabilities
    return (weights / total).to(probabilities)


def _gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """(H, W) blurred by a separable Gaussian of σ = ``sigma`` px, zero outside (no ink beyond the canvas)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = F.conv2d(image[None, None], kernel.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(out, kernel.view(1, 1, -1, 1), padding=(radius, 0))[0, 0]

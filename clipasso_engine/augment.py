"""Augmentation: random perspective, then a fixed-size random crop resized back, identical for sketch and target.

The method (spec §5) applies ``RandomPerspective(0.5, p=1, fill=0)`` then a 200×200 crop at a uniform position,
resized to 224. Both are geometric warps, so we fold them into one inverse map per augmentation and apply it with a
single batched ``grid_sample``: one resampling instead of two, no per-image Python work, and the same parameters
reach the sketch and its target because both are warped by the same grids.

Parameters for a whole run are drawn up front on the CPU from the run's seed (:func:`draw_augmentations`): runs are
reproducible on every device, and the optimisation loop never waits on the host for random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentationPlan:
    """Inverse warps for ``steps`` iterations × ``per_step`` augmentations.

    ``homographies``: (steps, per_step, 3, 3), mapping an output pixel (x, y, 1) of the 224² augmented image to the
    source pixel it samples, in pixel-centre coordinates (pixel (row i, col j) is the point (j + 0.5, i + 0.5)).
    """

    homographies: Tensor
    size: int

    @property
    def per_step(self) -> int:
        return int(self.homographies.shape[1])

    @property
    def steps(self) -> int:
        return int(self.homographies.shape[0])

    def first(self, steps: int) -> AugmentationPlan:
        """The plan cut to its first ``steps`` steps (``grids`` then cycles through them)."""
        return AugmentationPlan(self.homographies[:steps], self.size)

    def to(self, device: torch.device) -> AugmentationPlan:
        return AugmentationPlan(self.homographies.to(device), self.size)

    def grids(self, step: int) -> Tensor:
        """Sampling grids (per_step, size, size, 2) for ``grid_sample`` (align_corners=False) at one step."""
        return homography_grids(self.homographies[step % self.homographies.shape[0]], self.size)


def _perspective_corners(generator: torch.Generator, count: int, size: int, distortion: float) -> Tensor:
    """End points of the image corners for RandomPerspective, (count, 4, 2), torchvision's sampling rule.

    Each corner moves inwards by an integer amount up to ``distortion`` × half the side, independently per axis.
    """
    half = size // 2
    reach = int(distortion * half)
    jitter = torch.randint(0, reach + 1, (count, 4, 2), generator=generator).to(torch.float64)
    last = float(size - 1)
    # Corners in (x, y): top-left, top-right, bottom-right, bottom-left; each moves towards the centre.
    base = torch.tensor([[0.0, 0.0], [last, 0.0], [last, last], [0.0, last]], dtype=torch.float64)
    inward = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], dtype=torch.float64)
    return base + inward * jitter


def _solve_homographies(src: Tensor, dst: Tensor) -> Tensor:
    """Homographies H (count, 3, 3) with H·src_k ∝ dst_k for the 4 point pairs of each item (float64)."""
    count = src.shape[0]
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], dim=-1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], dim=-1)
    a = torch.cat([rows_u, rows_v], dim=1)  # (count, 8, 8)
    b = torch.cat([u, v], dim=1).unsqueeze(-1)  # (count, 8, 1)
    h = torch.linalg.solve(a, b).squeeze(-1)
    return torch.cat([h, torch.ones(count, 1, dtype=h.dtype)], dim=1).reshape(count, 3, 3)


def draw_augmentations(
    seed: int,
    steps: int,
    per_step: int,
    *,
    size: int = 224,
    distortion: float = 0.5,
    crop: int = 200,
) -> AugmentationPlan:
    """Draw every augmentation of a run at once (CPU generator seeded by ``seed``; stored as float32)."""
    count = steps * per_step
    if count == 0:
        return AugmentationPlan(torch.zeros(steps, 0, 3, 3), size)
    generator = torch.Generator().manual_seed(seed)
    corners = _perspective_corners(generator, count, size, distortion)
    top = torch.randint(0, size - crop + 1, (count,), generator=generator)
    left = torch.randint(0, size - crop + 1, (count,), generator=generator)
    matrices = augmentation_homographies(corners, top, left, size=size, crop=crop)
    return AugmentationPlan(matrices.to(torch.float32).reshape(steps, per_step, 3, 3), size)


def augmentation_homographies(corners: Tensor, top: Tensor, left: Tensor, *, size: int, crop: int) -> Tensor:
    """Inverse warps (K, 3, 3), float64, for K augmentations given their parameters.

    corners: (K, 4, 2) where the image corners (top-left, top-right, bottom-right, bottom-left, integer pixel grid)
    land under RandomPerspective; top, left: (K,) crop offsets in pixels of a ``crop``-sized crop that is then
    resized back to ``size``.
    """
    count = corners.shape[0]
    last = float(size - 1)
    start = torch.tensor([[0.0, 0.0], [last, 0.0], [last, last], [0.0, last]], dtype=torch.float64)
    # torchvision's perspective samples the input at H(output), H mapping end points to start points, and applies
    # H to pixel-centre coordinates: the same convention as our grids, so no half-pixel shifts are needed.
    perspective = _solve_homographies(corners.to(torch.float64), start.expand(count, 4, 2))
    # Output pixel centre p -> pixel centre (left, top) + p·crop/size of the crop (bilinear resize, no antialias).
    scale = crop / size
    crop_map = torch.zeros(count, 3, 3, dtype=torch.float64)
    crop_map[:, 0, 0] = scale
    crop_map[:, 1, 1] = scale
    crop_map[:, 0, 2] = left.to(torch.float64)
    crop_map[:, 1, 2] = top.to(torch.float64)
    crop_map[:, 2, 2] = 1.0
    return perspective @ crop_map


def homography_grids(homographies: Tensor, size: int) -> Tensor:
    """Normalised sampling grids (K, size, size, 2) for K inverse homographies in pixel-centre coordinates."""
    device, dtype = homographies.device, homographies.dtype
    centres = torch.arange(size, device=device, dtype=dtype) + 0.5
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3)  # (P, 3)
    mapped = points @ homographies.transpose(1, 2)  # (K, P, 3)
    # Guard the projective divide: a valid perspective keeps w > 0; clamping keeps pathological values finite.
    w = mapped[..., 2:3].clamp_min(1e-6)
    xy = mapped[..., :2] / w
    return (xy * (2.0 / size) - 1.0).reshape(-1, size, size, 2)


def apply_augmentations(images: Tensor, grids: Tensor) -> Tensor:
    """Warp every image by every grid.

    images: (S, C, H, W) in [0, 1]; grids: (K, H', W', 2). Returns (S·K, C, H', W'), ordered image-major
    (all K augmentations of image 0, then of image 1, ...). Outside the source is black (fill = 0).
    """
    s, k = images.shape[0], grids.shape[0]
    repeated = images.repeat_interleave(k, dim=0)
    tiled = grids.to(images.dtype).repeat(s, 1, 1, 1)
    return F.grid_sample(repeated, tiled, mode="bilinear", padding_mode="zeros", align_corners=False)

"""Augmentation: the folded warp equals torchvision's perspective + crop + resize, and is drawn reproducibly."""

from __future__ import annotations

import math

import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode
from torchvision.transforms._functional_tensor import _perspective_grid

from clipasso_engine.augment import (
    apply_augmentations,
    augmentation_homographies,
    draw_augmentations,
    homography_grids,
)

SIZE, CROP = 224, 200


def smooth_image() -> torch.Tensor:
    """A smooth RGB image (so that one vs two bilinear resamplings differ only slightly)."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    return torch.stack([0.5 + 0.5 * torch.sin(6 * xs), 0.5 + 0.5 * torch.cos(5 * ys), xs * ys])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(float(((a - b) ** 2).mean()))


def test_folded_warp_matches_torchvision_two_step() -> None:
    image = smooth_image()
    corners = torch.tensor([[[30, 12], [210, 40], [190, 200], [5, 180]]], dtype=torch.float64)
    top, left = torch.tensor([17]), torch.tensor([9])
    matrices = augmentation_homographies(corners, top, left, size=SIZE, crop=CROP).float()
    ours = apply_augmentations(image.unsqueeze(0), homography_grids(matrices, SIZE))[0]
    start = [[0, 0], [SIZE - 1, 0], [SIZE - 1, SIZE - 1], [0, SIZE - 1]]
    warped = TF.perspective(image, start, corners[0].int().tolist(), InterpolationMode.BILINEAR, fill=[0.0])
    cropped = warped[:, 17 : 17 + CROP, 9 : 9 + CROP]
    expected = TF.resize(cropped, [SIZE, SIZE], InterpolationMode.BILINEAR, antialias=False)
    # One resampling instead of two differs by a little blur; torchvision's fill blending differs at the border.
    inner = (slice(None), slice(20, -20), slice(20, -20))
    assert psnr(ours[inner], expected[inner]) > 37.0


def test_perspective_grid_is_torchvisions() -> None:
    corners = torch.tensor([[[30, 12], [210, 40], [190, 200], [5, 180]]], dtype=torch.float64)
    start = [[0, 0], [SIZE - 1, 0], [SIZE - 1, SIZE - 1], [0, SIZE - 1]]
    coefficients = TF._get_perspective_coeffs(start, corners[0].int().tolist())
    expected = _perspective_grid(coefficients, ow=SIZE, oh=SIZE, dtype=torch.float32, device=torch.device("cpu"))
    no_crop = augmentation_homographies(corners, torch.tensor([0]), torch.tensor([0]), size=SIZE, crop=SIZE)
    assert torch.allclose(homography_grids(no_crop.float(), SIZE), expected, atol=1e-5)


def test_identity_parameters_give_identity_warp() -> None:
    corners = torch.tensor([[[0, 0], [SIZE - 1, 0], [SIZE - 1, SIZE - 1], [0, SIZE - 1]]], dtype=torch.float64)
    matrix = augmentation_homographies(corners, torch.tensor([0]), torch.tensor([0]), size=SIZE, crop=SIZE)
    assert torch.allclose(matrix[0], torch.eye(3, dtype=torch.float64), atol=1e-9)


def test_plan_is_reproducible_and_follows_the_method_ranges() -> None:
    a = draw_augmentations(7, steps=50, per_step=4)
    b = draw_augmentations(7, steps=50, per_step=4)
    c = draw_augmentations(8, steps=50, per_step=4)
    assert a.homographies.shape == (50, 4, 3, 3)
    assert torch.equal(a.homographies, b.homographies)
    assert not torch.equal(a.homographies, c.homographies)
    # Every warped grid stays finite and maps the centre of the output near the middle of the source.
    grids = a.grids(3)
    assert torch.isfinite(grids).all()
    centre = grids[:, SIZE // 2, SIZE // 2]
    assert centre.abs().max() < 0.6


def test_same_grids_warp_sketch_and_target_identically() -> None:
    image = smooth_image()
    plan = draw_augmentations(0, steps=1, per_step=4)
    batch = torch.stack([image, image.flip(-1)])
    out = apply_augmentations(batch, plan.grids(0))
    assert out.shape == (8, 3, SIZE, SIZE)
    alone = apply_augmentations(image.unsqueeze(0), plan.grids(0))
    # Image-major order: the first 4 outputs are image 0 under augmentations 0..3, exactly as warped alone.
    assert torch.equal(out[:4], alone)
    assert not torch.equal(out[4:], alone)

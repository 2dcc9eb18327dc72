"""Augmentation: the engine's two resamplings equal torchvision's perspective + crop + resize (the reference's
transforms) on a real photo and a rendered sketch, in pixels, pair losses and point gradients; the plan's
parameters follow the method's ranges, are reproducible, and reach sketch and target alike."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from skimage import data
from tiny_models import TinyModels
from torchvision.transforms import InterpolationMode
from torchvision.transforms._functional_tensor import _perspective_grid

from clipasso_engine.augment import (
    AugmentationPlan,
    apply_augmentations,
    augmentation_grids,
    draw_augmentations,
    homography_grids,
    perspective_homographies,
)
from clipasso_engine.loss_network import LossNetwork, load_loss_network
from clipasso_engine.losses import clip_pair_losses
from clipasso_engine.normalize import clip_normalize
from clipasso_engine.render import render

SIZE, CROP = 224, 200
START = [[0, 0], [SIZE - 1, 0], [SIZE - 1, SIZE - 1], [0, SIZE - 1]]


def cat_photo() -> torch.Tensor:
    """skimage's cat photo (300×451), padded to a square with white, resized to 224²: (3, 224, 224) in [0, 1]."""
    photo = torch.from_numpy(data.chelsea()).permute(2, 0, 1).double() / 255
    height, width = photo.shape[1:]
    side = max(height, width)
    square = torch.ones(3, side, side, dtype=torch.float64)
    top, left = (side - height) // 2, (side - width) // 2
    square[:, top : top + height, left : left + width] = photo
    resized = F.interpolate(square[None], size=SIZE, mode="bicubic", align_corners=False, antialias=True)
    return resized[0].clamp(0, 1).float()


def sketch_points() -> torch.Tensor:
    """16 strokes of 4 control points spread over the canvas, (16, 4, 2)."""
    generator = torch.Generator().manual_seed(0)
    start = 30 + 164 * torch.rand(16, 1, 2, generator=generator)
    steps = (torch.rand(16, 3, 2, generator=generator) - 0.5) * 50
    return torch.cat([start, start + steps.cumsum(dim=1)], dim=1)


def reference_augmentation(image: torch.Tensor, plan: AugmentationPlan, step: int, k: int) -> torch.Tensor:
    """The reference's two steps with torchvision's own functions and the plan's parameters: perspective (bilinear,
    fill 0, which multiplies by the warped mask), then crop and bilinear resize. ``image`` is (B, C, H, W)."""
    corners = plan.corners[step, k].tolist()
    top, left = plan.offsets[step, k].tolist()
    warped = TF.perspective(image, START, corners, InterpolationMode.BILINEAR, fill=[0.0])
    return TF.resized_crop(warped, top, left, CROP, CROP, [SIZE, SIZE], InterpolationMode.BILINEAR, antialias=True)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(max(float(((a - b) ** 2).mean()), 1e-20))


@pytest.fixture(scope="module")
def network(tiny_models: TinyModels) -> LossNetwork:
    # The tiny ResNet has non-degenerate weights (bn3 scales non-zero, calibrated BatchNorms; spec §10).
    return load_loss_network(tiny_models.settings(), torch.device("cpu"))


def test_two_resamplings_match_torchvision_on_a_photo_and_a_sketch() -> None:
    sketch = render(sketch_points(), (SIZE, SIZE), 3.0).expand(3, -1, -1)
    images = torch.stack([cat_photo(), sketch])
    plan = draw_augmentations(3, steps=5, per_step=4)
    for step in range(plan.steps):
        ours = apply_augmentations(images, plan.grids(step)).reshape(2, 4, 3, SIZE, SIZE)
        for k in range(4):
            expected = reference_augmentation(images, plan, step, k)
            # Float32 rounding of the sampling coordinates (torchvision solves its own coefficients) moves sharp
            # edges by ~1e-4 px: up to ~1e-4 in a pixel.
            assert (ours[:, k] - expected).abs().max() < 3e-4


def test_augmented_pair_losses_and_point_gradients_follow_the_two_step_reference(network: LossNetwork) -> None:
    """Spec §5's bar, over 50 draws: each pair's loss within 1 % and the point-gradient cosine at least 0.99."""
    target = cat_photo()
    points = sketch_points().requires_grad_(True)
    sketch = render(points, (SIZE, SIZE), 3.0)[None, None]  # (1, 1, H, W) grey
    plan = draw_augmentations(11, steps=50, per_step=1)

    def pair_figures(
        augment: Callable[[torch.Tensor, int], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Losses (50,), point gradients (50, 128), augmented sketches (50, 1, H, W) under ``augment``."""
        copies = sketch.detach().repeat(plan.steps, 1, 1, 1).requires_grad_(True)  # one copy per pair
        sketches = torch.cat([augment(copies[k : k + 1], k) for k in range(plan.steps)])
        targets = torch.cat([augment(target[None], k) for k in range(plan.steps)])
        losses = clip_pair_losses(
            network(clip_normalize(sketches.expand(-1, 3, -1, -1))), network(clip_normalize(targets))
        )
        (image_grads,) = torch.autograd.grad(losses.sum(), copies)
        point_grads = [
            torch.autograd.grad(sketch, points, image_grads[k : k + 1], retain_graph=True)[0].flatten()
            for k in range(plan.steps)
        ]
        return losses.detach(), torch.stack(point_grads), sketches.detach()

    ours = pair_figures(lambda image, k: apply_augmentations(image, plan.grids(k)))
    reference = pair_figures(lambda image, k: reference_augmentation(image, plan, k, 0))
    deviation = ((ours[0] - reference[0]).abs() / reference[0]).max().item()
    cosine = F.cosine_similarity(ours[1], reference[1], dim=1).min().item()
    worst_psnr = min(psnr(a, b) for a, b in zip(ours[2], reference[2], strict=True))
    assert reference[0].min() > 0 and reference[1].norm(dim=1).min() > 0  # a loss and gradients with a signal
    assert deviation < 0.01, f"pair loss off by {deviation:.2%}"
    assert cosine >= 0.99, f"point-gradient cosine {cosine:.4f}"
    assert worst_psnr > 60.0, f"PSNR {worst_psnr:.1f} dB"


def test_perspective_grid_is_torchvisions() -> None:
    corners = torch.tensor([[[30, 12], [210, 40], [190, 200], [5, 180]]])
    coefficients = TF._get_perspective_coeffs(START, corners[0].tolist())
    expected = _perspective_grid(coefficients, ow=SIZE, oh=SIZE, dtype=torch.float32, device=torch.device("cpu"))
    ours = homography_grids(perspective_homographies(corners, size=SIZE).float(), SIZE)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_identity_parameters_give_the_image_back() -> None:
    corners = torch.tensor([START])
    assert torch.allclose(perspective_homographies(corners, size=SIZE)[0], torch.eye(3, dtype=torch.float64))
    grids = augmentation_grids(
        perspective_homographies(corners, size=SIZE).float(), torch.zeros(1, 2), size=SIZE, crop=SIZE
    )
    image = cat_photo()[None]
    # Edge pixels sit next to the black fill: float32 rounding of their coordinates lets in ~1e-4 of it.
    assert torch.allclose(apply_augmentations(image, grids), image, atol=5e-4)


def test_plan_is_reproducible_and_follows_the_method_ranges() -> None:
    before = torch.get_rng_state()
    a = draw_augmentations(7, steps=100, per_step=4)
    assert torch.equal(torch.get_rng_state(), before)  # a private generator: the global RNG is untouched
    torch.rand(100)
    b = draw_augmentations(7, steps=100, per_step=4)
    c = draw_augmentations(8, steps=100, per_step=4)
    assert a.perspectives.shape == (100, 4, 3, 3) and a.steps == 100 and a.per_step == 4
    assert torch.equal(a.corners, b.corners) and torch.equal(a.offsets, b.offsets)
    assert torch.equal(a.perspectives, b.perspectives)
    assert not torch.equal(a.corners, c.corners)

    # RandomPerspective(0.5): each corner moves inwards, per axis, by an integer from 0 to int(0.5 · 112) = 56.
    corners = a.corners.reshape(-1, 4, 2)
    inward = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    moves = (corners - torch.tensor(START)) * inward
    assert moves.dtype == torch.int64 and moves.min() == 0 and moves.max() == 56
    assert set(moves.unique().tolist()) == set(range(57))  # uniform over the whole range (3200 draws)
    # The crop is 200² = round(√0.8 · 224)², at a top and left each uniform over 0..24.
    assert a.crop == CROP == round(math.sqrt(0.8) * SIZE)
    offsets = a.offsets.reshape(-1, 2)
    assert set(offsets[:, 0].unique().tolist()) == set(range(25)) == set(offsets[:, 1].unique().tolist())
    # Each stored perspective maps the moved corners back to the image corners (pixel-centre coordinates).
    h = a.perspectives.reshape(-1, 3, 3).double()
    mapped = torch.cat([corners.double(), torch.ones(corners.shape[0], 4, 1, dtype=torch.float64)], -1) @ h.mT
    assert torch.allclose(mapped[..., :2] / mapped[..., 2:], torch.tensor(START).double().expand(400, 4, 2), atol=1e-3)


def test_same_parameters_reach_sketch_and_target() -> None:
    sketch = render(sketch_points(), (SIZE, SIZE), 3.0).expand(3, -1, -1)
    target = cat_photo()
    plan = draw_augmentations(0, steps=1, per_step=4)
    out = apply_augmentations(torch.stack([sketch, target]), plan.grids(0))
    assert out.shape == (8, 3, SIZE, SIZE)
    # Image-major order: the first 4 outputs are the sketch under augmentations 0..3, exactly as warped alone.
    assert torch.equal(out[:4], apply_augmentations(sketch[None], plan.grids(0)))
    assert torch.equal(out[4:], apply_augmentations(target[None], plan.grids(0)))
    # And each is the reference's transform of that image with that augmentation's parameters.
    for k in range(4):
        assert (out[k] - reference_augmentation(sketch[None], plan, 0, k)[0]).abs().max() < 3e-4
        assert (out[4 + k] - reference_augmentation(target[None], plan, 0, k)[0]).abs().max() < 3e-4


def test_plan_cuts_and_cycles() -> None:
    plan = draw_augmentations(1, steps=6, per_step=2)
    short = plan.first(3)
    assert short.steps == 3 and torch.equal(short.grids(4), plan.grids(1))
    assert draw_augmentations(1, steps=5, per_step=0).per_step == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"crop": 0}, "crop"),
        ({"crop": 225}, "crop"),
        ({"distortion": -0.1}, "distortion"),
        ({"distortion": float("nan")}, "distortion"),
        ({"steps": -1}, "steps"),
    ],
)
def test_draw_rejects_impossible_parameters(changes: dict[str, float], message: str) -> None:
    arguments: dict[str, float] = {"steps": 2, "per_step": 2, **changes}
    with pytest.raises(ValueError, match=message):
        draw_augmentations(0, **arguments)  # type: ignore[arg-type]


def test_apply_rejects_grids_of_another_shape() -> None:
    single_warp = homography_grids(torch.eye(3)[None], SIZE)  # (1, H, W, 2): not the two-step grids
    with pytest.raises(ValueError, match=r"\(K, 2, H, W, 2\)"):
        apply_augmentations(torch.zeros(1, 3, SIZE, SIZE), single_warp)

"""Measure the figures quoted in clipasso_engine/augment.py: ``python3 tests/measure_augment_fidelity.py``.

The setting of test_augment.py's fidelity test (a rendered 16-stroke sketch, skimage's cat photo, 50 draws, the tiny
ResNet loss network), for the engine's two resamplings and for the single folded resampling it replaced, each
against torchvision's two-step reference: pair-loss deviation, point-gradient cosine, PSNR and largest pixel error.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import test_augment as setting
import torch
import torch.nn.functional as F
from tiny_models import build_tiny_models

from clipasso_engine.augment import apply_augmentations, draw_augmentations, homography_grids
from clipasso_engine.loss_network import load_loss_network
from clipasso_engine.losses import clip_pair_losses
from clipasso_engine.normalize import clip_normalize
from clipasso_engine.render import render

Augment = Callable[[torch.Tensor, int], torch.Tensor]
DRAWS = 50


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        network = load_loss_network(build_tiny_models(Path(folder)).settings(), torch.device("cpu"))
    target = setting.cat_photo()
    points = setting.sketch_points().requires_grad_(True)
    sketch = render(points, (224, 224), 3.0)[None, None]
    plan = draw_augmentations(11, steps=DRAWS, per_step=1)

    def figures(augment: Augment) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        copies = sketch.detach().repeat(DRAWS, 1, 1, 1).requires_grad_(True)
        sketches = torch.cat([augment(copies[k : k + 1], k) for k in range(DRAWS)])
        targets = torch.cat([augment(target[None], k) for k in range(DRAWS)])
        losses = clip_pair_losses(
            network(clip_normalize(sketches.expand(-1, 3, -1, -1))), network(clip_normalize(targets))
        )
        (grads,) = torch.autograd.grad(losses.sum(), copies)
        point_grads = torch.stack(
            [
                torch.autograd.grad(sketch, points, grads[k : k + 1], retain_graph=True)[0].flatten()
                for k in range(DRAWS)
            ]
        )
        return losses.detach(), point_grads, sketches.detach(), targets.detach()

    def folded(image: torch.Tensor, k: int) -> torch.Tensor:
        """The previous engine path: perspective and crop-and-resize as one homography, one resampling."""
        top, left = plan.offsets[k, 0].tolist()
        scale = 200 / 224
        crop = torch.tensor([[scale, 0, left], [0, scale, top], [0, 0, 1]], dtype=torch.float64)
        grid = homography_grids((plan.perspectives[k].double() @ crop).float(), 224)
        return F.grid_sample(image, grid.expand(image.shape[0], -1, -1, -1), align_corners=False)

    reference = figures(lambda image, k: setting.reference_augmentation(image, plan, k, 0))
    paths: dict[str, Augment] = {
        "two resamplings (engine)": lambda image, k: apply_augmentations(image, plan.grids(k)),
        "one folded resampling": folded,
    }
    for name, augment in paths.items():
        losses, grads, sketches, targets = figures(augment)
        deviation = (losses - reference[0]).abs() / reference[0]
        cosine = F.cosine_similarity(grads, reference[1], dim=1)
        psnr = min(
            setting.psnr(a, b)
            for a, b in [*zip(sketches, reference[2], strict=True), *zip(targets, reference[3], strict=True)]
        )
        pixel = max(float((sketches - reference[2]).abs().max()), float((targets - reference[3]).abs().max()))
        print(
            f"{name}: pair loss deviation max {deviation.max():.2e} (mean {deviation.mean():.2e}), "
            f"gradient cosine min {cosine.min():.4f} (mean {cosine.mean():.4f}), "
            f"PSNR min {psnr:.1f} dB, largest pixel error {pixel:.2e}"
        )


if __name__ == "__main__":
    main()

"""The presets' rendered-target convergence check, shared by ``test_presets.py`` and ``test_draft_preset.py``.

An 8-stroke sketch (``test_optimize.scene``) is rendered as the target, the strokes start 10 px (Gaussian, per
coordinate) away from it, and the preset's settings optimise them with their own augmentation plan. The measure is
the mean pixel error of the rendered result against the target, before and after.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from test_optimize import scene, target_image

from clipasso_engine.augment import draw_augmentations
from clipasso_engine.config import SketchSettings
from clipasso_engine.optimize import FeatureNetwork, OptimisationResult, optimise_strokes

#: The target scene of every preset check.
SCENE = 11


@dataclass(frozen=True)
class Convergence:
    before: float  # mean pixel error of the starting strokes
    after: float  # mean pixel error of the optimised strokes
    result: OptimisationResult

    @property
    def ratio(self) -> float:
        """The error left: after / before (0 is a perfect recovery, 1 no progress)."""
        return self.after / self.before


def rendered_target_convergence(
    network: FeatureNetwork, settings: SketchSettings, *, noise_seed: int = 1
) -> Convergence:
    """Optimise the perturbed start towards the rendered scene with ``settings`` (its seed draws the plan)."""
    truth = scene(SCENE, strokes=8)
    target = target_image(truth)
    noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(noise_seed))
    initial = (truth + 10 * noise)[None]
    plan = draw_augmentations(settings.seed, settings.iterations, settings.augmentations)
    result = optimise_strokes(initial, target, network, settings, plan, width=3.0)

    def image_error(points: torch.Tensor) -> float:
        return float((target_image(points) - target).abs().mean())

    return Convergence(image_error(initial[0]), image_error(result.points), result)

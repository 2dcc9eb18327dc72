"""The ``draft`` preset, a first look within a minute on a CPU: still converges on the rendered-target check."""

from __future__ import annotations

import torch
from test_optimize import scene, target_image
from tiny_models import TinyModels

from clipasso_engine.augment import draw_augmentations
from clipasso_engine.config import PRESETS, preset_settings
from clipasso_engine.loss_network import load_loss_network
from clipasso_engine.optimize import optimise_strokes


def test_draft_preset_still_converges(tiny_models: TinyModels) -> None:
    """The draft preset as shipped (150 iterations, 1 seed, 1 augmented pair from a pool of 16) on a rendered target.

    Measured (benchmarks/draft_convergence.py, scene 11, fp32): pixel error 0.54 of the start, best loss 0.41 of the
    first (fast: 0.20 and 0.11; the clean pair alone, no augmentation, 100 iterations: 0.89 and 0.52).
    """
    network = load_loss_network(tiny_models.settings(), torch.device("cpu"))
    # In fp32: this tests the preset's shortcuts, not the precision (test_precision.py compares bf16 with fp32).
    settings = preset_settings("draft").replace(precision="fp32")
    assert PRESETS["draft"] == {"iterations": 150, "seeds": 1, "augmentations": 1, "augmentation_pool": 16}
    truth = scene(11, strokes=8)
    target = target_image(truth)
    initial = (truth + 10 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1)))[None]
    plan = draw_augmentations(settings.seed, settings.iterations, settings.augmentations)
    result = optimise_strokes(initial, target, network, settings, plan, width=3.0)

    def image_error(points: torch.Tensor) -> float:
        return float((target_image(points) - target).abs().mean())

    before, after = image_error(initial[0]), image_error(result.points)
    assert result.iterations_run == 150
    assert after < 0.7 * before, (before, after)
    assert result.best_so_far[-1] < 0.55 * result.best_so_far[0]


def test_draft_is_the_cheapest_preset_per_sketch() -> None:
    """Network image passes per sketch (iterations × seeds × (1 + augmentations)): draft < fast < paper."""

    def passes(name: str) -> int:
        s = preset_settings(name)
        return s.iterations * s.seeds * (1 + s.augmentations)

    assert passes("draft") < passes("fast") < passes("paper")
    assert passes("draft") <= passes("fast") // 3

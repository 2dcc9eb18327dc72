"""The ``draft`` preset, a first look within a minute on a CPU: still converges on the rendered-target check."""

from __future__ import annotations

import torch
from convergence import rendered_target_convergence
from tiny_models import TinyModels

from clipasso_engine.config import PRESETS, preset_settings
from clipasso_engine.loss_network import load_loss_network


def test_draft_preset_still_converges(tiny_models: TinyModels) -> None:
    """The draft preset as shipped (150 iterations, 1 seed, 1 augmented pair from a pool of 16) on a rendered target.

    Measured (benchmarks/draft_convergence.py, scene 11, fp32): pixel error 0.54 of the start, best loss 0.41 of the
    first (fast: 0.20 and 0.11; the clean pair alone, no augmentation, 100 iterations: 0.89 and 0.52).
    """
    network = load_loss_network(tiny_models.settings(), torch.device("cpu"))
    # In fp32: this tests the preset's shortcuts, not the precision (test_presets.py compares auto's with fp32).
    settings = preset_settings("draft").replace(precision="fp32")
    assert PRESETS["draft"] == {"iterations": 150, "seeds": 1, "augmentations": 1, "augmentation_pool": 16}
    run = rendered_target_convergence(network, settings)
    assert run.result.iterations_run == 150
    assert run.after < 0.7 * run.before, (run.before, run.after)
    assert run.result.best_so_far[-1] < 0.55 * run.result.best_so_far[0]


def test_draft_is_the_cheapest_preset_per_sketch() -> None:
    """Network image passes per sketch (iterations × seeds × (1 + augmentations)): draft < fast < paper."""

    def passes(name: str) -> int:
        s = preset_settings(name)
        return s.iterations * s.seeds * (1 + s.augmentations)

    assert passes("draft") < passes("fast") < passes("paper")
    assert passes("draft") <= passes("fast") // 3

"""Presets: ``paper`` is exactly the method's defaults, and the ``fast`` preset's shortcuts still converge."""

from __future__ import annotations

import pytest
import torch
from test_optimize import scene, target_image
from tiny_models import TinyModels

from clipasso_engine.augment import draw_augmentations
from clipasso_engine.config import PRESETS, SketchSettings, preset_settings
from clipasso_engine.errors import SettingsError
from clipasso_engine.loss_network import load_loss_network
from clipasso_engine.optimize import optimise_strokes
from clipasso_engine.precision import resolve_precision


def test_paper_preset_is_exactly_the_defaults_of_the_method() -> None:
    paper = preset_settings("paper")
    assert paper == SketchSettings() and paper.preset == "paper"
    # The spec's numbers, spelled out once more so that a changed default is a deliberate act.
    assert (paper.strokes, paper.iterations, paper.seeds, paper.seed) == (16, 2000, 3, 0)
    assert (paper.lr, paper.eval_every, paper.early_stop_delta) == (1.0, 10, 1e-5)
    assert (paper.augmentations, paper.perspective_distortion, paper.crop_size, paper.augmentation_pool) == (
        4,
        0.5,
        200,
        0,
    )
    assert (paper.geometric_layers, paper.geometric_weights, paper.semantic_weight) == (
        ("layer2", "layer3"),
        (1.0, 1.0),
        0.1,
    )
    assert (paper.softmax_temperature, paper.random_walk_step) == (0.3, 0.025)
    assert (paper.loss_model, paper.loss_weights, paper.saliency_model) == ("RN101", "openai", "ViT-B-32-quickgelu")


def test_unknown_preset_and_bad_values_are_refused_with_the_choices() -> None:
    with pytest.raises(SettingsError, match="Choose one of: auto, paper, fast"):
        preset_settings("slow")
    with pytest.raises(SettingsError, match="strokes must be a whole number"):
        SketchSettings(strokes=0)
    with pytest.raises(SettingsError, match="Unknown setting"):
        SketchSettings.from_dict({"preset": "fast", "stroke": 3})
    assert SketchSettings.from_dict({"preset": "fast", "strokes": 8}) == preset_settings("fast").replace(strokes=8)


def test_fast_preset_still_converges(tiny_models: TinyModels) -> None:
    """The fast preset as shipped (300 iterations, 1 seed, 2 pooled augmentations) on a rendered target.

    Measured: mean pixel error 0.039 -> 0.0054 (the paper preset, 300 iterations: 0.0027), loss 3.01 -> 0.34.
    """
    network = load_loss_network(tiny_models.settings(), torch.device("cpu"))
    # In fp32: this tests the preset's shortcuts, not the precision (test_precision.py compares bf16 with fp32).
    settings = preset_settings("fast").replace(precision="fp32")
    assert PRESETS["fast"]["iterations"] == settings.iterations == 300
    truth = scene(11, strokes=8)
    target = target_image(truth)
    initial = (truth + 10 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1)))[None]
    plan = draw_augmentations(settings.seed, settings.iterations, settings.augmentations)
    result = optimise_strokes(initial, target, network, settings, plan, width=3.0)

    def image_error(points: torch.Tensor) -> float:
        return float((target_image(points) - target).abs().mean())

    before, after = image_error(initial[0]), image_error(result.points)
    assert result.iterations_run == 300
    assert after < 0.25 * before, (before, after)
    assert result.best_so_far[-1] < 0.3 * result.best_so_far[0]


#: The plan and initial-noise seeds of the averaged check: the first four, fixed before measuring.
AVERAGED_SEEDS = (0, 1, 2, 3)


def test_fast_preset_converges_under_the_precision_auto_picks(tiny_models: TinyModels) -> None:
    """The default path: the fast preset as shipped, precision "auto" (fp32 on the CPU), averaged over 4 plan/noise
    seeds because one run is chaotic (seed 0 of the test above: 0.196; the same with the initial points moved by
    1e-3 px: 0.372; 24 seeds: 0.13-0.46, mean 0.262 in fp32, 0.251 in bf16, 0.289 in bf16 with an fp32 stem).
    Measured on these seeds: mean error ratio 0.236 (fp32), 0.214 (bf16), 0.301 (bf16, fp32 stem), 0.322 (fp32 with
    the start moved by 1e-3 px): the bar is near the preset's typical ratio, so any numerical change may cross it.
    """
    cpu = torch.device("cpu")
    network = load_loss_network(tiny_models.settings(), cpu)
    truth = scene(11, strokes=8)
    target = target_image(truth)

    def image_error(points: torch.Tensor) -> float:
        return float((target_image(points) - target).abs().mean())

    ratios = []
    for seed in AVERAGED_SEEDS:
        settings = preset_settings("fast").replace(seed=seed)
        assert settings.precision == "auto"
        noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(1 + seed))
        initial = (truth + 10 * noise)[None]
        plan = draw_augmentations(settings.seed, settings.iterations, settings.augmentations)
        result = optimise_strokes(initial, target, network, settings, plan, width=3.0)
        assert result.precision == resolve_precision(cpu, "auto") and result.iterations_run == 300
        ratios.append(image_error(result.points) / image_error(initial[0]))
    assert sum(ratios) / len(ratios) < 0.25, ratios

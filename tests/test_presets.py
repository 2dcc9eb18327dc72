"""Presets: ``paper`` is exactly the method's defaults, and the ``fast`` preset's shortcuts still converge."""

from __future__ import annotations

import pytest
import torch
from convergence import rendered_target_convergence
from tiny_models import TinyModels

from clipasso_engine.config import PRESETS, SketchSettings, preset_settings
from clipasso_engine.errors import SettingsError
from clipasso_engine.loss_network import LossNetwork, load_loss_network
from clipasso_engine.precision import resolve_precision


@pytest.fixture(scope="module")
def network(tiny_models: TinyModels) -> LossNetwork:
    return load_loss_network(tiny_models.settings(), torch.device("cpu"))


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


def test_fast_preset_still_converges(network: LossNetwork) -> None:
    """The fast preset as shipped (300 iterations, 1 seed, 2 pooled augmentations) on a rendered target.

    Measured: mean pixel error 0.039 -> 0.0054 (the paper preset, 300 iterations: 0.0027), loss 3.01 -> 0.34.
    """
    # In fp32: this tests the preset's shortcuts, not the precision (the paired test below compares auto's with fp32).
    settings = preset_settings("fast").replace(precision="fp32")
    assert PRESETS["fast"]["iterations"] == settings.iterations == 300
    run = rendered_target_convergence(network, settings)
    assert run.result.iterations_run == 300
    assert run.after < 0.25 * run.before, (run.before, run.after)
    assert run.result.best_so_far[-1] < 0.3 * run.result.best_so_far[0]


#: The plan and initial-noise seeds of the averaged and the paired check: the first four, fixed before measuring.
AVERAGED_SEEDS = (0, 1, 2, 3)


def fast_ratio(network: LossNetwork, seed: int, precision: str) -> float:
    """The fast preset's error left on the rendered target, with plan seed ``seed`` and noise seed 1 + ``seed``."""
    settings = preset_settings("fast").replace(seed=seed, precision=precision)
    run = rendered_target_convergence(network, settings, noise_seed=1 + seed)
    assert run.result.precision == precision and run.result.iterations_run == 300
    return run.ratio


@pytest.fixture(scope="module")
def fp32_ratios(network: LossNetwork) -> dict[int, float]:
    """The fp32 reference runs, shared by the averaged and the paired check."""
    return {seed: fast_ratio(network, seed, "fp32") for seed in AVERAGED_SEEDS}


def test_fast_preset_converges_on_average_in_fp32(fp32_ratios: dict[int, float]) -> None:
    """The fast preset as shipped, in fp32, averaged over 4 plan/noise seeds because one run is chaotic (seed 0 of
    the test above: 0.196; the same with the initial points moved by 1e-3 px: 0.372; 24 seeds: 0.13-0.46, mean 0.262).
    Measured on these seeds: mean error ratio 0.236 (0.322 with the start moved by 1e-3 px): the bar is near the
    preset's typical ratio, so it holds fp32 only; the paired test below checks auto's precision against fp32.
    """
    ratios = list(fp32_ratios.values())
    assert sum(ratios) / len(ratios) < 0.25, ratios


#: How much worse than fp32 the mean error ratio over AVERAGED_SEEDS may be under auto's precision. Measured
#: (benchmarks/precision_convergence.py): one seed's paired bf16 - fp32 difference has a spread (sd) of 0.08 (12
#: seeds; 0.09 over 24 in an earlier session), so a mean of 4 has about 0.045: 0.12 is 2.7 of those, room for a
#: correct path on another CPU, whose kernels round differently and take another chaotic course. A path that stops
#: converging (ratio 0.7 or more, against fp32's 0.24 here) is 0.45 or more above fp32's.
PAIRED_TOLERANCE = 0.12


def test_fast_preset_converges_under_autos_precision_as_in_fp32(
    network: LossNetwork, fp32_ratios: dict[int, float]
) -> None:
    """The default path: the fast preset under the precision "auto" picks on this CPU, against fp32 on the same seeds.

    Measured here (AVX512-BF16: bf16): mean ratio 0.214 against fp32's 0.236, difference -0.023 (12 seeds: 0.262
    against 0.257, +0.004, 95 % interval -0.048..+0.056). Where "auto" is fp32 (a CPU without bf16
    arithmetic) there would be nothing to compare, so bf16, what "auto" picks where the CPU has it, is tested instead.
    """
    assert preset_settings("fast").precision == "auto"
    auto = resolve_precision(torch.device("cpu"), "auto")
    tested = auto if auto != "fp32" else "bf16"
    ratios = {seed: fast_ratio(network, seed, tested) for seed in AVERAGED_SEEDS}
    difference = sum(ratios[seed] - fp32_ratios[seed] for seed in AVERAGED_SEEDS) / len(AVERAGED_SEEDS)
    assert difference <= PAIRED_TOLERANCE, (tested, difference, ratios, fp32_ratios)

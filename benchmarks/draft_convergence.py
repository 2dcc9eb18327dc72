"""How far a preset's settings converge with the test models: the measure behind the ``draft`` preset's choice.

    python benchmarks/draft_convergence.py [--scenes 11,12,13]

For each candidate (iterations, augmentations, pool) it runs the rendered-target convergence check of
``tests/test_presets.py`` (an 8-stroke rendered target, the strokes started 10 px away, the tiny loss network of
``tests/tiny_models.py``) on several scenes, and prints the mean pixel error after / before and the best evaluation
loss last / first. It measures convergence only: time the same settings at full size with ``clipasso bench``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_optimize import scene, target_image
from tiny_models import build_tiny_models

from clipasso_engine.augment import draw_augmentations
from clipasso_engine.config import SketchSettings, preset_settings
from clipasso_engine.loss_network import load_loss_network
from clipasso_engine.optimize import optimise_strokes

#: (iterations, augmentations, augmentation_pool), 1 seed each; the fast preset's settings come first.
CANDIDATES = [(300, 2, 32), (100, 2, 32), (100, 2, 16), (100, 1, 16), (150, 1, 16), (120, 1, 16), (100, 0, 0)]


def convergence(settings: SketchSettings, network: torch.nn.Module, scene_seed: int) -> tuple[float, float]:
    """(image error after / before, best evaluation loss last / first) on one rendered target."""
    truth = scene(scene_seed, strokes=8)
    target = target_image(truth)
    initial = (truth + 10 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1)))[None]
    plan = draw_augmentations(settings.seed, settings.iterations, settings.augmentations)
    result = optimise_strokes(initial, target, network, settings, plan, width=3.0)

    def error(points: torch.Tensor) -> float:
        return float((target_image(points) - target).abs().mean())

    return error(result.points) / error(initial[0]), result.best_so_far[-1] / result.best_so_far[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", default="11,12,13", help="comma-separated scene seeds (11 is the test's)")
    parser.add_argument("--precision", default="fp32", help="the loss network's precision (the tests use fp32)")
    args = parser.parse_args()
    scenes = [int(s) for s in args.scenes.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        tiny = build_tiny_models(Path(folder))
        network = load_loss_network(tiny.settings(), torch.device("cpu"))
        print(f"{args.precision}:")
        print("| iterations | augs | pool | image error after/before (per scene) | loss last/first (per scene) |")
        print("|---|---|---|---|---|")
        for iterations, augs, pool in CANDIDATES:
            settings = preset_settings("fast").replace(
                iterations=iterations,
                augmentations=augs,
                augmentation_pool=pool,
                early_stop_delta=0.0,
                precision=args.precision,
            )
            results = [convergence(settings, network, s) for s in scenes]
            errors = ", ".join(f"{e:.3f}" for e, _ in results)
            losses = ", ".join(f"{v:.3f}" for _, v in results)
            print(f"| {iterations} | {augs} | {pool} | {errors} | {losses} |", flush=True)


if __name__ == "__main__":
    main()

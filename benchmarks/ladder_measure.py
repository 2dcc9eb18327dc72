"""The abstraction ladder's figures (issue 12): quality per level against independent sketches, and cost.

    python benchmarks/ladder_measure.py quality [--iterations 300] [--targets 3]
    python benchmarks/ladder_measure.py cost [--rn101] [--iterations 6] [--repeats 3]
    python benchmarks/ladder_measure.py importance [--strokes 16,32,64]

quality: on the test models (tests/tiny_models.py) and rendered targets (32 random strokes, as in
tests/test_optimize.py), strokes initialised on the target's ink the way the method samples its saliency map;
each ladder objective's level k against an independent k-stroke run from the same first k starting strokes, same
settings and iterations. The ratio is ladder / independent (1.0 = as good; above 1 = worse), for the clean loss
(the method's evaluation loss) and the rendered image's mean absolute error to the target.
cost: seconds per iteration of the shipped ladder against a plain run of the top level, alternated in one process.
importance: seconds of greedy and leave-one-out ranking, and the area under each one's deletion curve.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_optimize import scene, target_image
from tiny_models import build_tiny_models

from clipasso_engine import ladder as ladder_module
from clipasso_engine import optimize
from clipasso_engine.augment import draw_augmentations
from clipasso_engine.config import SketchSettings
from clipasso_engine.importance import rank_strokes
from clipasso_engine.loss_network import load_loss_network
from clipasso_engine.normalize import clip_normalize
from clipasso_engine.objective import batch_losses, iteration_losses
from clipasso_engine.strokes import initial_strokes

LEVELS = (4, 8, 16, 32)
CPU = torch.device("cpu")


class AllLevels(ladder_module.LadderObjective):
    """Option (a): every lower level's clean pair in every iteration's batch and objective."""

    def prefixes(self, iteration: int) -> tuple[int, ...]:
        return self.lower

    def combine(self, iteration: int, per_seed: Any, clean: Any, prefix_clean: Any) -> Any:
        return per_seed + prefix_clean.sum(dim=1), torch.cat([prefix_clean, clean[:, None]], dim=1)


class Weighted(ladder_module.LadderObjective):
    """Option (c'): the round robin, the lower level's pair weighted by the number of lower levels."""

    def combine(self, iteration: int, per_seed: Any, clean: Any, prefix_clean: Any) -> Any:
        objective, levels = super().combine(iteration, per_seed, clean, prefix_clean)
        extra = (objective - per_seed) * (len(self.lower) - 1)
        return objective + extra, levels


class Dropout(ladder_module.LadderObjective):
    """Option (b), nested dropout: each iteration one level (drawn uniformly) gets the method's 1 + A pairs."""

    def combine(self, iteration: int, per_seed: Any, clean: Any, prefix_clean: Any) -> Any:
        if iteration % self.eval_every == 0 and self.lower:
            return per_seed, torch.cat([prefix_clean, clean[:, None]], dim=1)
        return per_seed, clean.new_zeros(clean.shape[0], 0)


def _dropout_losses(levels: tuple[int, ...], seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed)

    def losses(points: Any, target: Any, clean_target: Any, network: Any, grids: Any, settings: Any, width: Any,
               autocast: Any, cached: Any, prefixes: Any) -> Any:  # fmt: skip
        k = levels[int(torch.randint(len(levels), (1,), generator=generator))]
        per_seed, clean = batch_losses(points[:, :k], target, clean_target, network, grids, settings, width, autocast,
                                       cached)  # fmt: skip
        if prefixes:  # a scored iteration: every level's clean loss, no gradients
            with torch.no_grad():
                _, top, prefix_clean = iteration_losses(points, target, clean_target, network, grids[:0], settings,
                                                        width, autocast, None, prefixes)  # fmt: skip
            return per_seed, top, prefix_clean
        return per_seed, clean, clean.new_zeros(clean.shape[0], 0)

    return losses


def _run(variant: str, initial: Any, target: Any, network: Any, settings: SketchSettings, seed: int) -> Any:
    plan = draw_augmentations(seed, settings.iterations, settings.augmentations)
    objectives = {"shipped": ladder_module.LadderObjective, "all": AllLevels, "weighted": Weighted, "dropout": Dropout}
    original_objective, original_losses = optimize.LadderObjective, optimize.iteration_losses
    optimize.LadderObjective = objectives.get(variant, ladder_module.LadderObjective)  # type: ignore[misc]
    if variant == "dropout":
        optimize.iteration_losses = _dropout_losses(settings.ladder, seed)
    try:
        return optimize.optimise_strokes(initial[None], target, network, settings, plan, width=3.0)
    finally:
        optimize.LadderObjective, optimize.iteration_losses = original_objective, original_losses  # type: ignore[misc]


def _clean_loss(points: Any, target: Any, network: Any, settings: SketchSettings) -> float:
    with torch.no_grad():
        clean_target = network(clip_normalize(target[None]))
        _, clean = batch_losses(points[None], target, clean_target, network, torch.zeros(0, 224, 224, 2), settings, 3.0)
    return float(clean[0])


def _image_error(points: Any, target: Any) -> float:
    return float((target_image(points) - target).abs().mean())


def _setup(target_seed: int) -> tuple[Any, Any]:
    target = target_image(scene(100 + target_seed, strokes=32))
    ink = (1 - target[0]).clamp_min(0)
    initial = initial_strokes(ink / ink.sum(), LEVELS[-1], 7 + target_seed)
    return target, initial


def quality(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp())
    models = build_tiny_models(folder)
    base = models.settings(iterations=args.iterations, seeds=1, augmentations=4, early_stop_delta=0.0, precision="fp32")
    network = load_loss_network(base, CPU)
    variants = args.variants.split(",")
    ratios: dict[str, list[list[tuple[float, float]]]] = {v: [] for v in variants}
    for t in range(args.targets):
        target, initial = _setup(t)
        independent = []
        for k in LEVELS:
            result = _run("plain", initial[:k], target, network, base.replace(strokes=k), t)
            independent.append((_clean_loss(result.points, target, network, base), _image_error(result.points, target)))
        print(f"target {t}: independent loss/error per level", [f"{a:.4f}/{b:.4f}" for a, b in independent])
        for variant in variants:
            settings = base.replace(strokes=LEVELS[-1], ladder=LEVELS)
            result = _run(variant, initial, target, network, settings, t)
            row = []
            for (loss, error), k in zip(independent, LEVELS, strict=True):
                prefix = result.points[:k]
                row.append((_clean_loss(prefix, target, network, base) / loss, _image_error(prefix, target) / error))
            ratios[variant].append(row)
            print(f"  {variant:9s} ratio loss/error per level", [f"{a:.3f}/{b:.3f}" for a, b in row], flush=True)
    print(f"\nmean ratios over {args.targets} targets, {args.iterations} iterations (loss / image error):")
    for variant, rows in ratios.items():
        cells = []
        for j, k in enumerate(LEVELS):
            loss = statistics.mean(r[j][0] for r in rows)
            error = statistics.mean(r[j][1] for r in rows)
            cells.append(f"{k}: {loss:.3f}/{error:.3f}")
        print(f"  {variant:9s} " + "  ".join(cells))


def cost(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp())
    if args.rn101:
        from clipasso_engine.bench import write_random_checkpoints

        paths = write_random_checkpoints(folder, ["RN101"])
        base = SketchSettings(loss_weights=str(paths["RN101"]))
    else:
        base = build_tiny_models(folder).settings()
    top = LEVELS[-1]
    network = load_loss_network(base, CPU)
    target, initial = _setup(0)
    shapes = {
        "paper (3 seeds, 4 augmentations)": base.replace(precision="fp32"),
        "fast (1 seed, 2 pooled augmentations)": base.replace(
            seeds=1, augmentations=2, augmentation_pool=32, precision="fp32"
        ),
    }
    for name, shape in shapes.items():
        shape = shape.replace(iterations=args.iterations, strokes=top, early_stop_delta=0.0)
        starts = torch.stack([initial + s for s in range(shape.seeds)])
        plan = draw_augmentations(0, shape.iterations, shape.augmentations)
        times: dict[str, list[float]] = {"plain": [], "ladder": []}
        runs = {"plain": shape, "ladder": shape.replace(ladder=LEVELS)}
        for repeat in range(args.repeats + 1):  # the first round warms up
            for label, settings in runs.items():
                start = time.perf_counter()
                optimize.optimise_strokes(starts, target, network, settings, plan, width=3.0)
                if repeat:
                    times[label].append((time.perf_counter() - start) / shape.iterations)
        plain, ladder = statistics.median(times["plain"]), statistics.median(times["ladder"])
        print(
            f"{'RN101 random weights' if args.rn101 else 'tiny models'}, {name}, {top} strokes, levels {LEVELS}: "
            f"plain {plain:.4f} s/it, ladder {ladder:.4f} s/it, ratio {ladder / plain:.3f} "
            f"(medians of {args.repeats} runs of {shape.iterations} iterations, threads {torch.get_num_threads()})",
            flush=True,
        )


def importance(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp())
    base = build_tiny_models(folder).settings(
        iterations=args.iterations, seeds=1, augmentations=4, early_stop_delta=0.0, precision="fp32"
    )
    network = load_loss_network(base, CPU)
    import clipasso_engine.importance as imp

    for count in (int(c) for c in args.strokes.split(",")):
        target, _ = _setup(0)
        ink = (1 - target[0]).clamp_min(0)
        initial = initial_strokes(ink / ink.sum(), count, 11)
        result = _run("plain", initial, target, network, base.replace(strokes=count), 0)
        start = time.perf_counter()
        for _ in range(3):
            _run("plain", initial, target, network, base.replace(strokes=count, iterations=10), 0)
        per_iteration = (time.perf_counter() - start) / 30
        for method, limit in (("greedy", 4096), ("leave-one-out", 0)):
            imp.GREEDY_LIMIT = limit
            start = time.perf_counter()
            ranking = rank_strokes(result.points, target, network, base, width=3.0)
            seconds = time.perf_counter() - start
            ordered = result.points[ranking.order]
            curve = [_clean_loss(ordered[: count - k], target, network, base) for k in range(1, count)]
            print(
                f"{count} strokes, {method}: {seconds:.2f} s ({seconds / per_iteration:.0f} iterations of the run), "
                f"mean loss after deleting the last k: {statistics.mean(curve):.4f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    q = commands.add_parser("quality")
    q.add_argument("--iterations", type=int, default=300)
    q.add_argument("--targets", type=int, default=3)
    q.add_argument("--variants", default="shipped,all,weighted,dropout")
    c = commands.add_parser("cost")
    c.add_argument("--rn101", action="store_true")
    c.add_argument("--iterations", type=int, default=20)
    c.add_argument("--repeats", type=int, default=3)
    i = commands.add_parser("importance")
    i.add_argument("--strokes", default="16,32")
    i.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"quality": quality, "cost": cost, "importance": importance}[args.command](args)


if __name__ == "__main__":
    main()

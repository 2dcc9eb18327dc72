"""The abstraction ladder's figures (issue 12): quality per level against independent sketches, and cost.

    PYTHONPATH=. python benchmarks/ladder_measure.py quality [--iterations 300] [--targets 3] [--first-target 0]
        [--references] [--greedy] [--shape paper|draft] [--cache DIR]
        [--variants prefix,aug,previous,topselect,w0.5,w2,sizes,stale,two,two-aug,progressive,all,weighted,dropout]
    PYTHONPATH=. python benchmarks/ladder_measure.py cost [--rn101] [--iterations 20] [--repeats 3] [--shapes …]
    PYTHONPATH=. python benchmarks/ladder_measure.py importance [--strokes 16,32,64]

quality: on the test models (tests/tiny_models.py) and rendered targets (32 random strokes, as in
tests/test_optimize.py), strokes initialised on the target's ink the way the method samples its saliency map;
each ladder objective's level k against an independent k-stroke run from the same first k starting strokes, same
settings, augmentation plan and iterations. The ratio is ladder / independent (1.0 = as good; above 1 = worse), for
the clean loss (the method's evaluation loss) and the rendered image's mean absolute error to the target.
``--references`` adds two rows: "reseeded", an independent run with another augmentation plan (the measure's own
seed-to-seed spread), and "plain32", the first k strokes of the independent 32-stroke run (a ladder for free).
``--greedy`` adds "cut", what a new sketch's ladder is (ladder_cut.py): the independent 32-stroke run's strokes in
its greedy importance order, level k its first k. The variants are trained objectives, in VARIANTS ("prefix" is
ladder.py's, a refine's ladder; "aug" the one every ladder used before the row budget; "previous" the one before).
cost: seconds per iteration of ladder.py's trained prefixes against a plain run of the top level, alternated in one
process (each ladder run paired with the plain run just before it: min and median of the paired ratios, and the load).
A new sketch's cut ladder is timed by ``clipasso bench --ladder``.
importance: seconds of greedy and leave-one-out ranking, and the area under each one's deletion curve.
"""

from __future__ import annotations

import argparse
import os
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


class Spec(ladder_module.LadderObjective):
    """The objectives tried, as prefix pairs (k, a) (``objective.Prefix``): ``trained_pairs(t)`` join the objective
    with ``weight`` each; at a scored iteration every lower level's clean pair joins the batch too, reported only.
    ``Spec`` itself is the previous ladder (one lower level's clean pair per iteration, in turn)."""

    weight = 1.0
    count = 1  # lower levels trained per iteration, in turn
    augmented = False  # each level's pair cycles through its clean pair and the A augmentations

    def trained_pairs(self, t: int) -> list[tuple[int, int]]:
        n, out = len(self.lower), []
        for slot in range(t * self.count, (t + 1) * self.count):
            a = (slot // n) % (1 + self.augmentations) - 1 if self.augmented else -1
            out.append((self.lower[slot % n], a))
        return out

    def prefixes(self, iteration: int) -> tuple[Any, ...]:
        scored = [(k, -1) for k in self.lower] if iteration % self.eval_every == 0 else []
        return tuple(self.trained_pairs(iteration) + scored) if self.lower else ()

    def combine(self, iteration: int, per_seed: Any, clean: Any, prefix_losses: Any) -> Any:
        n = len(self.trained_pairs(iteration)) if self.lower else 0
        objective = per_seed + self.weight * prefix_losses[:, :n].sum(dim=1) if n else per_seed
        if iteration % self.eval_every == 0:
            return objective, torch.cat([prefix_losses[:, n:], clean[:, None]], dim=1)
        return objective, clean.new_zeros(clean.shape[0], 0)


def _spec(**fields: Any) -> type:
    return type("Variant", (Spec,), fields)


class AllLevels(ladder_module.LadderObjective):
    """Every lower level's clean pair in every iteration's batch and objective."""

    def prefixes(self, iteration: int) -> tuple[Any, ...]:
        return tuple((k, -1) for k in self.lower)

    def combine(self, iteration: int, per_seed: Any, clean: Any, prefix_losses: Any) -> Any:
        return per_seed + prefix_losses.sum(dim=1), torch.cat([prefix_losses, clean[:, None]], dim=1)


class Scored(ladder_module.LadderObjective):
    """For objectives made by their losses function: the lower levels' clean pairs at scored iterations only,
    reported, not trained (Dropout, Progressive)."""

    def prefixes(self, iteration: int) -> tuple[Any, ...]:
        return tuple((k, -1) for k in self.lower) if iteration % self.eval_every == 0 else ()

    def combine(self, iteration: int, per_seed: Any, clean: Any, prefix_losses: Any) -> Any:
        if iteration % self.eval_every == 0 and self.lower:
            return per_seed, torch.cat([prefix_losses, clean[:, None]], dim=1)
        return per_seed, clean.new_zeros(clean.shape[0], 0)


def _scored_clean(points: Any, target: Any, clean_target: Any, network: Any, grids: Any, settings: Any, width: Any,
                  autocast: Any, prefixes: Any) -> tuple[Any, Any]:  # fmt: skip
    with torch.no_grad():
        _, top, prefix_losses = iteration_losses(points, target, clean_target, network, grids[:0], settings, width,
                                                 autocast, None, prefixes)  # fmt: skip
    return top, prefix_losses


def _dropout_losses(levels: tuple[int, ...], seed: int, iterations: int) -> Any:
    """Nested dropout: each iteration one level, drawn uniformly, gets the method's 1 + A pairs."""
    generator = torch.Generator().manual_seed(seed)

    def losses(points: Any, target: Any, clean_target: Any, network: Any, grids: Any, settings: Any, width: Any,
               autocast: Any, cached: Any, prefixes: Any) -> Any:  # fmt: skip
        k = levels[int(torch.randint(len(levels), (1,), generator=generator))]
        per_seed, clean = batch_losses(points[:, :k], target, clean_target, network, grids, settings, width, autocast,
                                       cached)  # fmt: skip
        if prefixes:  # a scored iteration: every level's clean loss, no gradients
            return per_seed, *_scored_clean(points, target, clean_target, network, grids, settings, width, autocast,
                                            prefixes)  # fmt: skip
        return per_seed, clean, clean.new_zeros(clean.shape[0], 0)

    return losses


def _progressive_losses(levels: tuple[int, ...], seed: int, iterations: int) -> Any:
    """Progressive schedule: over the first half of the run the trained strokes grow level by level (stage s trains
    only the first levels[s] strokes, with the method's 1 + A pairs); the second half is the previous ladder."""
    calls, previous = [0], Spec(levels, 10)

    def losses(points: Any, target: Any, clean_target: Any, network: Any, grids: Any, settings: Any, width: Any,
               autocast: Any, cached: Any, prefixes: Any) -> Any:  # fmt: skip
        t, calls[0] = calls[0], calls[0] + 1
        stage = t * 2 * len(levels) // iterations
        if stage >= len(levels) - 1:
            pairs = previous.prefixes(t)
            per_seed, clean, prefix_losses = iteration_losses(points, target, clean_target, network, grids, settings,
                                                              width, autocast, cached, pairs)  # fmt: skip
            objective, scored = previous.combine(t, per_seed, clean, prefix_losses)
            return objective, clean, scored[:, :-1] if prefixes else clean.new_zeros(clean.shape[0], 0)
        per_seed, clean = batch_losses(points[:, : levels[stage]], target, clean_target, network, grids, settings,
                                       width, autocast, cached)  # fmt: skip
        if prefixes:
            return per_seed, *_scored_clean(points, target, clean_target, network, grids, settings, width, autocast,
                                            prefixes)  # fmt: skip
        return per_seed, clean, clean.new_zeros(clean.shape[0], 0)

    return losses


def _stale_losses(levels: tuple[int, ...], seed: int, iterations: int) -> Any:
    """Every lower level in every iteration at weight 1 / (L - 1), from its latest gradient: the prefix schedule's
    fresh pairs (the trained pair; every lower level's clean pair at a scored iteration) give each level a new
    gradient when its turn comes, and until the next turn the level joins the step with that stored gradient (a
    linear term whose gradient it is). Measured with a separate pass for the fresh pairs (same numbers as one
    batch with the prefix rows cut off the graph, which is what a product version would do)."""
    state: dict[str, Any] = {"t": 0, "grads": {}}

    def losses(points: Any, target: Any, clean_target: Any, network: Any, grids: Any, settings: Any, width: Any,
               autocast: Any, cached: Any, prefixes: Any) -> Any:  # fmt: skip
        t, state["t"] = state["t"], state["t"] + 1
        schedule = state.setdefault(
            "schedule", ladder_module.LadderObjective(levels, settings.eval_every, grids.shape[0])
        )
        per_seed, clean, _ = iteration_losses(points, target, clean_target, network, grids, settings, width, autocast,
                                              cached, ())  # fmt: skip
        fresh = schedule.prefixes(t)
        scored = clean.new_zeros(clean.shape[0], 0)
        if fresh:
            leaf = points.detach().requires_grad_(True)
            _, _, pair_losses = iteration_losses(leaf, target, clean_target, network, grids, settings, width,
                                                 autocast, cached, fresh)  # fmt: skip
            for column, (k, _) in enumerate(fresh):
                (gradient,) = torch.autograd.grad(pair_losses[:, column].sum(), leaf, retain_graph=True)
                state["grads"][k] = gradient
            if schedule.scored(t):
                scored = pair_losses.detach()
        weight = 1.0 / max(len(levels) - 1, 1)
        linear = sum((g * points).sum(dim=(1, 2, 3)) for g in state["grads"].values())
        return per_seed + weight * linear if state["grads"] else per_seed, clean, scored

    return losses


class TopSelection(ladder_module.LevelSelection):
    """Diagnostic: select the kept points on the top level's clean loss alone (the ladder's own score is the mean)."""

    def record_levels(self, levels: Any, points: Any) -> None:
        levels = levels.detach().to(self.best_levels.dtype)
        previous = self.best_loss
        self.record(levels[:, -1], points)
        self.best_levels = torch.where((self.best_loss < previous)[:, None], levels, self.best_levels)


class Weighted(ladder_module.LadderObjective):
    """The prefix objective with the lower levels' weight ``weight`` instead of 1."""

    weight = 2.0

    def combine(self, iteration: int, per_seed: Any, clean: Any, prefix_losses: Any) -> Any:
        objective, levels = super().combine(iteration, per_seed, clean, prefix_losses)
        return per_seed + self.weight * (objective - per_seed), levels


class SizeTurns(ladder_module.LadderObjective):
    """The prefix objective with turns in proportion to each lower level's stroke count (smooth weighted round
    robin) instead of one each in turn; each level still cycles through its clean pair and the augmentations."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plan: list[Any] = []

    def trained(self, iteration: int) -> Any:
        base = super().trained(iteration)
        if base is None:
            return None
        while len(self._plan) <= iteration:  # replay the schedule once, in order
            self._plan.append(None)
        if self._plan[iteration] is None:
            credit, seen = [0.0] * len(self.lower), [0] * len(self.lower)
            total = sum(self.lower)
            for t in range(iteration + 1):
                if super().trained(t) is None:
                    continue
                credit = [c + k / total for c, k in zip(credit, self.lower, strict=True)]
                j = max(range(len(credit)), key=credit.__getitem__)
                credit[j] -= 1
                pair = seen[j] % (1 + self.augmentations) - 1
                seen[j] += 1
                self._plan[t] = (self.lower[j], pair)
        return self._plan[iteration]


VARIANTS: dict[str, dict[str, Any]] = {
    "prefix": {"objective": ladder_module.LadderObjective},  # ladder.py's trained prefixes: a refine's ladder
    "previous": {"objective": Spec},  # round robin, one lower level's clean pair per iteration
    "all": {"objective": AllLevels},
    "weighted": {"objective": _spec(weight=3.0)},  # the previous, each lower level x(L - 1): equal weight per level
    "dropout": {"objective": Scored, "losses": _dropout_losses},
    "progressive": {"objective": Scored, "losses": _progressive_losses},
    "topselect": {"objective": Spec, "selection": TopSelection},
    "w0.5": {"objective": _spec(weight=0.5)},
    "aug": {"objective": _spec(augmented=True)},  # the objective shipped in session 3 (every iteration one pair)
    "w2": {"objective": Weighted},
    "stale": {"objective": Scored, "losses": _stale_losses},
    "sizes": {"objective": SizeTurns},
    "two": {"objective": _spec(count=2)},
    "two-aug": {"objective": _spec(count=2, augmented=True)},
}


def _run(variant: str, initial: Any, target: Any, network: Any, settings: SketchSettings, seed: int) -> Any:
    plan = draw_augmentations(seed, settings.iterations, settings.augmentations)
    spec = VARIANTS.get(variant, VARIANTS["prefix"])
    saved = optimize.LadderObjective, optimize.iteration_losses, optimize.LevelSelection
    optimize.LadderObjective = spec["objective"]  # type: ignore[misc]
    optimize.LevelSelection = spec.get("selection", ladder_module.LevelSelection)  # type: ignore[misc]
    if "losses" in spec:
        optimize.iteration_losses = spec["losses"](settings.ladder, seed, settings.iterations)
    try:
        return optimize.optimise_strokes(initial[None], target, network, settings, plan, width=3.0)
    finally:
        optimize.LadderObjective, optimize.iteration_losses, optimize.LevelSelection = saved  # type: ignore[misc]


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
    """Each variant's level k over the independent k-stroke run (same starts, plan, settings and iterations).
    Two references: "reseeded", an independent k-stroke run with another augmentation plan (the seed-to-seed
    spread of the measure itself), and "plain32", the first k strokes of the independent 32-stroke run."""
    folder = Path(tempfile.mkdtemp())
    models = build_tiny_models(folder)
    shape = {"paper": {"augmentations": 4}, "draft": {"augmentations": 1, "augmentation_pool": 16}}[args.shape]
    base = models.settings(iterations=args.iterations, seeds=1, early_stop_delta=0.0, precision="fp32", **shape)
    network = load_loss_network(base, CPU)
    variants = [v for v in args.variants.split(",") if v]
    references = ["reseeded", "plain32"] if args.references else []
    references += ["cut", "cut-loo"] if args.greedy else []
    ratios: dict[str, list[list[tuple[float, float]]]] = {v: [] for v in references + variants}

    def score(points: Any) -> tuple[float, float]:
        return _clean_loss(points, target, network, base), _image_error(points, target)

    for t in range(args.first_target, args.first_target + args.targets):
        target, initial = _setup(t)
        independent, runs = [], {}
        key = f"{args.shape}-{args.iterations}-{t}"
        cache = Path(args.cache) / f"independent-{key}.pt" if args.cache else None
        if cache is not None and cache.exists() and not args.references:
            runs = torch.load(cache)  # the test models and runs are deterministic: the same points every time
        for k in LEVELS:
            if k not in runs:
                runs[k] = _run("plain", initial[:k], target, network, base.replace(strokes=k), t).points
            independent.append(score(runs[k]))
        if cache is not None:
            torch.save(runs, cache)
        print(f"target {t}: independent loss/error per level", [f"{a:.4f}/{b:.4f}" for a, b in independent])
        prefixes: dict[str, Any] = {}
        if args.greedy:  # the shipped ladder of a new sketch (ladder_cut.py): the plain run cut in its greedy order
            order = rank_strokes(runs[LEVELS[-1]], target, network, base.replace(strokes=LEVELS[-1]), width=3.0).order
            prefixes["cut"] = [runs[LEVELS[-1]][order[:k]] for k in LEVELS]
            # The same cut in leave-one-out order (what blocks above importance.GREEDY_LIMIT strokes get).
            top = base.replace(strokes=LEVELS[-1])
            order = rank_strokes(runs[LEVELS[-1]], target, network, top, width=3.0, greedy_limit=0).order
            prefixes["cut-loo"] = [runs[LEVELS[-1]][order[:k]] for k in LEVELS]
        if args.references:
            prefixes["plain32"] = [runs[LEVELS[-1]][:k] for k in LEVELS]
            prefixes["reseeded"] = [
                _run("plain", initial[:k], target, network, base.replace(strokes=k), t + 1000).points for k in LEVELS
            ]
        for variant in variants:
            settings = base.replace(strokes=LEVELS[-1], ladder=LEVELS)
            result = _run(variant, initial, target, network, settings, t)
            prefixes[variant] = [result.points[:k] for k in LEVELS]
        for name, points in prefixes.items():
            row = []
            for (loss, error), prefix in zip(independent, points, strict=True):
                mine = score(prefix)
                row.append((mine[0] / loss, mine[1] / error))
            ratios[name].append(row)
            print(f"  {name:9s} ratio loss/error per level", [f"{a:.3f}/{b:.3f}" for a, b in row], flush=True)
    print(f"\nmean ratios over {args.targets} targets, {args.iterations} iterations, {args.shape} shape", end="")
    print(" (loss / image error):")
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
        "draft (1 seed, 1 pooled augmentation)": base.replace(
            seeds=1, augmentations=1, augmentation_pool=16, precision="fp32"
        ),
    }
    for name, shape in shapes.items():
        if name.split()[0] not in args.shapes.split(","):
            continue
        shape = shape.replace(iterations=args.iterations, strokes=top, early_stop_delta=0.0)
        starts = torch.stack([initial + s for s in range(shape.seeds)])
        plan = draw_augmentations(0, shape.iterations, shape.augmentations)
        times: dict[str, list[float]] = {"plain": [], "ladder": []}
        runs = {"plain": shape, "ladder": shape.replace(ladder=LEVELS)}
        for repeat in range(args.repeats + 1):  # the first round warms up, on 2 iterations
            for label, settings in runs.items():
                settings = settings if repeat else settings.replace(iterations=2)
                start = time.perf_counter()
                optimize.optimise_strokes(starts, target, network, settings, plan, width=3.0)
                if repeat:
                    times[label].append((time.perf_counter() - start) / shape.iterations)
        plain, ladder = statistics.median(times["plain"]), statistics.median(times["ladder"])
        # Each ladder run against the plain run just before it: a shared machine's load drifts between rounds.
        paired = [b / a for a, b in zip(times["plain"], times["ladder"], strict=True)]
        print(
            f"{'RN101 random weights' if args.rn101 else 'tiny models'}, {name}, {top} strokes, levels {LEVELS}: "
            f"plain {plain:.4f} s/it, ladder {ladder:.4f} s/it, ratio of medians {ladder / plain:.3f}, paired "
            f"ratios min {min(paired):.3f} median {statistics.median(paired):.3f} "
            f"({args.repeats} alternated runs of {shape.iterations} iterations each, threads "
            f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f})",
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
    q.add_argument("--variants", default="prefix")
    q.add_argument("--first-target", type=int, default=0)
    q.add_argument("--references", action="store_true", help="also the reseeded and plain32 references")
    q.add_argument("--greedy", action="store_true", help='also "cut", the shipped ladder: the first k strokes of the '
                   "plain 32-stroke run in its greedy importance order (ladder_cut.py)")  # fmt: skip
    q.add_argument("--cache", default="", help="a folder to keep the independent runs' points in, between runs")
    q.add_argument("--shape", choices=("paper", "draft"), default="paper", help="paper: 4 augmentations; draft: "
                   "1 from a pool of 16 (give --iterations 150 for the draft preset's)")  # fmt: skip
    c = commands.add_parser("cost")
    c.add_argument("--rn101", action="store_true")
    c.add_argument("--iterations", type=int, default=20, help="a multiple of 10 keeps the scored iterations' share")
    c.add_argument("--repeats", type=int, default=3)
    c.add_argument("--shapes", default="paper,fast", help="which of the paper, fast and draft shapes to time")
    i = commands.add_parser("importance")
    i.add_argument("--strokes", default="16,32")
    i.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"quality": quality, "cost": cost, "importance": importance}[args.command](args)


if __name__ == "__main__":
    main()

"""The optimisation loop: Adam on control points against the CLIP loss, all seeds in one batch (spec §5, §6).

One iteration's losses (every seed, every augmentation, a ladder's prefixes in one network batch): ``objective.py``.
The clean pair is part of every training batch, so its loss *is* the evaluation loss of the points before the step:
scoring every ``eval_every`` iterations costs nothing extra, and we keep exactly the scored points. No host-device
synchronisation inside the loop except progress reports, at a bounded rate (one read each).
Which points are kept and early stop: ``selection.py`` (with a ladder, ``ladder.py``); precision: ``precision.py``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .augment import AugmentationPlan
from .config import SketchSettings
from .errors import Cancelled, ModelConfigError
from .ladder import LadderObjective, LevelSelection
from .objective import FeatureNetwork, batch_losses, iteration_losses, pair_features, sketch_images, target_features
from .precision import autocast_context, flush_denormals, loss_scale, resolve_precision

__all__ = [
    "FeatureNetwork",
    "OptimisationResult",
    "Progress",
    "RunControl",
    "autocast_context",
    "batch_losses",
    "optimise_strokes",
    "sketch_images",
    "target_features",
]


class RunControl:
    """Thread-safe requests to a running sketch: ``cancel()`` (no result) or ``stop()`` (keep the best so far)."""

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._stop = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def stop(self) -> None:
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()


@dataclass
class Progress:
    """One progress report. ``best_points()`` syncs with the device, so call it only when you need the strokes."""

    iteration: int  # iterations completed
    iterations: int
    loss: float  # training loss of the best seed at this iteration (mean over its top level's pairs)
    best_loss: float  # lowest evaluation loss so far (over seeds; with trained ladder levels, their mean)
    elapsed_s: float
    eta_s: float
    best_points: Callable[[], Tensor]  # (N, 4, 2) of the current best seed (canvas px; image px through sketch())
    image_size: tuple[int, int] | None = None  # (W, H) of the input image, when best_points() is in image px
    level_losses: list[float] | None = None  # with a ladder: each level's clean loss of the current best points
    levels: tuple[int, ...] = ()  # with a ladder: its levels' stroke counts, in the order of level_losses


@dataclass
class OptimisationResult:
    points: Tensor  # (N, 4, 2) canvas px: the best scored points of the best seed
    seed_index: int  # which of the batched seeds won
    best_loss: float  # its evaluation loss
    seed_losses: list[float]  # best evaluation loss of every seed
    iterations_run: int
    stopped_early: bool  # the user asked to stop, or every seed met the early-stop rule
    precision: str = "fp32"  # the loss network's concrete precision (what "auto" resolved to): record it
    best_so_far: list[float] = field(default_factory=list)  # lowest evaluation loss so far, after each evaluation
    level_losses: list[float] = field(default_factory=list)  # the kept points' clean loss per ladder level


#: Set-up progress: called as ``on_setup(done, total)`` with the target passes done before the first iteration
#: (the clean target plus, for a pooled preset, each pooled augmentation's target): (0, total) first, then after each.
SetupCallback = Callable[[int, int], None]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _setup_passes(
    network: FeatureNetwork,
    target: Tensor,
    pooled_grids: list[Tensor],
    autocast: contextlib.AbstractContextManager[object],
    control: RunControl,
    on_setup: SetupCallback | None,
) -> list[dict[str, Tensor]]:
    """The set-up passes: the clean target's features, then the target's under each pooled step's grids."""
    total = 1 + len(pooled_grids)
    passes: list[dict[str, Tensor]] = []
    while True:
        if on_setup is not None:
            _synchronize(target.device)  # report passes done, not passes queued on the device
            on_setup(len(passes), total)
        if len(passes) == total:
            return passes
        # Before the first iteration there are no scored strokes yet, so "stop" is a cancel too.
        if control.cancelled or control.stopped:
            raise Cancelled("The sketch was cancelled.")
        if passes:
            passes.append(target_features(network, target, pooled_grids[len(passes) - 1], autocast))
        else:
            with torch.no_grad():
                passes.append(pair_features(network, target.unsqueeze(0), autocast))


def _check(start_finite: float, loss_finite: float, completed: int, precision: str, settings: SketchSettings) -> None:
    """Raise at a sync point where the run went non-finite, instead of optimising NaN to the last iteration."""
    if not start_finite:
        raise ValueError("initial_points must be finite: repair or drop the strokes with NaN or infinite points")
    if not loss_finite:
        raise ModelConfigError(
            f"The loss became NaN or infinite within the first {completed} iterations ({precision}); check that the "
            f"loss-network weights {settings.loss_weights!r} belong to {settings.loss_model}, or try --precision fp32."
        )


@flush_denormals()
def optimise_strokes(
    initial_points: Tensor,
    target: Tensor,
    network: FeatureNetwork,
    settings: SketchSettings,
    plan: AugmentationPlan,
    *,
    width: float,
    control: RunControl | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_interval_s: float = 0.25,
    on_setup: SetupCallback | None = None,
    locked: Tensor | None = None,
) -> OptimisationResult:
    """Optimise S seeds' strokes at once and return the best scored strokes of the best seed.

    initial_points: (S, N, 4, 2) canvas px on the target device; target: (3, 224, 224) in [0, 1], same device;
    plan: this run's augmentations (``plan.per_step`` must equal ``settings.augmentations``) on the same device;
    width: stroke width in canvas pixels; on_setup: see :data:`SetupCallback`.
    locked: (N,) bool, True for strokes that are constants (a refine's locked strokes): rendered and in the loss,
    but restored after every step, so Adam never moves them and they come back bit-identical.
    Raises ``ModelConfigError`` when the loss becomes NaN or infinite (on a GPU, found at the next sync point).
    """
    device = initial_points.device
    precision = resolve_precision(device, settings.precision)
    autocast = autocast_context(device, precision)
    scale = loss_scale(autocast)
    control = control or RunControl()
    points = initial_points.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([points], lr=settings.lr)
    # A pooled run cycles through a fixed set of augmentation steps, so each target's features are computed once.
    if settings.augmentation_pool:
        plan = plan.first(settings.augmentation_pool)
    pooled_grids = [plan.grids(k) for k in range(plan.steps)] if settings.augmentation_pool else []
    clean_target, *pool = _setup_passes(network, target, pooled_grids, autocast, control, on_setup)

    # Without a ladder the objective has one level, the N strokes, and is exactly the plain method's.
    ladder = LadderObjective(settings.ladder or (initial_points.shape[1],), settings.eval_every, plan.per_step)
    if ladder.levels[-1] != initial_points.shape[1]:
        raise ValueError(f"the ladder's top level {ladder.levels[-1]} must be the {initial_points.shape[1]} strokes")
    selection = LevelSelection(points, settings.early_stop_delta, len(ladder.levels))
    start_finite = torch.isfinite(initial_points).all()
    loss_finite = torch.ones((), dtype=torch.bool, device=device)  # every iteration's loss so far
    start = last_sync = time.monotonic()
    completed = 0
    stopped = False
    for iteration in range(settings.iterations):
        if control.cancelled:
            raise Cancelled("The sketch was cancelled.")
        if control.stopped and completed > 0:
            stopped = True
            break
        before = points.detach().clone()
        cached = pool[iteration % len(pool)] if pool else None
        grids, prefixes = plan.grids(iteration), ladder.prefixes(iteration)
        per_seed, clean, prefix_losses = iteration_losses(
            points, target, clean_target, network, grids, settings, width, autocast, cached, prefixes
        )
        total, levels = ladder.combine(iteration, per_seed, clean, prefix_losses)
        optimiser.zero_grad(set_to_none=True)
        (total.sum() * scale).backward()
        optimiser.step()
        with torch.no_grad():
            loss_finite = loss_finite & torch.isfinite(total).all()
            if device.type == "cpu":  # a read costs nothing on the CPU: stop before the next render meets NaN points
                _check(1.0, float(loss_finite), completed + 1, precision, settings)
            if iteration % settings.eval_every == 0:
                selection.record_levels(levels, before)
            # A seed that met the early-stop rule keeps its points: the method stops that run there.
            keep = selection.stopped[:, None, None, None]
            if locked is not None:  # locked strokes are constants: ``before`` is their initial value, every step
                keep = keep | locked.to(device)[None, :, None, None]
            points.copy_(torch.where(keep, before, points))
        completed = iteration + 1

        # The loop's only host-device synchronisation, at a bounded rate and one read each: progress, the
        # finiteness check and early stop. After the last iteration the result's own transfer does it.
        now = time.monotonic()
        last = completed == settings.iterations
        if (now - last_sync < progress_interval_s and not last) or (last and on_progress is None):
            continue
        last_sync = now
        leader = selection.leader()
        flags = torch.stack([selection.stopped.all(), start_finite, loss_finite]).float()
        head = [per_seed.detach()[leader, None].float(), selection.best_loss[leader, None], flags]
        loss, best, all_stopped, start_ok, loss_ok, *level_losses = torch.cat(
            [*head, selection.best_levels[leader]]
        ).tolist()
        _check(start_ok, loss_ok, completed, precision, settings)
        if on_progress is not None:
            elapsed = now - start
            eta = elapsed / completed * (settings.iterations - completed)
            report = Progress(completed, settings.iterations, loss, best, elapsed, eta, selection.leader_points)
            if settings.ladder:
                report.level_losses, report.levels = level_losses, settings.ladder
            on_progress(report)
        if all_stopped and not last:
            stopped = True
            break

    # One transfer for every number the result needs: the loop's only synchronisation besides progress.
    flags = torch.stack([start_finite, loss_finite]).float()
    history = torch.stack(selection.best_so_far or [flags[0]])
    numbers = torch.cat([flags, selection.best_loss, selection.best_levels.flatten(), history]).tolist()
    _check(numbers[0], numbers[1], completed, precision, settings)
    seeds, count = initial_points.shape[0], len(ladder.levels)
    best_by_seed = numbers[2 : 2 + seeds]
    winner = min(range(seeds), key=best_by_seed.__getitem__)
    level_losses = numbers[2 + seeds + winner * count : 2 + seeds + (winner + 1) * count]
    history_at = 2 + seeds + seeds * count
    return OptimisationResult(
        points=selection.best_points[winner].detach().clone(),
        seed_index=winner,
        best_loss=best_by_seed[winner],
        seed_losses=best_by_seed,
        iterations_run=completed,
        stopped_early=stopped,
        precision=precision,
        best_so_far=numbers[history_at:] if selection.best_so_far else [],
        level_losses=level_losses,
    )

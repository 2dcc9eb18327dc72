"""The optimisation loop: Adam on control points against the CLIP loss, all seeds in one batch (spec §5, §6).

What makes it fast without changing the method:
- every seed's sketch and every augmentation go through the loss network as one batch;
- the seeds share each iteration's augmentation parameters (each seed still sees the method's distribution), so the
  augmented targets are computed once per iteration, without gradients, and the clean target once per run;
- the clean pair is part of every training batch, so its loss *is* the evaluation loss of the points before the step:
  scoring every ``eval_every`` iterations costs nothing extra, and we keep exactly the scored points;
- the per-seed total is summed (not averaged) over seeds, so each seed gets exactly the gradient it would get alone;
- no host-device synchronisation inside the loop except progress reports, at a bounded rate (one read each).
Which points are kept and early stop: ``selection.py``; the loss network's precision: ``precision.py``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .augment import AugmentationPlan, apply_augmentations
from .config import CANVAS, SketchSettings
from .errors import Cancelled, ModelConfigError
from .losses import clip_pair_losses
from .normalize import clip_normalize
from .precision import autocast_context, flush_denormals, loss_scale, resolve_precision
from .render import render
from .selection import SeedSelection

FeatureNetwork = Callable[[Tensor], Mapping[str, Tensor]]


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
    loss: float  # training loss of the best seed at this iteration (mean over its pairs)
    best_loss: float  # lowest evaluation loss so far (over seeds)
    elapsed_s: float
    eta_s: float
    best_points: Callable[[], Tensor]  # (N, 4, 2) of the current best seed (canvas px; image px through sketch())
    image_size: tuple[int, int] | None = None  # (W, H) of the input image, when best_points() is in image px


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


#: Set-up progress: called as ``on_setup(done, total)`` with the target passes done before the first iteration
#: (the clean target plus, for a pooled preset, each pooled augmentation's target): (0, total) first, then after each.
SetupCallback = Callable[[int, int], None]


def sketch_images(points: Tensor, width: float) -> Tensor:
    """Render (S, N, 4, 2) canvas points to (S, 3, 224, 224) images in [0, 1] (grey repeated to RGB)."""
    grey = render(points, (CANVAS, CANVAS), stroke_width=width)
    return grey.unsqueeze(1).expand(-1, 3, -1, -1)


def _pair_features(
    network: FeatureNetwork, images: Tensor, autocast: contextlib.AbstractContextManager[object]
) -> dict[str, Tensor]:
    with autocast:
        return dict(network(clip_normalize(images)))


def _broadcast_targets(clean: Mapping[str, Tensor], augmented: Mapping[str, Tensor], seeds: int) -> dict[str, Tensor]:
    """Target features laid out like the sketch batch: S clean rows, then S·A augmented rows (seed-major)."""
    out = {}
    for name, value in clean.items():
        rows = [value.expand(seeds, *value.shape[1:])]
        if name in augmented and augmented[name].shape[0]:
            rows.append(augmented[name].repeat(seeds, *([1] * (value.dim() - 1))))
        out[name] = torch.cat(rows)
    return out


def target_features(
    network: FeatureNetwork,
    target: Tensor,
    grids: Tensor,
    autocast: contextlib.AbstractContextManager[object] | None = None,
) -> dict[str, Tensor]:
    """Features of the target (3, 224, 224) under each of the (A, 224, 224, 2) grids, without gradients."""
    if not grids.shape[0]:
        return {}
    with torch.no_grad():
        return _pair_features(
            network, apply_augmentations(target.unsqueeze(0), grids), autocast or contextlib.nullcontext()
        )


def batch_losses(
    points: Tensor,
    target: Tensor,
    clean_target_features: Mapping[str, Tensor],
    network: FeatureNetwork,
    grids: Tensor,
    settings: SketchSettings,
    width: float,
    autocast: contextlib.AbstractContextManager[object] | None = None,
    augmented_target_features: Mapping[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """One iteration's losses for S batched seeds.

    points: (S, N, 4, 2); target: (3, 224, 224) in [0, 1]; grids: (A, 224, 224, 2) augmentation grids shared by
    all seeds. Returns (per_seed_training_loss (S,), clean_pair_loss (S,)): the training loss is the mean over the
    seed's 1 + A pairs; the clean pair loss is the method's evaluation loss of these points.
    ``augmented_target_features``: the target's features under ``grids`` when already known (a cached pool).
    """
    autocast = autocast or contextlib.nullcontext()
    seeds, augs = points.shape[0], grids.shape[0]
    # Warp the grey sketches, then repeat them to RGB: a third of the resampling work of warping three equal channels.
    # No finiteness read here (a host sync per iteration): the loop checks its loss at its own sync points.
    grey = render(points, (CANVAS, CANVAS), stroke_width=width, check_finite=False).unsqueeze(1)
    if augs:
        grey = torch.cat([grey, apply_augmentations(grey, grids)])
    sketch_features = _pair_features(network, grey.expand(-1, 3, -1, -1), autocast)
    augmented_targets = augmented_target_features
    if augmented_targets is None:
        augmented_targets = target_features(network, target, grids, autocast)
    targets = _broadcast_targets(clean_target_features, augmented_targets, seeds)
    pairs = clip_pair_losses(
        sketch_features, targets, settings.geometric_layers, settings.geometric_weights, settings.semantic_weight
    )
    clean = pairs[:seeds]
    per_seed = (clean + pairs[seeds:].reshape(seeds, augs).sum(dim=1)) / (1 + augs)
    return per_seed, clean


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
                passes.append(_pair_features(network, target.unsqueeze(0), autocast))


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

    selection = SeedSelection(points, settings.early_stop_delta)
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
        per_seed, clean = batch_losses(
            points, target, clean_target, network, plan.grids(iteration), settings, width, autocast, cached
        )
        optimiser.zero_grad(set_to_none=True)
        (per_seed.sum() * scale).backward()
        optimiser.step()
        with torch.no_grad():
            loss_finite = loss_finite & torch.isfinite(per_seed).all()
            if device.type == "cpu":  # a read costs nothing on the CPU: stop before the next render meets NaN points
                _check(1.0, float(loss_finite), completed + 1, precision, settings)
            if iteration % settings.eval_every == 0:
                selection.record(clean, before)
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
        loss, best, all_stopped, start_ok, loss_ok = torch.cat(
            [per_seed.detach()[leader, None].float(), selection.best_loss[leader, None], flags]
        ).tolist()
        _check(start_ok, loss_ok, completed, precision, settings)
        if on_progress is not None:
            elapsed = now - start
            eta = elapsed / completed * (settings.iterations - completed)
            on_progress(Progress(completed, settings.iterations, loss, best, elapsed, eta, selection.leader_points))
        if all_stopped and not last:
            stopped = True
            break

    # One transfer for every number the result needs: the loop's only synchronisation besides progress.
    flags = torch.stack([start_finite, loss_finite]).float()
    numbers = torch.cat([flags, selection.best_loss, torch.stack(selection.best_so_far or [flags[0]])]).tolist()
    _check(numbers[0], numbers[1], completed, precision, settings)
    seeds = initial_points.shape[0]
    best_by_seed = numbers[2 : 2 + seeds]
    winner = min(range(seeds), key=best_by_seed.__getitem__)
    return OptimisationResult(
        points=selection.best_points[winner].detach().clone(),
        seed_index=winner,
        best_loss=best_by_seed[winner],
        seed_losses=best_by_seed,
        iterations_run=completed,
        stopped_early=stopped,
        precision=precision,
        best_so_far=numbers[2 + seeds :] if selection.best_so_far else [],
    )

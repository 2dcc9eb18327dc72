"""The optimisation loop: Adam on control points against the CLIP loss, all seeds in one batch (spec §5, §6).

What makes it fast without changing the method:
- every seed's sketch and every augmentation go through the loss network as one batch;
- the seeds share each iteration's augmentation parameters (each seed still sees the method's distribution), so the
  augmented targets are computed once per iteration, without gradients, and the clean target once per run;
- the clean pair is part of every training batch, so its loss *is* the evaluation loss of the points before the step:
  scoring every ``eval_every`` iterations costs nothing extra, and we keep exactly the scored points;
- the per-seed total is summed (not averaged) over seeds, so each seed gets exactly the gradient it would get alone;
- no host-device synchronisation inside the loop except progress reports, at a bounded rate.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .augment import AugmentationPlan, apply_augmentations
from .config import CANVAS, SketchSettings
from .errors import Cancelled
from .losses import clip_pair_losses
from .models import clip_normalize
from .render import render

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
    history: list[float] = field(default_factory=list)  # best-seed evaluation loss at each evaluation


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """Mixed precision for the loss network on GPU (spec §4 "ours"); fp32 on CPU and when asked for."""
    if precision == "fp32" or device.type == "cpu":
        return contextlib.nullcontext()
    if precision == "auto":
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if use_bf16 else torch.float16
    else:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def loss_scale(autocast: contextlib.AbstractContextManager[object]) -> float:
    """A constant factor on the loss before backward under fp16.

    The gradient reaching a stage's output is about 1e-6 of the feature difference (an MSE over 400k elements),
    below fp16's smallest normal number, so unscaled it would be flushed. Adam is invariant to a constant gradient
    scale (up to its epsilon), so no unscaling is needed, and a constant needs no overflow check (no host sync).
    """
    if isinstance(autocast, torch.autocast) and autocast.fast_dtype == torch.float16:
        return 1024.0
    return 1.0


_flush_depth = 0


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat denormal CPU floats as zero while the block (or decorated function) runs; nests.

    Deep ReLU networks push some activations and gradients into the denormal range, where x86 arithmetic is 10-100×
    slower; they are far below anything the loss can resolve. Measured with RN101 (random weights, 2 threads):
    forward + backward of 3 images took 11.4 s with denormals and 0.75 s without. The flag only affects CPU
    arithmetic; torch offers no getter for it, so the outermost block switches it off again (its default).
    """
    global _flush_depth
    if _flush_depth == 0 and not torch.set_flush_denormal(True):
        yield  # a CPU without the feature
        return
    _flush_depth += 1
    try:
        yield
    finally:
        _flush_depth -= 1
        if _flush_depth == 0:
            torch.set_flush_denormal(False)


def sketch_images(points: Tensor, width: float) -> Tensor:
    """Render (S, N, 4, 2) canvas points to (S, 3, 224, 224) images in [0, 1] (grey repeated to RGB)."""
    grey = render(points, (CANVAS, CANVAS), width=width)
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


def seed_losses(
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
    grey = render(points, (CANVAS, CANVAS), width=width).unsqueeze(1)
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
) -> OptimisationResult:
    """Optimise S seeds' strokes at once and return the best scored strokes of the best seed.

    initial_points: (S, N, 4, 2) canvas px on the target device; target: (3, 224, 224) in [0, 1], same device;
    plan: this run's augmentations (``plan.per_step`` must equal ``settings.augmentations``) on the same device;
    width: stroke width in canvas pixels.
    """
    device = initial_points.device
    autocast = autocast_context(device, settings.precision)
    scale = loss_scale(autocast)
    control = control or RunControl()
    seeds = initial_points.shape[0]
    points = initial_points.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([points], lr=settings.lr)
    with torch.no_grad():
        clean_target = _pair_features(network, target.unsqueeze(0), autocast)
    # A pooled run cycles through a fixed set of augmentation steps, so each target's features are computed once.
    pool: list[dict[str, Tensor]] = []
    if settings.augmentation_pool:
        plan = plan.first(settings.augmentation_pool)
        pool = [target_features(network, target, plan.grids(k), autocast) for k in range(plan.steps)]

    best_loss = torch.full((seeds,), float("inf"), device=device)
    best_points = points.detach().clone()
    previous_eval = torch.full((seeds,), float("nan"), device=device)
    small_change = torch.zeros(seeds, dtype=torch.bool, device=device)
    done = torch.zeros(seeds, dtype=torch.bool, device=device)
    history: list[Tensor] = []
    start = last_sync = time.monotonic()
    completed = 0
    stopped = False

    def current_best() -> Tensor:
        return best_points[int(torch.argmin(best_loss))].detach().clone()

    for iteration in range(settings.iterations):
        if control.cancelled:
            raise Cancelled("The sketch was cancelled.")
        if control.stopped and completed > 0:
            stopped = True
            break
        before = points.detach().clone()
        per_seed, clean = seed_losses(
            points,
            target,
            clean_target,
            network,
            plan.grids(iteration),
            settings,
            width,
            autocast,
            pool[iteration % len(pool)] if pool else None,
        )
        optimiser.zero_grad(set_to_none=True)
        (per_seed.sum() * scale).backward()
        optimiser.step()
        with torch.no_grad():
            if iteration % settings.eval_every == 0:
                scored = clean.detach()
                better = scored < best_loss
                best_loss = torch.where(better, scored, best_loss)
                best_points = torch.where(better[:, None, None, None], before, best_points)
                if settings.early_stop_delta > 0:
                    # The method's rule: stop when two evaluations in a row changed by at most delta.
                    small = (scored - previous_eval).abs() <= settings.early_stop_delta
                    done |= small & small_change
                    small_change = small
                previous_eval = scored
                history.append(best_loss.min())
            # A seed that met the early-stop rule keeps its points: the method stops that run there.
            points.copy_(torch.where(done[:, None, None, None], before, points))
        completed = iteration + 1

        # The only host-device synchronisation of the loop, at a bounded rate: progress and the early-stop check.
        now = time.monotonic()
        if now - last_sync < progress_interval_s and completed < settings.iterations:
            continue
        last_sync = now
        if on_progress is not None:
            elapsed = now - start
            eta = elapsed / completed * (settings.iterations - completed)
            leader = int(torch.argmin(best_loss))
            on_progress(
                Progress(
                    completed,
                    settings.iterations,
                    float(per_seed.detach()[leader]),
                    float(best_loss[leader]),
                    elapsed,
                    eta,
                    current_best,
                )
            )
        if completed < settings.iterations and bool(done.all()):
            stopped = True
            break

    # One transfer for every number the result needs: the loop's only synchronisation besides progress.
    losses = torch.cat([best_loss, torch.stack(history) if history else best_loss[:0]]).tolist()
    best_by_seed, evaluations = losses[:seeds], losses[seeds:]
    winner = min(range(seeds), key=best_by_seed.__getitem__)
    return OptimisationResult(
        points=best_points[winner].detach().clone(),
        seed_index=winner,
        best_loss=best_by_seed[winner],
        seed_losses=best_by_seed,
        iterations_run=completed,
        stopped_early=stopped,
        history=evaluations,
    )

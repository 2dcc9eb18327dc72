"""``clipasso bench``: each preset's seconds per iteration against the floor, its set-up stage by stage, peak memory.

The architectures are the defaults (or those the ``CLIPASSO_*`` environment names) with random weights, written as
local checkpoints and loaded through the product's own loading code: cost does not depend on the weight values. The
set-up runs as a real sketch runs it: load the models, compute the saliency of the scikit-image cat, initialise every
seed, and the optimiser's own set-up passes (the clean target and, for a pooled preset, every pooled target), timed
inside ``optimise_strokes``. Each precision is timed in the same run against its floor: what no implementation of the
method avoids per iteration, the bare loss network's forward + backward on the sketch batch plus its forward on the
targets an iteration needs. ``--real-run`` then times the real ``clipasso sketch`` command end to end beside the
prediction, from the command to the written SVG.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import PIL.Image
import torch

from .api import CANVAS_STROKE_WIDTH
from .augment import apply_augmentations, draw_augmentations, run_augmentations
from .config import CANVAS, SketchSettings
from .ladder_cut import cut_run
from .loss_network import LossNetwork
from .model_configs import register_model_configs
from .normalize import clip_normalize
from .optimize import OptimisationResult, Progress, optimise_strokes, sketch_images
from .precision import autocast_context
from .render import render
from .strokes import initial_strokes_per_run


def write_random_checkpoints(folder: Path, archs: list[str], model_config: str | None = None) -> dict[str, Path]:
    """Full-size open_clip checkpoints of ``archs`` with random weights in ``folder``: arch -> path."""
    import open_clip

    register_model_configs(model_config)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that no pretrained weights were loaded: expected
    paths = {}
    for arch in dict.fromkeys(archs):
        paths[arch] = folder / f"{arch}.pt"
        torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), paths[arch])
    return paths


def cat_image() -> PIL.Image.Image:
    """The scikit-image cat (``skimage.data.chelsea()``, 451×300, shipped with scikit-image): the bench's photo."""
    from skimage.data import chelsea

    return PIL.Image.fromarray(chelsea())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def _median_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up: kernels, caches, allocator
    return statistics.median(timed(fn, device)[1] for _ in range(max(repeats, 1)))


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA's counter, or Linux's resident high-water mark (``clear_refs`` 5 resets VmHWM)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back first, so the new peak starts from what is live
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def peak_memory_mb(device: torch.device) -> tuple[float | None, str]:
    """The peak since the last reset, in MiB, and what was measured (None where nothing can be)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "CUDA max_memory_allocated"
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20, "MPS driver_allocated_memory (now, not a peak)"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024, "process peak RSS (VmHWM, reset per row)"
    try:
        import resource  # Unix only
    except ImportError:
        return None, "not measured on this platform"
    # ru_maxrss is KiB on Linux, bytes on macOS; it is the whole process's peak so far (it cannot be reset).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, "process peak RSS so far"


def floor_and_loop_parts(
    network: LossNetwork, settings: SketchSettings, device: torch.device, precision: str, repeats: int
) -> dict[str, float]:
    """The floor's parts at ``precision`` (network forward + backward, target forward) and the renderer and warps."""
    seeds, augs = settings.seeds, settings.augmentations
    autocast = autocast_context(device, precision)
    batch = torch.rand(seeds * (1 + augs), 3, CANVAS, CANVAS, device=device)
    targets = torch.rand(max(augs, 1), 3, CANVAS, CANVAS, device=device)
    points = torch.rand(seeds, settings.strokes, 4, 2, device=device) * CANVAS
    grids = draw_augmentations(0, 1, augs, size=CANVAS).to(device).grids(0)

    def network_forward_backward() -> None:
        x = batch.clone().requires_grad_(True)
        with autocast:
            features = network(clip_normalize(x))
        torch.stack([v.float().sum() for v in features.values()]).sum().backward()

    def target_forward() -> None:
        with torch.no_grad(), autocast:
            network(clip_normalize(targets))

    def render_step() -> None:
        p = points.clone().requires_grad_(True)
        render(p, (CANVAS, CANVAS), stroke_width=CANVAS_STROKE_WIDTH, check_finite=False).sum().backward()

    grey = sketch_images(points, CANVAS_STROKE_WIDTH)[:, :1].contiguous()  # the loop warps the grey channel only

    def augmentation_step() -> None:
        apply_augmentations(grey, grids)
        if not settings.augmentation_pool:
            apply_augmentations(targets[:1], grids)

    parts = {
        "network_forward_backward_s": _median_time(network_forward_backward, device, repeats),
        "target_forward_s": _median_time(target_forward, device, repeats) if augs else 0.0,
        "render_s": _median_time(render_step, device, repeats),
        "augmentation_s": _median_time(augmentation_step, device, repeats) if augs else 0.0,
    }
    # A pooled preset's target passes are part of its set-up (timed there), not of its iterations.
    per_iteration_targets = 0.0 if settings.augmentation_pool else parts["target_forward_s"]
    parts["floor_s"] = parts["network_forward_backward_s"] + per_iteration_targets
    return parts


def time_optimisation(
    initial: torch.Tensor,
    target: torch.Tensor,
    network: LossNetwork,
    settings: SketchSettings,
    measure: int,
) -> dict[str, float]:
    """Run the real loop for 1 + ``measure`` iterations with the preset's own plan; time its set-up and iterations.

    The plan is drawn for the preset's full run, as ``sketch()`` draws it, so a pooled preset computes all its pooled
    targets. Progress is read at the real run's rate (every 0.25 s): the first report carries the first iterations'
    warm-up, the later ones give the steady seconds per iteration.
    """
    device = initial.device
    plan = run_augmentations(settings).to(device)
    marks: dict[str, float] = {}
    reports: list[tuple[int, float]] = []

    def on_setup(done: int, total: int) -> None:
        marks["passes"] = total
        if done == total:
            marks["setup_end"] = time.perf_counter()

    def on_progress(progress: Progress) -> None:
        reports.append((progress.iteration, time.perf_counter()))

    run = settings.replace(iterations=1 + measure, early_stop_delta=0.0)
    # A ladder as sketch() runs a new sketch's: the plain loop, the levels estimated live.
    run, callback = cut_run(run, on_progress, target, network, width=CANVAS_STROKE_WIDTH, device=device)

    def loop() -> OptimisationResult:
        marks["start"] = time.perf_counter()  # the set-up includes the loop's own preparation (pooled grids)
        return optimise_strokes(
            initial, target, network, run, plan, width=CANVAS_STROKE_WIDTH, on_setup=on_setup, on_progress=callback
        )

    outcome, wall = timed(loop, device)
    if outcome.iterations_run != run.iterations:
        raise RuntimeError(f"the timed loop ran {outcome.iterations_run} of {run.iterations} iterations")
    end = marks["start"] + wall
    (first_n, first_t), (last_n, last_t) = reports[0], reports[-1]
    if last_n > first_n:
        per_iteration = (last_t - first_t) / (last_n - first_n)
    else:  # one report only (a very fast device): the mean over the whole loop, warm-up included
        first_n, first_t, per_iteration = 0, marks["setup_end"], (end - marks["setup_end"]) / run.iterations
    first_n = min(first_n, settings.iterations)
    return {
        "target_passes": marks["passes"],
        "targets_s": marks["setup_end"] - marks["start"],
        "s_per_iteration": per_iteration,
        "optimise_s": (first_t - marks["setup_end"]) + (settings.iterations - first_n) * per_iteration,
    }


def bench_preset(
    settings: SketchSettings,
    network: LossNetwork,
    probabilities: torch.Tensor,
    target: torch.Tensor,
    precisions: list[str],
    measure: int,
    repeats: int,
    fixed_s: float,
) -> dict[str, dict[str, Any]]:
    """One row per precision: seconds per iteration, floor, set-up by stage, predicted wall time, peak memory.

    ``fixed_s``: what every sketch pays before its initialisation (start-up, image, model loads, saliency).
    """
    device = target.device

    def initialise() -> torch.Tensor:
        return initial_strokes_per_run(probabilities, settings, device)

    rows: dict[str, dict[str, Any]] = {}
    for precision in precisions:
        reset_peak_memory(device)
        initial, init_s = timed(initialise, device)
        timing = time_optimisation(initial, target, network, settings.replace(precision=precision), measure)
        peak, peak_kind = peak_memory_mb(device)
        parts = floor_and_loop_parts(network, settings, device, precision, repeats)
        rows[precision] = {
            "precision": precision,
            "seeds": settings.seeds,
            "augmentations": settings.augmentations,
            "augmentation_pool": settings.augmentation_pool,
            "strokes": settings.strokes,
            "iterations": settings.iterations,
            "iterations_measured": measure,
            "s_per_iteration": timing["s_per_iteration"],
            "floor_s_per_iteration": parts["floor_s"],
            "ratio_to_floor": timing["s_per_iteration"] / parts["floor_s"],
            "init_s": init_s,
            "target_passes": timing["target_passes"],
            "targets_s": timing["targets_s"],
            "predicted_wall_s": fixed_s + init_s + timing["targets_s"] + timing["optimise_s"],
            "peak_memory_mb": peak,
            "peak_memory_kind": peak_kind,
            "breakdown": parts,
        }
    return rows

"""``clipasso bench``: seconds per iteration of each preset against the floor, with a breakdown.

Uses the full-size default architectures with random weights (cost does not depend on the weight values; the output
says so). The floor is what no implementation of the method can avoid per iteration: the bare loss network's
forward + backward on the sketch batch plus its forward on the augmented target batch, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from .augment import apply_augmentations, draw_augmentations
from .config import CANVAS, SketchSettings, preset_settings
from .models import LossNetwork, clip_normalize, load_clip_visual, resolve_device
from .optimize import autocast_context, flush_denormals, optimise_strokes, sketch_images
from .render import render
from .saliency import clip_attention_map, sampling_probabilities, xdog
from .strokes import initial_strokes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _median_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up: kernels, caches, allocator
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _random_networks(defaults: SketchSettings, device: torch.device) -> tuple[LossNetwork, torch.nn.Module, float]:
    """Full-size loss and saliency networks with random weights, loaded through the product's own loading code.

    The random checkpoints are written to a temporary folder first, so the time to load them (returned) is what
    loading real weights of the same size costs.
    """
    import open_clip

    # open_clip logs a warning for a model without pretrained weights: expected here, so keep stderr clean.
    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="clipasso-bench-") as folder:
        paths = {}
        for arch in (defaults.loss_model, defaults.saliency_model):
            paths[arch] = os.path.join(folder, f"{arch}.pt")
            torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), paths[arch])
        start = time.perf_counter()
        loss_visual = load_clip_visual(defaults.loss_model, paths[defaults.loss_model], device=device)
        network = LossNetwork(loss_visual, defaults.geometric_layers)
        saliency_visual = load_clip_visual(
            defaults.saliency_model, paths[defaults.saliency_model], device=device, role="saliency"
        )
        _sync(device)
        return network, saliency_visual, time.perf_counter() - start


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "CUDA max_memory_allocated"
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20, "MPS driver_allocated_memory"
    try:
        import resource  # Unix only
    except ImportError:
        return float("nan"), "not measured on this platform"
    # ru_maxrss is KiB on Linux, bytes on macOS; it is the whole process's peak, models included.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, "process peak RSS"


def bench_preset(
    name: str,
    settings: SketchSettings,
    network: LossNetwork,
    saliency_visual: torch.nn.Module,
    device: torch.device,
    measure: int,
    repeats: int,
    load_s: float = 0.0,
) -> dict[str, Any]:
    seeds, augs = settings.seeds, settings.augmentations
    autocast = autocast_context(device, settings.precision)
    target = torch.rand(3, CANVAS, CANVAS, device=device)
    plan = draw_augmentations(0, max(measure, 1) + 1, augs, size=CANVAS).to(device)
    grids = plan.grids(0)
    width = 3.0

    # Saliency and initialisation (once per sketch).
    def saliency_and_init() -> None:
        normalised = clip_normalize(target.unsqueeze(0))
        attention = clip_attention_map(saliency_visual, normalised)
        probabilities = sampling_probabilities(attention, xdog(normalised[0]), None, settings.softmax_temperature)
        for run in range(settings.seeds):
            initial_strokes(probabilities, settings.strokes, run, device=device)

    points = torch.stack(
        [
            initial_strokes(torch.ones(CANVAS, CANVAS, device=device) / CANVAS**2, settings.strokes, s, device=device)
            for s in range(settings.seeds)
        ]
    )

    def render_step() -> None:
        p = points.clone().requires_grad_(True)
        render(p, (CANVAS, CANVAS), stroke_width=width, check_finite=False).sum().backward()  # as the loop calls it

    sketches = sketch_images(points, width)[:, :1].contiguous()  # the loop warps the grey channel only

    def augmentation_step() -> None:
        if augs:
            apply_augmentations(sketches, grids)
            apply_augmentations(target.unsqueeze(0), grids)

    batch = torch.rand(seeds * (1 + augs), 3, CANVAS, CANVAS, device=device)
    target_batch = torch.rand(max(augs, 1), 3, CANVAS, CANVAS, device=device)

    def network_forward_backward() -> None:
        x = batch.clone().requires_grad_(True)
        with autocast:
            features = network(clip_normalize(x))
        torch.stack([v.float().sum() for v in features.values()]).sum().backward()

    def target_forward() -> None:
        with torch.no_grad(), autocast:
            network(clip_normalize(target_batch[:augs] if augs else target_batch))

    breakdown = {
        "saliency_and_init_s": _median_time(saliency_and_init, device, 1),
        "render_s": _median_time(render_step, device, repeats),
        "augmentation_s": _median_time(augmentation_step, device, repeats),
        "network_forward_backward_s": _median_time(network_forward_backward, device, repeats),
        "target_features_s": _median_time(target_forward, device, repeats) if augs else 0.0,
    }
    # A pooled preset computes its targets' features once per run, not per iteration.
    target_per_iteration = breakdown["target_features_s"]
    if settings.augmentation_pool:
        target_per_iteration *= min(settings.augmentation_pool, settings.iterations) / settings.iterations
    floor = breakdown["network_forward_backward_s"] + target_per_iteration

    # The real loop, end to end: the difference between 1 and 1 + measure iterations is the per-iteration cost,
    # the rest of the 1-iteration run is the set-up (clean target features, a pooled preset's target features).
    def timed_run(iterations: int) -> float:
        _sync(device)
        start = time.perf_counter()
        run = settings.replace(iterations=iterations, early_stop_delta=0.0)
        optimise_strokes(points, target, network, run, plan, width=width)
        _sync(device)
        return time.perf_counter() - start

    timed_run(1)  # warm-up
    single = timed_run(1)
    per_iteration = (timed_run(1 + measure) - single) / measure
    setup = max(single - per_iteration, 0.0)
    breakdown["loop_setup_s"] = setup
    peak, peak_kind = _peak_memory_mb(device)
    return {
        "s_per_iteration": per_iteration,
        "floor_s_per_iteration": floor,
        "ratio_to_floor": per_iteration / floor,
        "iterations": settings.iterations,
        "seeds": seeds,
        "augmentations": augs,
        "augmentation_pool": settings.augmentation_pool,
        "strokes": settings.strokes,
        "sketch_wall_s": load_s + breakdown["saliency_and_init_s"] + setup + per_iteration * settings.iterations,
        "sketch_wall_extrapolated": True,
        "iterations_measured": measure,
        "peak_memory_mb": peak,
        "peak_memory_kind": peak_kind,
        "breakdown": breakdown,
    }


def run_bench(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    measure = args.measure or (3 if device.type == "cpu" else 50)
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    defaults = SketchSettings()
    network, saliency_visual, load_s = _random_networks(defaults, device)
    report: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "weights": "random (full-size architectures; timing does not depend on weight values)",
        "loss_model": defaults.loss_model,
        "saliency_model": defaults.saliency_model,
        "load_models_s": load_s,
        "extrapolated": ["sketch_wall_s = load_models_s + saliency/init + loop set-up + s_per_iteration × iterations"],
        "presets": {},
    }
    print(
        f"clipasso bench on {report['device_name']} ({report['device']}), torch {torch.__version__}; "
        f"{report['weights']}"
    )
    for name in names:
        settings = preset_settings(name).replace(strokes=args.strokes)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with flush_denormals():
            report["presets"][name] = bench_preset(
                name, settings, network, saliency_visual, device, measure, args.repeats, load_s
            )
    print(format_table(report))
    if args.json:
        from .files import write_atomic

        write_atomic(args.json, json.dumps(report, indent=2) + "\n")
    return 0


def format_table(report: dict[str, Any]) -> str:
    head = (
        "| preset | seeds×(1+augs) | s/iter | floor s/iter | ×floor | sketch wall (extrap.) | peak MB "
        "| render | augment | net fwd+bwd | target fwd | saliency+init |"
    )
    lines = [head, "|" + "---|" * 12]
    for name, r in report["presets"].items():
        b = r["breakdown"]
        lines.append(
            f"| {name} | {r['seeds']}×(1+{r['augmentations']}) | {r['s_per_iteration']:.3f} | "
            f"{r['floor_s_per_iteration']:.3f} | {r['ratio_to_floor']:.2f} | {r['sketch_wall_s']:.0f} s "
            f"({r['iterations']} it) | {r['peak_memory_mb']:.0f} | {b['render_s'] * 1e3:.1f} ms | "
            f"{b['augmentation_s'] * 1e3:.1f} ms | {b['network_forward_backward_s']:.3f} s | "
            f"{b['target_features_s']:.3f} s | {b['saliency_and_init_s']:.2f} s |"
        )
    return "\n".join(lines)

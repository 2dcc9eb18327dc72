"""The public entry point: ``sketch(image) -> SketchResult``, used by the CLI, the protocol and library users.

It wires the stages together: image preparation, model loading, saliency-guided initialisation for every seed,
the batched optimisation, and the mapping of the winning strokes back to the input image's pixel frame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import PIL.Image
import torch
from torch import Tensor

from .augment import run_augmentations
from .config import CANVAS, SketchSettings
from .environment import resolve_device, settings_from_env
from .errors import Cancelled, ClipassoError, is_out_of_memory, out_of_memory
from .image_io import PreparedImage, prepare_image
from .importance import rank_strokes
from .ladder_cut import cut_run
from .model_cache import loss_network, release_saliency_model
from .optimize import OptimisationResult, Progress, RunControl, optimise_strokes
from .precision import autocast_context
from .refine import plan_refine, result_strokes, start_points
from .result import ProgressCallback, SetupCallback, SketchProgress, SketchResult, StatusCallback
from .saliency import saliency_probabilities
from .shape_mask import Shape, as_shapes, combined_mask, to_canvas
from .strokes import initial_strokes_per_run

#: Reference stroke width: 3 px on the 224 canvas (spec §1).
CANVAS_STROKE_WIDTH = 3.0


def output_width(settings: SketchSettings, prepared: PreparedImage) -> float:
    """Stroke width in image px: the user's (in px, or a fraction of the longer side, which is the padded square's
    side), else 3/224 of that side (the paper's 3 px at 224)."""
    if settings.width is not None:
        return settings.width
    if settings.width_fraction is not None:
        return settings.width_fraction * prepared.square_side
    return CANVAS_STROKE_WIDTH * prepared.scale


def strokes_to_image_frame(points: Tensor, prepared: PreparedImage) -> list[list[list[float]]]:
    """(N, 4, 2) canvas px -> nested lists in image px."""
    mapped = prepared.canvas_to_image(points.detach().to("cpu", torch.float64))
    return [[[float(x), float(y)] for x, y in stroke] for stroke in mapped.tolist()]


def sketch(
    image: str | os.PathLike[str] | PIL.Image.Image,
    settings: SketchSettings | None = None,
    *,
    mask: str | os.PathLike[str] | None = None,
    on_progress: ProgressCallback | None = None,
    on_status: StatusCallback | None = None,
    on_setup: SetupCallback | None = None,
    control: RunControl | None = None,
    progress_interval_s: float = 0.25,
    use_env: bool = True,
    keep_models: bool = True,
    init_strokes: Sequence[Sequence[Sequence[float]]] | None = None,
    locked: Sequence[int] | None = None,
    add: int = 0,
    mask_paths: Sequence[Shape | Mapping[str, Any]] | None = None,
    detail_paths: Sequence[Shape | Mapping[str, Any]] | None = None,
) -> SketchResult:
    """Turn an image into a CLIPasso line sketch.

    ``settings`` default to the ``paper`` preset; model names and weights still at their defaults come from the
    ``CLIPASSO_*`` environment variables, unless ``use_env`` is false (callers that resolved the environment
    themselves, so that an explicit option equal to a default is not overridden). ``on_progress`` receives a
    :class:`SketchProgress` at most every ``progress_interval_s`` seconds; ``on_status(stage, message)`` announces
    each stage; ``on_setup(done, total)`` counts the set-up passes before the first iteration.
    ``control.cancel()`` stops within one iteration and raises :class:`Cancelled`; ``control.stop()`` ends early
    and returns the best strokes so far, or raises :class:`Cancelled` when it comes before the optimisation has
    started. Raises a :class:`clipasso_engine.errors.ClipassoError` for every expected problem. The models stay
    loaded for the next sketch in this process unless ``keep_models`` is false (one-shot callers: the CLI, serve),
    which frees the saliency model as soon as the strokes are placed.

    A refine (``refine.py``): ``init_strokes`` N × 4 × [x, y] in image px start ONE run (the settings' stroke and
    seed counts become N + ``add`` and 1); the strokes at the indices ``locked`` come back exactly as given; ``add``
    strokes are added where the sketch leaves the saliency map least covered. The result's strokes are the given
    ones in order, then the added ones, and ``SketchResult.refine`` says so.

    Shapes (``shape_mask.py``): ``mask_paths`` and ``detail_paths`` are lists of :class:`Shape` or
    ``{"d": ..., "fill_rule": "nonzero" | "evenodd"}`` in image px. The mask shapes are the object mask (intersected
    with ``mask`` and the alpha); inside the detail shapes strokes start ``settings.detail_weight`` times as often.
    """
    settings = settings or SketchSettings()
    if use_env:
        settings = settings_from_env(settings)
    refine = plan_refine(init_strokes, locked, add)  # bad refine input fails before anything heavy
    if refine is not None:
        settings = refine.settings(settings)
    control = control or RunControl()
    status = on_status or (lambda stage, message: None)
    timings: dict[str, float] = {}
    started = time.monotonic()

    mask_shapes, detail_shapes = as_shapes(mask_paths, "mask_paths"), as_shapes(detail_paths, "detail_paths")

    def shapes_note(sentence: str) -> None:
        status("shapes", sentence)

    def object_mask(size: tuple[int, int]) -> Any:
        return combined_mask(mask_shapes, size, "mask", shapes_note)

    prepared = prepare_image(image, mask, canvas=CANVAS, shape_mask=object_mask if mask_shapes else None)
    detail_plane = combined_mask(detail_shapes, prepared.image_size, "detail", shapes_note)
    detail = None if detail_plane is None else to_canvas(detail_plane, CANVAS)
    device = resolve_device(settings.device)

    def checkpoint(name: str, since: float) -> float:
        now = time.monotonic()
        timings[name] = round(now - since, 4)
        # Before the optimisation there are no strokes yet, so "stop and keep the best so far" is a cancel too.
        if control.cancelled or control.stopped:
            raise Cancelled("The sketch was cancelled.")
        return now

    mark = checkpoint("prepare_s", started)
    status("loading_models", f"Loading the loss network {settings.loss_model} ({settings.loss_weights})…")
    with _out_of_memory_as_error(device, "loading the models"):
        network = loss_network(settings, device)
    mark = checkpoint("load_models_s", mark)

    width = output_width(settings, prepared)
    with _out_of_memory_as_error(device, "computing the saliency map"):
        probabilities = None
        if refine is None or refine.add:  # a refine needs the map only to place added strokes
            status("saliency", f"Finding salient regions with {settings.saliency} ({settings.saliency_model})…")
            probabilities = saliency_probabilities(prepared.image, prepared.mask, settings, device, detail)
        if refine is not None:
            initial = start_points(
                refine, prepared, probabilities, width=width / prepared.scale, settings=settings, device=device
            )
        else:
            assert probabilities is not None  # computed above for every new sketch
            initial = initial_strokes_per_run(probabilities, settings, device)
    if not keep_models:
        release_saliency_model()
    mark = checkpoint("saliency_s", mark)

    status("optimising", f"Optimising {settings.strokes} strokes, {settings.seeds} seed(s) at once on {device}…")
    plan = run_augmentations(settings).to(device)
    # A new sketch's ladder is cut from the importance order of a plain run (ladder_cut.py); a refine's keeps its
    # order, so its levels are trained as prefixes (ladder.py).
    cut = bool(settings.ladder) and refine is None
    target = prepared.image.to(device)
    scoring: dict[str, Any] = {"width": width / prepared.scale, "control": control}
    run, callback = settings, _image_frame_progress(on_progress, prepared, width)
    if cut:
        run, callback = cut_run(settings, callback, target, network, device=device, **scoring)
    with _out_of_memory_as_error(device, "optimising the strokes"):
        outcome: OptimisationResult = optimise_strokes(
            initial,
            target,
            network,
            run,
            plan,
            on_progress=callback,
            progress_interval_s=progress_interval_s,
            on_setup=on_setup,
            locked=refine.locked_mask(device) if refine is not None else None,
            **scoring,
        )
    timings["optimise_s"] = round(time.monotonic() - mark, 4)
    mark = time.monotonic()
    # No status message here: the protocol sends every status before the first progress line.
    scoring["autocast"] = autocast_context(device, outcome.precision)
    with _out_of_memory_as_error(device, "ranking the strokes"):
        # A cut ladder: one order over all the strokes, each level's loss that order's prefix's.
        blocks, cuts = ((), settings.ladder) if cut else (settings.ladder, ())
        ranking = rank_strokes(outcome.points, target, network, settings, levels=blocks, cuts=cuts, **scoring)
    level_losses = ranking.cut_losses if cut else (outcome.level_losses if settings.ladder else [])
    timings["rank_s"] = round(time.monotonic() - mark, 4)
    timings["total_s"] = round(time.monotonic() - started, 4)
    if refine is not None:
        strokes = result_strokes(refine, outcome.points, prepared)
    else:
        strokes = strokes_to_image_frame(outcome.points, prepared)
    # A refine keeps its given order (its lock indices and the artist's per-stroke styles refer to it).
    order = list(range(len(strokes))) if refine is not None else ranking.order
    rank = {stroke: position + 1 for position, stroke in enumerate(ranking.order)}
    importance = dict(zip(ranking.order, ranking.importance, strict=True))
    return SketchResult(
        strokes=[strokes[i] for i in order],
        width=width,
        image_size=prepared.image_size,
        seed=settings.seed,
        winning_run=outcome.seed_index,
        loss=outcome.best_loss,
        seed_losses=outcome.seed_losses,
        iterations_run=outcome.iterations_run,
        stopped_early=outcome.stopped_early,
        device=str(device),
        precision=outcome.precision,
        settings=settings,
        timings=timings,
        # The first evaluation scores the starting strokes: the refine's "before".
        refine=refine.provenance(outcome.best_so_far[0]) if refine is not None else None,
        importance=[importance[i] for i in order],
        rank=[rank[i] for i in order],
        source_index=order,
        level_losses=level_losses,
    )


@contextlib.contextmanager
def _out_of_memory_as_error(device: torch.device, stage: str) -> Iterator[None]:
    """Running out of memory in any stage, in any of torch's forms (CUDA, MPS, CPU), is one sentence."""
    try:
        yield
    except ClipassoError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(device, stage) from exc
        raise


def _image_frame_progress(
    on_progress: ProgressCallback | None, prepared: PreparedImage, width: float
) -> Callable[[Progress], None] | None:
    """Wrap a progress callback so that it gets a :class:`SketchProgress` whose strokes are in image px."""
    if on_progress is None:
        return None
    callback = on_progress

    def forward(progress: Progress) -> None:
        canvas_points = progress.best_points
        fields = {f.name: getattr(progress, f.name) for f in dataclasses.fields(progress)}
        fields.update(
            best_points=lambda: prepared.canvas_to_image(canvas_points().detach().to("cpu", torch.float64)),
            image_size=prepared.image_size,
        )
        callback(SketchProgress(**fields, width=width))

    return forward

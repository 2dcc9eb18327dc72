"""Output: strokes as a standalone SVG (written to disk by ``files.write_atomic``).

Strokes arrive in the input image's pixel frame (``PreparedImage.canvas_to_image``), so the SVG's
``viewBox="0 0 W H"`` lays them exactly over the photo shown at the same size. Output is deterministic: the same
strokes, width and metadata give the same bytes (fixed 3-decimal numbers, provenance JSON with sorted keys). It never
holds ``NaN`` or ``Infinity``: a non-finite coordinate, width, importance, loss or provenance number is an
``OutputError``. Each stroke may carry its importance rank; an abstraction ladder is one group per level, each holding
only the strokes that level adds, so hiding the upper groups shows a lower level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import torch

from .errors import OutputError
from .init_svg import PROVENANCE_ID  # the id a refine reads the provenance back by
from .strict_json import json_dumps_strict
from .version import __version__

#: The namespace of ``inkscape:label``, which names a ladder level's group in Inkscape's Layers and Objects dialog.
INKSCAPE_NS = "http://www.inkscape.org/namespaces/inkscape"
#: Digits after the decimal point of every coordinate and width we write (1/1000 px is far below visibility).
DECIMALS = 3

StrokesLike = torch.Tensor | np.ndarray | Sequence[Sequence[Sequence[float]]]


def strokes_to_array(strokes: StrokesLike) -> np.ndarray:
    """(N, 4, 2) float64 array of finite control points from a tensor, array or nested list.

    A wrong shape is a bug (``ValueError``); a non-finite point is an ``OutputError`` naming the stroke.
    """
    if isinstance(strokes, torch.Tensor):
        strokes = strokes.detach().to("cpu", torch.float64).numpy()
    points = np.asarray(strokes, dtype=np.float64)
    if points.size == 0:
        points = points.reshape(0, 4, 2)
    if points.ndim != 3 or points.shape[1:] != (4, 2):
        raise ValueError(f"strokes must have shape (N, 4, 2), got {points.shape}")
    finite = np.isfinite(points).all(axis=(1, 2))
    if not finite.all():
        bad = int(np.argmin(finite))
        raise OutputError(
            f"Cannot write the SVG: stroke {bad} has a control point that is not a finite number "
            f"({_first_bad(points[bad])}); the optimisation diverged, so try a lower learning rate or another seed."
        )
    return points


def strokes_to_svg(
    strokes: StrokesLike,
    width: float,
    image_size: tuple[int, int],
    metadata: Mapping[str, object] | None = None,
    color: str = "#000000",
    *,
    importance: Sequence[float] = (),
    rank: Sequence[int] = (),
    ladder: Sequence[Mapping[str, Any]] = (),
) -> str:
    """A standalone SVG of the strokes over a ``W``×``H`` image (``image_size``), ``width`` in image pixels.

    One ``<g id="clipasso-sketch">`` holds a ``<path id="clipasso-stroke-i" d="M x0 y0 C x1 y1 x2 y2 x3 y3">`` per
    stroke, each styled itself (no fill, ``color``, round caps and joins) so a path copied out keeps its look.
    ``metadata`` (engine version, seed, settings, loss) is stored as JSON in ``<metadata id="clipasso-provenance">``.
    ``importance`` and ``rank`` (one per stroke, or empty) become ``data-clipasso-importance`` and
    ``data-clipasso-rank``. ``ladder`` (``[{"strokes": k, "loss": l}, ...]``, increasing k, the last k = N) puts
    the strokes in one ``<g id="clipasso-level-k" inkscape:label="k strokes (+added)">`` per level instead.
    """
    points = strokes_to_array(strokes)
    count = len(points)
    for name, values in (("importance", importance), ("rank", rank)):
        if values and len(values) != count:
            raise ValueError(f"{name} must have one value per stroke ({count}), got {len(values)}")
    if any(not math.isfinite(v) for v in importance):
        raise OutputError("Cannot write the SVG: a stroke's importance is not a finite number; the loss diverged.")
    levels = [int(level["strokes"]) for level in ladder]
    if levels and (levels != sorted(set(levels)) or levels[0] < 1 or levels[-1] != count):
        raise ValueError(f"ladder levels must increase up to the {count} strokes, got {levels}")
    if not math.isfinite(width):
        raise OutputError(
            f"Cannot write the SVG: the stroke width is {float(width)}, not a finite number; give a finite width."
        )
    if not width > 0:
        raise ValueError(f"stroke width must be a positive number, got {width}")
    image_w, image_h = (int(v) for v in image_size)
    info = {"engine_version": __version__, **(metadata or {})}
    style = (
        f'fill="none" stroke={quoteattr(color)} stroke-width="{_fmt(width)}" '
        'stroke-linecap="round" stroke-linejoin="round"'
    )
    namespace = f" xmlns:inkscape={quoteattr(INKSCAPE_NS)}" if levels else ""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<!-- Generator: clipasso-engine {__version__} -->",
        f'<svg xmlns="http://www.w3.org/2000/svg"{namespace} version="1.1" width="{image_w}px" height="{image_h}px" '
        f'viewBox="0 0 {image_w} {image_h}">',
        f'  <metadata id="{PROVENANCE_ID}">{escape(_json(info))}</metadata>',
        '  <g id="clipasso-sketch">',
    ]
    blocks = list(zip([0, *levels[:-1]], levels, strict=True)) if levels else [(0, count)]
    indent = "      " if levels else "    "
    for j, (start, end) in enumerate(blocks):
        if levels:
            lines.append(_level_group(ladder[j], end - start, first=j == 0))
        for i in range(start, end):
            (x0, y0), (x1, y1), (x2, y2), (x3, y3) = (tuple(_fmt(v) for v in p) for p in points[i])
            d = f"M {x0} {y0} C {x1} {y1} {x2} {y2} {x3} {y3}"
            extra = f' data-clipasso-rank="{int(rank[i])}"' if rank else ""
            extra += f' data-clipasso-importance="{_fmt_loss(importance[i])}"' if importance else ""
            lines.append(f'{indent}<path id="clipasso-stroke-{i}" d="{d}" {style}{extra}/>')
        if levels:
            lines.append("    </g>")
    lines += ["  </g>", "</svg>", ""]
    return "\n".join(lines)


def _level_group(level: Mapping[str, Any], added: int, *, first: bool) -> str:
    """The opening tag of one ladder level's group: its stroke count, what it adds, and its loss."""
    strokes, loss = int(level["strokes"]), float(level["loss"])
    if not math.isfinite(loss):
        raise OutputError(f"Cannot write the SVG: the {strokes}-stroke level's loss is not a finite number.")
    label = f"{strokes} strokes" if first else f"{strokes} strokes (+{added})"
    return (
        f'    <g id="clipasso-level-{strokes}" inkscape:label="{label}" data-clipasso-strokes="{strokes}" '
        f'data-clipasso-loss="{_fmt_loss(loss)}">'
    )


def _fmt_loss(value: float) -> str:
    """A loss or importance: 6 significant digits (losses are O(0.01-10); an importance can be far smaller)."""
    return f"{float(value) + 0.0:.6g}"


def _fmt(value: float) -> str:
    # Adding 0.0 turns a rounded -0.0 into 0.0, so tiny negatives do not print as "-0.000".
    return f"{round(float(value), DECIMALS) + 0.0:.{DECIMALS}f}"


def _first_bad(stroke: np.ndarray) -> str:
    return str(float(stroke[~np.isfinite(stroke)][0]))


def _json(info: Mapping[str, object]) -> str:
    # default=str keeps provenance writable when a caller passes e.g. a Path or a torch.device.
    return json_dumps_strict(
        info, what="the SVG's provenance", sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )


__all__ = [
    "DECIMALS",
    "INKSCAPE_NS",
    "strokes_to_array",
    "strokes_to_svg",
]

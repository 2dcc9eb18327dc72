"""Output: strokes as a standalone SVG (written to disk by ``files.write_atomic``).

Strokes arrive in the input image's pixel frame (``PreparedImage.canvas_to_image``), so the SVG's
``viewBox="0 0 W H"`` lays them exactly over the photo shown at the same size. Output is deterministic: the same
strokes, width and metadata give the same bytes (fixed 3-decimal numbers, provenance JSON with sorted keys). It never
holds ``NaN`` or ``Infinity``: a non-finite coordinate, width or provenance number is an ``OutputError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import torch

from .errors import OutputError
from .strict_json import json_dumps_strict
from .version import __version__

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
) -> str:
    """A standalone SVG of the strokes over a ``W``×``H`` image (``image_size``), ``width`` in image pixels.

    One ``<g id="clipasso-sketch">`` holds a ``<path id="clipasso-stroke-i" d="M x0 y0 C x1 y1 x2 y2 x3 y3">`` per
    stroke, each styled itself (no fill, ``color``, round caps and joins) so a path copied out keeps its look.
    ``metadata`` (engine version, seed, settings, loss) is stored as JSON in ``<metadata id="clipasso-provenance">``.
    """
    points = strokes_to_array(strokes)
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
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<!-- Generator: clipasso-engine {__version__} -->",
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{image_w}px" height="{image_h}px" '
        f'viewBox="0 0 {image_w} {image_h}">',
        f'  <metadata id="clipasso-provenance">{escape(_json(info))}</metadata>',
        '  <g id="clipasso-sketch">',
    ]
    for i, stroke in enumerate(points):
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = (tuple(_fmt(v) for v in p) for p in stroke)
        d = f"M {x0} {y0} C {x1} {y1} {x2} {y2} {x3} {y3}"
        lines.append(f'    <path id="clipasso-stroke-{i}" d="{d}" {style}/>')
    lines += ["  </g>", "</svg>", ""]
    return "\n".join(lines)


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
    "strokes_to_array",
    "strokes_to_svg",
]

"""Masks drawn as shapes: SVG paths in image pixels, rasterised anti-aliased at the image's size.

Two uses (docs/protocol.md ``mask_paths`` / ``detail_paths``, CLI ``--mask-svg`` / ``--detail-svg``): the
**object** mask (outside it the target is white and no stroke starts), and **detail** regions (saliency weighted up
by ``SketchSettings.detail_weight``). Several shapes combine as a union (``1 − Π(1 − coverage)``, the way a
renderer composites them), within each ``region``; different regions intersect (the product of their coverages),
which is how nested or stacked clip-paths are sent: any union and intersection of shapes is an intersection of
unions. An open subpath is closed with a straight line, as SVG fills it, and the log says so.

How a shape is rasterised. Curves are flattened to within 0.1 px (``path_data.flatten``), then Pillow fills the
polylines at 4× supersampling, in tiles of 512 px so memory stays small for any image. Pillow's fill is even-odd
and includes every pixel the outline touches, so each tile is drawn twice, once with its outline pixels and once
without them, and averaged: outline pixels count one half, which removes Pillow's half-pixel outward bias (a
circle's area comes out within 0.01 % instead of 0.6 % high at 200 subpixels radius). Measured on circles
(tests/test_shape_mask.py): area −0.42 % at r = 20.7 px, −0.11 % at 60 px, −0.01 % at 150 px (a residual bias of
about 0.05 px inward, so −1.5 % on a 5 px circle); pixels more than 0.5 px inside are at least half covered and
pixels more than 0.5 px outside less than half. For the **nonzero** rule
the even-odd fill is exact except for faces of even non-zero winding (a pentagram's centre, a hole drawn in the
same direction as its outline). Those are found exactly: every unfilled 4-connected region of the supersampled
tile (``scipy.ndimage.label``; Pillow's 8-connected outlines separate them) is a piece of one face of the path,
so the winding number (Sunday's crossing rule, exact in float64) of one of its pixels, at least two subpixels from
any outline, is the face's; regions with a non-zero winding are filled. Pockets narrower than about a pixel keep
the even-odd answer. No hand-written scanline: the filling is Pillow's, the regions are scipy's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from .errors import ShapeMaskError
from .path_data import PathDataError, flatten, parse_path_data
from .shape_request import (
    FILL_RULES,
    MAX_PATH_CHARS,
    MAX_SHAPES,
    Shape,
    as_shapes,
    check_paths,
    request_shapes,
    shapes_from_json,
)

if TYPE_CHECKING:  # torch only for the detail map: the protocol checks shapes before the heavy imports
    import torch

logger = logging.getLogger("clipasso_engine")

#: Coordinates beyond this many pixels are refused: Pillow's fill silently fails near 1e15.
MAX_COORDINATE = 1e7
SUPERSAMPLE = 4
TILE = 512
FLATTEN_TOLERANCE = 0.02


def _rings(shape: Shape, label: str, note: Callable[[str], None] | None) -> list[np.ndarray]:
    """The shape's subpaths as closed (P, 2) polylines in image px (open ones closed, with a note in the log)."""
    if len(shape.d) > MAX_PATH_CHARS:
        raise ShapeMaskError(f"{label}'s path data is longer than {MAX_PATH_CHARS:,} characters; simplify it.")
    try:
        subpaths = parse_path_data(shape.d)
    except PathDataError as exc:
        raise PathDataError(f"{label}: {exc}") from exc
    rings = []
    closed_for_the_user = False
    for subpath in subpaths:
        if not np.all(np.abs(subpath.segments) <= MAX_COORDINATE):
            raise ShapeMaskError(
                f"{label} has coordinates beyond ±{MAX_COORDINATE:,.0f} px; give shapes in the image's pixel frame."
            )
        points = flatten(subpath, FLATTEN_TOLERANCE)
        x, y = points[:, 0], points[:, 1]
        if len(points) < 3 or np.dot(x, np.roll(y, -1)) == np.dot(y, np.roll(x, -1)):
            continue  # a lone moveto, a line, points on one line: no area (Pillow would still draw its outline)
        closed_for_the_user |= not subpath.closed and not np.array_equal(points[0], points[-1])
        rings.append(points)
    if closed_for_the_user:
        sentence = f"{label} is an open path; it is filled as if closed by a straight line, as SVG fills it."
        logger.info(sentence)
        if note is not None:
            note(sentence)
    return rings


def winding_numbers(points: np.ndarray, rings: Sequence[np.ndarray]) -> np.ndarray:
    """Winding number of each (N, 2) point around the closed polylines ``rings`` (Sunday's crossing rule)."""
    starts = np.concatenate([ring for ring in rings])
    ends = np.concatenate([np.roll(ring, -1, axis=0) for ring in rings])
    total = np.zeros(len(points), dtype=np.int64)
    chunk = max(1, 4_000_000 // max(1, len(starts)))  # bound the (points × edges) temporaries
    for i in range(0, len(points), chunk):
        px, py = points[i : i + chunk, :1], points[i : i + chunk, 1:]
        side = (ends[:, 0] - starts[:, 0]) * (py - starts[:, 1]) - (px - starts[:, 0]) * (ends[:, 1] - starts[:, 1])
        up = (starts[:, 1] <= py) & (ends[:, 1] > py) & (side > 0)
        down = (starts[:, 1] > py) & (ends[:, 1] <= py) & (side < 0)
        total[i : i + chunk] = up.sum(axis=1) - down.sum(axis=1)
    return total


def _draw_tile(rings: Sequence[np.ndarray], rule: str, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """Coverage (h, w) float32 of the image tile at (x0, y0), from a (4h, 4w) supersampled fill."""
    from scipy import ndimage

    size = (w * SUPERSAMPLE, h * SUPERSAMPLE)
    # Pillow's pixel i is centred at i; our subpixel i spans [i, i + 1) / SUPERSAMPLE of the image. Pillow
    # truncates vertices to whole pixels (a bias of half a subpixel up and left): round them here instead.
    local = [np.rint((ring - (x0, y0)) * SUPERSAMPLE - 0.5) for ring in rings]
    outline = ImageDraw.Outline()
    for ring in local:
        outline.move(*ring[0])
        for x, y in ring[1:]:
            outline.line(x, y)
        outline.close()
    with_edges = Image.new("L", size, 0)
    ImageDraw.Draw(with_edges).shape(outline, fill=2)
    without = with_edges.copy()
    draw = ImageDraw.Draw(without)
    for ring in local:
        draw.line([*map(tuple, ring), tuple(ring[0])], fill=0)
    fill = (np.asarray(with_edges, np.float32) + np.asarray(without, np.float32)) / 4.0  # 0, ½ (outline), 1
    if rule == "nonzero":
        unfilled = fill == 0
        regions, count = ndimage.label(unfilled)
        cores, core_count = ndimage.label(ndimage.binary_erosion(unfilled, iterations=2))
        if count and core_count:
            rows, cols = [], []
            for index, box in enumerate(ndimage.find_objects(cores), 1):
                if box is None:
                    continue
                offset = int(np.argmax(cores[box] == index))
                row, col = np.unravel_index(offset, cores[box].shape)
                rows.append(box[0].start + row)
                cols.append(box[1].start + col)
            centres = np.stack(
                [(np.array(cols) + 0.5) / SUPERSAMPLE + x0, (np.array(rows) + 0.5) / SUPERSAMPLE + y0], 1
            )
            inside = np.zeros(count + 1, dtype=bool)
            inside[regions[rows, cols]] = winding_numbers(centres, rings) != 0
            filled = inside[regions]
            if filled.any():
                fill[filled] = 1.0
                # An outline between two filled faces (the pentagram's inner edges) is inside too.
                seam = (fill == 0.5) & ndimage.binary_dilation(filled) & (ndimage.minimum_filter(fill, size=3) > 0)
                fill[seam] = 1.0
    return fill.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE).mean(axis=(1, 3))


def rasterise(
    shape: Shape, size: tuple[int, int], label: str = "The shape", note: Callable[[str], None] | None = None
) -> np.ndarray:
    """The shape's coverage of each pixel of a (W, H) image: (H, W) float32 in [0, 1]."""
    width, height = size
    coverage = np.zeros((height, width), dtype=np.float32)
    rings = _rings(shape, label, note)
    if not rings:
        raise ShapeMaskError(f"{label} encloses no area (it is a point or a line); draw a closed shape.")
    allpoints = np.concatenate(rings)
    low, high = allpoints.min(axis=0), allpoints.max(axis=0)
    if high[0] <= 0 or high[1] <= 0 or low[0] >= width or low[1] >= height:
        raise ShapeMaskError(
            f"{label} lies entirely outside the {width}×{height} image; draw it over the image (coordinates are "
            "image pixels)."
        )
    left, top = max(0, math.floor(low[0])), max(0, math.floor(low[1]))
    right, bottom = min(width, math.ceil(high[0]) + 1), min(height, math.ceil(high[1]) + 1)
    for y0 in range(top, bottom, TILE):
        for x0 in range(left, right, TILE):
            w, h = min(TILE, right - x0), min(TILE, bottom - y0)
            coverage[y0 : y0 + h, x0 : x0 + w] = _draw_tile(rings, shape.fill_rule, x0, y0, w, h)
    if not coverage.any():
        raise ShapeMaskError(f"{label} covers no pixel of the {width}×{height} image; draw a larger closed shape.")
    return coverage


def combined_mask(
    shapes: Sequence[Shape], size: tuple[int, int], what: str, note: Callable[[str], None] | None = None
) -> np.ndarray | None:
    """The shapes as an (H, W) uint8 mask (255 = inside), or None when it covers the whole image: the union of
    each region's shapes, intersected across regions.

    ``what`` names the shapes in messages ("mask", "detail"); ``note`` receives the covers-everything sentence
    (also logged), and the note that an open subpath was closed. Each shape must cover some pixel of the image,
    and the regions some pixel in common.
    """
    if not shapes:
        return None
    if len(shapes) > MAX_SHAPES:
        raise ShapeMaskError(f"There are {len(shapes):,} {what} shapes, more than {MAX_SHAPES:,}; combine them.")
    if sum(len(shape.d) for shape in shapes) > MAX_PATH_CHARS:
        raise ShapeMaskError(f"The {what} shapes' path data is longer than {MAX_PATH_CHARS:,} characters in all.")
    outside: dict[int, np.ndarray] = {}
    for number, shape in enumerate(shapes, 1):
        label = f"The {what} shape {number} of {len(shapes)}" if len(shapes) > 1 else f"The {what} shape"
        plane = outside.setdefault(shape.region, np.ones((size[1], size[0]), dtype=np.float32))
        plane *= 1.0 - rasterise(shape, size, label, note)
    inside = np.ones((size[1], size[0]), dtype=np.float32)
    for plane in outside.values():
        inside *= 1.0 - plane
    mask = np.rint(inside * 255.0).astype(np.uint8)
    if not mask.any():
        regions = ", ".join(str(region) for region in sorted(outside))
        raise ShapeMaskError(
            f"The {what} shapes' regions {regions} have no pixel in common, so nothing of the image is left (with "
            "clip-paths: the clips hide the whole image); make them overlap."
        )
    # Vertices snap to the subpixel grid (Pillow's are whole numbers), so an edge on the image's border can leave
    # its pixels 7/8 covered, a corner (7/8)²: at least ¾ everywhere is the whole image.
    if mask.min() >= 0.75 * 255:
        sentence = f"The {what} shapes cover the whole image, so they change nothing (the same as no {what})."
        logger.info(sentence)
        if note is not None:
            note(sentence)
        return None
    return mask


def to_canvas(plane: np.ndarray, canvas: int) -> torch.Tensor:
    """An (H, W) uint8 plane, padded to the white square (0 outside the image) and resized like the image."""
    from .resample import resize_padded

    height, width = plane.shape

    def block(rows: slice, cols: slice) -> np.ndarray:
        return (plane[rows, cols, None] / np.float32(255.0)).astype(np.float32)

    return resize_padded(block, width, height, 1, canvas)[..., 0].clamp_(0.0, 1.0).contiguous()


__all__ = [
    "FILL_RULES",
    "MAX_SHAPES",
    "Shape",
    "as_shapes",
    "check_paths",
    "combined_mask",
    "rasterise",
    "request_shapes",
    "shapes_from_json",
    "to_canvas",
    "winding_numbers",
]

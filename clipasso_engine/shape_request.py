"""Shapes as the protocol and the Python API give them: ``mask_paths`` / ``detail_paths`` items, validated.

Each item is ``{"d": path data in image px, "fill_rule": "nonzero" | "evenodd", "region": k}`` (docs/protocol.md);
the path data is parsed here too, so a bad shape is answered before anything heavy loads (no torch, no Pillow):
``clipasso serve`` checks a request with this module alone. Rasterising is ``shape_mask.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import PathDataError, ShapeMaskError, shorten
from .path_data import parse_path_data

FILL_RULES = ("nonzero", "evenodd")
#: Most shapes in one field (mask or detail), and most characters of one shape's path data.
MAX_SHAPES = 1000
MAX_PATH_CHARS = 10_000_000


@dataclass(frozen=True)
class Shape:
    """One filled shape: SVG path data ``d`` in image pixels, its fill rule, and the region it belongs to."""

    d: str
    fill_rule: str = "nonzero"
    #: shapes of one region make their union; different regions intersect
    region: int = 0


def shapes_from_json(value: object, field: str) -> list[Shape]:
    """A protocol field (``mask_paths``/``detail_paths``): a list of ``{"d": str, "fill_rule": rule}`` objects."""
    if not isinstance(value, list):
        raise ShapeMaskError(f'"{field}" must be a list of {{"d": ..., "fill_rule": ...}} objects, not {_kind(value)}.')
    if len(value) > MAX_SHAPES:
        raise ShapeMaskError(
            f'"{field}" has {len(value):,} shapes, more than {MAX_SHAPES:,}; combine or simplify them.'
        )
    shapes = []
    for number, item in enumerate(value, 1):
        where = f'"{field}" item {number}'
        if not isinstance(item, dict):
            raise ShapeMaskError(f'{where} must be an object {{"d": ..., "fill_rule": ...}}, not {_kind(item)}.')
        unknown = sorted(set(item) - {"d", "fill_rule", "region"})
        if unknown:
            shown = shorten(", ".join(unknown), 80)
            raise ShapeMaskError(f"{where} has unknown key(s) {shown}; use d, fill_rule and region.")
        if not isinstance(item.get("d"), str):
            raise ShapeMaskError(f'{where} needs "d", SVG path data as a string, not {_kind(item.get("d"))}.')
        rule = item.get("fill_rule", "nonzero")
        if rule not in FILL_RULES:
            shown = shorten(repr(rule), 40)
            raise ShapeMaskError(f'{where} has fill_rule {shown}; use "nonzero" or "evenodd".')
        region = item.get("region", 0)
        if isinstance(region, bool) or not isinstance(region, int) or not 0 <= region < MAX_SHAPES:
            shown = shorten(repr(region), 40)
            raise ShapeMaskError(f"{where} has region {shown}; use a whole number from 0 to {MAX_SHAPES - 1}.")
        shapes.append(Shape(item["d"], rule, region))
    return shapes


def _kind(value: object) -> str:
    return {type(None): "null", bool: "a boolean", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def check_paths(shapes: Sequence[Shape], what: str) -> None:
    """Parse every shape's path data now, so that a bad one fails before anything heavy (``PathDataError``)."""
    for number, shape in enumerate(shapes, 1):
        if len(shape.d) > MAX_PATH_CHARS:
            raise ShapeMaskError(f"The {what} shape {number}'s path data is longer than {MAX_PATH_CHARS:,} characters.")
        try:
            parse_path_data(shape.d)
        except PathDataError as exc:
            raise PathDataError(f"The {what} shape {number} of {len(shapes)}: {exc}") from exc


def request_shapes(request: Mapping[str, Any]) -> tuple[list[Shape], list[Shape]]:
    """A protocol request's ``mask_paths`` and ``detail_paths`` (absent or null: none), validated and parsed."""
    found = []
    for field, what in (("mask_paths", "mask"), ("detail_paths", "detail")):
        value = request.get(field)
        shapes = [] if value is None else shapes_from_json(value, field)
        check_paths(shapes, what)
        found.append(shapes)
    return found[0], found[1]


def as_shapes(value: Sequence[Shape | Mapping[str, Any]] | None, field: str) -> list[Shape]:
    """Shapes given to the Python API: ``Shape`` objects or protocol-style dicts (validated), or None."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ShapeMaskError(f'"{field}" must be a list of {{"d": ..., "fill_rule": ...}} objects, not {_kind(value)}.')
    items = [
        {"d": item.d, "fill_rule": item.fill_rule, "region": item.region}
        if isinstance(item, Shape)
        else dict(item)
        if isinstance(item, Mapping)
        else item
        for item in value
    ]
    return shapes_from_json(items, field)

"""Mask and detail shapes read from an SVG file (``clipasso sketch --mask-svg / --detail-svg FILE.svg``).

Every ``path``, ``rect``, ``circle``, ``ellipse``, ``polygon`` and ``polyline`` that would be drawn becomes one
``shape_request.Shape`` in the file's user units, which must be the image's pixels: the root ``viewBox`` absent or
``0 0 w h``, with ``width``/``height`` (when given) equal to w and h in pixels, as ``clipasso sketch`` writes its
SVG. ``transform`` attributes on the shapes and their groups are applied (affine maps take Béziers to Béziers
exactly); ``fill-rule`` comes from the attribute or ``style``, inherited from the groups, nonzero by default.
Shapes inside ``defs``, ``clipPath``, ``mask``, ``pattern``, ``marker`` and ``symbol`` are not drawn, so they are
skipped; a clone (``use``) or a nested ``svg`` is refused with a sentence saying what to do.

The file is read with the standard library's XML parser, at most ``MAX_FILE_BYTES``, and any entity declaration
is refused (so no "billion laughs" expansion and no external entity is ever read).
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
import xml.parsers.expat as expat
from typing import Any

import numpy as np

from .errors import PathDataError, ShapeMaskError, shorten
from .path_data import parse_path_data
from .shape_request import FILL_RULES, MAX_SHAPES, Shape

MAX_FILE_BYTES = 20_000_000
_SKIPPED = {"defs", "clipPath", "mask", "pattern", "marker", "symbol", "metadata", "title", "desc", "style"}
_SHAPES = {"path", "rect", "circle", "ellipse", "polygon", "polyline"}
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TRANSFORM = re.compile(r"\s*(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)\s*,?")


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _refuse_entities(*_args: object) -> None:
    raise ShapeMaskError("The shapes file declares XML entities, which are not read; save it as a plain SVG.")


def read_shapes_svg(path: str | os.PathLike[str]) -> list[Shape]:
    """Every drawn shape of the SVG file at ``path``, in image pixels; ``ShapeMaskError`` for an unusable file."""
    name = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ShapeMaskError(f"{name} is {size:,} bytes, more than {MAX_FILE_BYTES:,}; simplify the shapes.")
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ShapeMaskError(f"{name} cannot be read ({exc.strerror or exc}); check the path.") from exc
    # A first pass with expat itself, whose handlers can refuse entity declarations (ElementTree's C parser
    # hides them); the tree is built only from a file that has none.
    scanner: Any = expat.ParserCreate()
    scanner.EntityDeclHandler = _refuse_entities
    scanner.UnparsedEntityDeclHandler = _refuse_entities
    try:
        scanner.Parse(data, True)
        root = ET.fromstring(data)
    except (expat.ExpatError, ET.ParseError) as exc:
        raise ShapeMaskError(f"{name} is not a readable SVG file ({exc}); save it as plain SVG.") from exc
    if _local(root.tag) != "svg":
        raise ShapeMaskError(f"{name} is XML but not SVG (its root is <{shorten(_local(root.tag), 40)}>).")
    _check_frame(root, name)
    shapes: list[Shape] = []
    _collect(root, np.eye(3), "nonzero", name, shapes)
    if not shapes:
        raise ShapeMaskError(f"{name} has no path, rect, circle, ellipse or polygon; draw the shapes in it first.")
    return shapes


def _length(value: str | None, what: str, name: str) -> float | None:
    if value is None:
        return None
    match = re.fullmatch(rf"\s*({_NUMBER})\s*(px)?\s*", value)
    if match is None or not math.isfinite(float(match.group(1))):
        raise ShapeMaskError(
            f"{name}: {what} {shorten(value, 40)!r} is not a number of pixels; give shapes in the image's pixel frame."
        )
    return float(match.group(1))


def _check_frame(root: ET.Element, name: str) -> None:
    fix = "make its viewBox 0 0 W H and its width and height W and H pixels, as clipasso sketch writes them"
    box = root.get("viewBox")
    width = _length(root.get("width"), "its width", name) if box is not None else None
    height = _length(root.get("height"), "its height", name) if box is not None else None
    if box is None:
        return
    numbers = re.findall(_NUMBER, box)
    if len(numbers) != 4 or float(numbers[0]) != 0 or float(numbers[1]) != 0:
        raise ShapeMaskError(f"{name}'s viewBox {shorten(box, 40)!r} does not start at 0 0; {fix}.")
    if (width is not None and width != float(numbers[2])) or (height is not None and height != float(numbers[3])):
        raise ShapeMaskError(f"{name}'s viewBox scales its coordinates away from pixels; {fix}.")


def parse_transform(text: str, where: str) -> np.ndarray:
    """An SVG ``transform`` attribute as a 3×3 matrix (SVG 1.1 §7.6)."""
    matrix, position = np.eye(3), 0
    text = text.strip()
    while position < len(text):
        match = _TRANSFORM.match(text, position)
        if match is None:
            raise ShapeMaskError(f"{where} has a transform {shorten(text, 60)!r} that cannot be read.")
        kind, values = match.group(1), [float(v) for v in re.findall(_NUMBER, match.group(2))]
        counts = {"matrix": (6,), "translate": (1, 2), "scale": (1, 2), "rotate": (1, 3), "skewX": (1,), "skewY": (1,)}
        if len(values) not in counts[kind] or not all(math.isfinite(v) for v in values):
            raise ShapeMaskError(f"{where} has a transform {shorten(match.group(0), 60)!r} with wrong numbers.")
        if kind == "matrix":
            a, b, c, d, e, f = values
            step = np.array([[a, c, e], [b, d, f], [0, 0, 1.0]])
        elif kind == "translate":
            step = np.array([[1, 0, values[0]], [0, 1, values[1] if len(values) > 1 else 0], [0, 0, 1.0]])
        elif kind == "scale":
            sy = values[1] if len(values) > 1 else values[0]
            step = np.diag([values[0], sy, 1.0])
        elif kind == "rotate":
            angle = math.radians(values[0])
            cx, cy = (values[1], values[2]) if len(values) == 3 else (0.0, 0.0)
            cos, sin = math.cos(angle), math.sin(angle)
            rotation = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1.0]])
            step = (
                np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
                @ rotation
                @ np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
            )
        else:
            shear = math.tan(math.radians(values[0]))
            step = (
                np.array([[1, shear, 0], [0, 1, 0], [0, 0, 1.0]])
                if kind == "skewX"
                else np.array([[1, 0, 0], [shear, 1, 0], [0, 0, 1.0]])
            )
        matrix = matrix @ step
        position = match.end()
    return matrix


def _fill_rule(element: ET.Element, inherited: str, where: str) -> str:
    rule = element.get("fill-rule")
    style = re.search(r"(?:^|;)\s*fill-rule\s*:\s*([^;]+)", element.get("style", ""))
    rule = style.group(1).strip() if style else rule
    if rule is None or rule == "inherit":
        return inherited
    if rule not in FILL_RULES:
        raise ShapeMaskError(f"{where} has fill-rule {shorten(rule, 30)!r}; use nonzero or evenodd.")
    return rule


def _geometry(element: ET.Element, kind: str, where: str) -> str:
    """The element's outline as SVG path data in its own user units."""

    def number(attribute: str, default: float | None = 0.0) -> float:
        value = _length(element.get(attribute), attribute, where)
        if value is None:
            if default is None:
                raise ShapeMaskError(f"{where} has no {attribute}; give it one.")
            return default
        return value

    if kind == "path":
        return element.get("d", "")
    if kind in ("polygon", "polyline"):
        values = re.findall(_NUMBER, element.get("points", ""))
        pairs = [f"{values[i]} {values[i + 1]}" for i in range(0, len(values) - 1, 2)]
        return ("M " + " L ".join(pairs) + (" Z" if kind == "polygon" else "")) if pairs else ""
    if kind == "rect":
        x, y, w, h = number("x"), number("y"), number("width", None), number("height", None)
        rx, ry = element.get("rx"), element.get("ry")
        rxv = number("rx") if rx is not None else (number("ry") if ry is not None else 0.0)
        ryv = number("ry") if ry is not None else rxv
        rxv, ryv = min(abs(rxv), w / 2), min(abs(ryv), h / 2)
        if rxv == 0 or ryv == 0:
            return f"M {x} {y} H {x + w} V {y + h} H {x} Z"
        arc = f"A {rxv} {ryv} 0 0 1"
        return (
            f"M {x + rxv} {y} H {x + w - rxv} {arc} {x + w} {y + ryv} V {y + h - ryv} {arc} {x + w - rxv} {y + h} "
            f"H {x + rxv} {arc} {x} {y + h - ryv} V {y + ryv} {arc} {x + rxv} {y} Z"
        )
    cx, cy = number("cx"), number("cy")
    radii = (number("r", None),) * 2 if kind == "circle" else (number("rx", None), number("ry", None))
    arc = f"A {radii[0]} {radii[1]} 0 0 1"
    return f"M {cx - radii[0]} {cy} {arc} {cx + radii[0]} {cy} {arc} {cx - radii[0]} {cy} Z"


def _transformed(d: str, matrix: np.ndarray, where: str) -> str:
    if np.array_equal(matrix, np.eye(3)):
        return d
    try:
        subpaths = parse_path_data(d)
    except PathDataError as exc:
        raise PathDataError(f"{where}: {exc}") from exc
    parts = []
    for subpath in subpaths:
        points = (subpath.segments @ matrix[:2, :2].T + matrix[:2, 2]).tolist()  # Python floats: repr is exact
        if len(points):
            parts.append(f"M {points[0][0][0]!r} {points[0][0][1]!r}")
            parts.extend("C " + " ".join(f"{x!r} {y!r}" for x, y in segment[1:]) for segment in points)
            parts.append("Z" if subpath.closed else "")
    return " ".join(part for part in parts if part)


def _collect(element: ET.Element, matrix: np.ndarray, rule: str, name: str, shapes: list[Shape]) -> None:
    for child in element:
        kind = _local(child.tag)
        if kind in _SKIPPED:
            continue
        where = f"{name}: <{kind}{' id=' + repr(shorten(child.get('id', ''), 40)) if child.get('id') else ''}>"
        if kind == "use":
            raise ShapeMaskError(f"{where} is a clone; unlink it first (Edit > Clone > Unlink Clone).")
        if kind == "svg":
            raise ShapeMaskError(f"{where} is a nested SVG; put its shapes directly in the file.")
        transform = child.get("transform")
        local = matrix @ parse_transform(transform, where) if transform else matrix
        child_rule = _fill_rule(child, rule, where)
        if kind in _SHAPES:
            if len(shapes) >= MAX_SHAPES:
                raise ShapeMaskError(f"{name} has more than {MAX_SHAPES:,} shapes; combine them (Path > Union).")
            d = _geometry(child, kind, where)
            if d.strip():
                shapes.append(Shape(_transformed(d, local, where), child_rule))
        else:
            _collect(child, local, child_rule, name, shapes)


__all__ = ["MAX_FILE_BYTES", "parse_transform", "read_shapes_svg"]

"""Reading the strokes of an SVG file for a refine (``clipasso sketch --init previous.svg``).

Every ``<path>`` drawn where it stands, in document order, inside the root and its ``<g>`` and ``<a>`` groups, gives
one stroke per cubic segment (``path_data.parse_path_data``: lines become straight cubics, quadratics and arcs
cubics, a closing segment a straight cubic). Paths that are not drawn where they stand (inside ``defs``,
``clipPath``, ``mask``, ``marker``, ``symbol``, ``pattern`` and the like) are not strokes. Coordinates are taken in
the root's user units, which for what ``clipasso sketch`` writes (``viewBox="0 0 W H"``) are the image's pixels;
the root's own ``viewBox``, ``width`` and ``height`` are not applied. ``transform`` attributes on paths and groups
are applied (every SVG 1.1 transform function), so a group moved in an editor moves its strokes; a stroke without
a transform keeps its numbers exactly as written. A hidden path (``display:none``, ``visibility:hidden``) is a
stroke too: hiding is how an editor shows a lower ladder level, and the extension reads hidden strokes the same way.

Ladder levels (``read_init_file``): a ``<g>`` marked ``data-clipasso-strokes`` is a level group, as
``clipasso sketch --ladder`` and the extension write them. The levels are counted from the strokes read now, not
from the marks (the artist may have deleted or drawn strokes): each level group after the first starts where the
level before it ends, so a path between two level groups joins the level before it (as the extension reads them),
and the last level ends with the file's last stroke. A level left empty is no level; a file with one level group
left is one level (no ladder), until strokes are added (``refine.RefinePlan.settings``).

The width the sketch was drawn with (``read_init_sketch``): ``clipasso sketch`` records its settings as JSON in
``<metadata id="clipasso-provenance">``; their ``width`` (image px) or ``width_fraction`` is the refine's width
unless one is given. Provenance that is missing, not JSON, or holds a width the settings would refuse is ignored,
as the extension ignores it: the default width, as for a file an editor drew.

Read safely: standard-library ``xml.etree`` only, a size limit, and no entity declarations (which is how an XML
"billion laughs" file grows); no external resource is ever fetched.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from .config import SketchSettings
from .errors import InitStrokesError, PathDataError, SettingsError, shorten
from .path_data import parse_path_data

#: Largest file read: a sketch of 4096 strokes is about 0.5 MB; an editor's document with an embedded photo is more.
MAX_INIT_BYTES = 64 * 1024 * 1024
#: Most strokes a refine takes (``SketchSettings.strokes``' own limit).
MAX_STROKES = 4096

_SVG_NS = "{http://www.w3.org/2000/svg}"
#: Elements whose paths are drawn where they stand; every other element's subtree is skipped.
_CONTAINERS = {"svg", "g", "a"}
_TRANSFORM = re.compile(r"\s*(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^()]*)\)\s*,?")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
#: How many numbers each transform function takes.
_ARGUMENTS = {"matrix": (6,), "translate": (1, 2), "scale": (1, 2), "rotate": (1, 3), "skewX": (1,), "skewY": (1,)}

#: The ``id`` of the ``<metadata>`` element ``clipasso sketch`` writes its provenance JSON into (``svg.py``).
PROVENANCE_ID = "clipasso-provenance"

Strokes = list[list[list[float]]]


@dataclass(frozen=True)
class InitSketch:
    """An ``--init`` file: its strokes, where its ladder levels end (``read_init_file``), and the width it was drawn
    with, from its provenance: ``width`` in image px or ``width_fraction`` of the longer side (None, None: the
    default width, or nothing usable recorded)."""

    strokes: Strokes
    levels: tuple[int, ...]
    width: float | None = None
    width_fraction: float | None = None


def read_init_svg(path: str | os.PathLike[str]) -> Strokes:
    """The strokes of the SVG file ``path``, N × 4 × [x, y] in the root's user units; ``InitStrokesError`` else."""
    return read_init_file(path)[0]


def read_init_file(path: str | os.PathLike[str]) -> tuple[Strokes, tuple[int, ...]]:
    """The strokes of ``path`` and the stroke counts at which its ladder levels end, the last at the last stroke
    (() without level groups)."""
    sketch = read_init_sketch(path)
    return sketch.strokes, sketch.levels


def read_init_sketch(path: str | os.PathLike[str]) -> InitSketch:
    """The strokes, ladder levels and recorded stroke width of the SVG file ``path``; ``InitStrokesError`` else."""
    name = os.fspath(path)
    root = _parse(name, _read(name))
    strokes, levels = _strokes_and_levels(root, name)
    width, width_fraction = _drawn_width(root)
    return InitSketch(strokes, levels, width, width_fraction)


def _strokes_and_levels(root: ET.Element, name: str) -> tuple[Strokes, tuple[int, ...]]:
    strokes: Strokes = []
    starts: list[int] = []
    _collect(root, np.eye(3), name, strokes, starts)
    if not strokes:
        raise InitStrokesError(
            f"{name} has no strokes (no <path> with a line or curve segment); give an SVG such as the one "
            "clipasso sketch writes."
        )
    if not starts:
        return strokes, ()
    # A level ends where the next level group starts (the first group's start ends none), the last at the end.
    return strokes, tuple(sorted({start for start in starts[1:] if 0 < start < len(strokes)} | {len(strokes)}))


def _drawn_width(root: ET.Element) -> tuple[float | None, float | None]:
    """(width in px, None) or (None, width_fraction) from the provenance's settings, or (None, None): the default.

    Anything unusable is skipped, never an error: the file is the artist's, and its strokes are still good.
    """
    found = [e for e in root.iter() if _local(e.tag) == "metadata" and e.get("id") == PROVENANCE_ID]
    if not found:
        return None, None
    try:
        provenance = json.loads(found[0].text or "")
    except (ValueError, RecursionError):  # not JSON, an integer over Python's digit limit, or nested too deep
        return None, None
    settings = provenance.get("settings") if isinstance(provenance, dict) else None
    if not isinstance(settings, dict):
        return None, None
    for key in ("width", "width_fraction"):  # the extension's order
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        try:
            number = float(value)
            # The settings' own range check: finite, above 0, at most their limit.
            SketchSettings(width=number) if key == "width" else SketchSettings(width_fraction=number)
        except (SettingsError, OverflowError):
            continue
        return (number, None) if key == "width" else (None, number)
    return None, None


def _read(name: str) -> bytes:
    try:
        size = os.path.getsize(name)
        if size > MAX_INIT_BYTES:
            raise InitStrokesError(
                f"{name} is {size:,} bytes, more than the {MAX_INIT_BYTES:,}-byte limit for an --init SVG; save the "
                "sketch's strokes alone."
            )
        with open(name, "rb") as file:
            return file.read(MAX_INIT_BYTES + 1)
    except OSError as exc:
        raise InitStrokesError(f"{name} cannot be read ({exc.strerror or exc}); check the --init path.") from exc


def _parse(name: str, data: bytes) -> ET.Element:
    # Entity declarations are the only way an XML file grows when parsed; an SVG stroke file never needs one.
    if any("<!ENTITY".encode(encoding) in data for encoding in ("utf-8", "utf-16-le", "utf-16-be")):
        raise InitStrokesError(f"{name} declares XML entities, which are refused for safety; save it as plain SVG.")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else 0
        raise InitStrokesError(
            f"{name} is not a well-formed XML file (line {line}), so not an SVG; give the SVG that clipasso sketch "
            "or an editor saved."
        ) from None
    if _local(root.tag) != "svg":
        raise InitStrokesError(
            f"{name} is XML but not an SVG (its root is <{shorten(_local(root.tag), 40)}>); give an SVG file."
        )
    return root


def _local(tag: object) -> str:
    """An element's name without the SVG namespace (a file without the namespace is read too)."""
    text = tag if isinstance(tag, str) else ""  # comments and processing instructions have a function as tag
    return text[len(_SVG_NS) :] if text.startswith(_SVG_NS) else text


def _collect(element: ET.Element, parent: np.ndarray, name: str, strokes: Strokes, starts: list[int]) -> None:
    """Append the strokes of ``element``'s drawn paths, in document order, under the affine ``parent`` (3×3), and
    the stroke count at the start of each level group to ``starts``."""
    for child in element:
        tag = _local(child.tag)
        if tag not in _CONTAINERS and tag != "path":
            continue
        ident = repr(shorten(child.get("id", ""), 40)) if child.get("id") else f"at stroke {len(strokes)}"
        matrix = parent
        if child.get("transform") is not None:
            matrix = parent @ parse_transform(child.get("transform", ""), f"{name}, <{tag}> {ident}")
        if tag == "path":
            _add_path(child, matrix, name, f"{name}, path {ident}", strokes)
        elif tag != "svg":  # a nested <svg> is a new viewport whose frame we do not follow
            if tag == "g" and child.get("data-clipasso-strokes") is not None:
                starts.append(len(strokes))
            _collect(child, matrix, name, strokes, starts)


def _add_path(path: ET.Element, matrix: np.ndarray, name: str, where: str, strokes: Strokes) -> None:
    d = path.get("d", "")
    if not d.strip():
        return  # a path without data draws nothing
    try:
        subpaths = parse_path_data(d)
    except PathDataError as exc:
        text = str(exc)
        raise InitStrokesError(f"{where}: {text[:1].lower()}{text[1:]}") from None
    identity = np.array_equal(matrix, np.eye(3))
    for subpath in subpaths:
        for segment in subpath.segments:
            if len(strokes) >= MAX_STROKES:
                raise InitStrokesError(
                    f"{name} has more than {MAX_STROKES} strokes (cubic segments), the limit of a "
                    "sketch; delete some paths or simplify them."
                )
            with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                points = segment if identity else segment @ matrix[:2, :2].T + matrix[:2, 2]
            if not np.isfinite(points).all():
                raise InitStrokesError(
                    f"{where}: its transform takes the coordinates beyond the range of numbers; fix the transform."
                )
            strokes.append([[float(x), float(y)] for x, y in points])


def parse_transform(text: str, where: str = "the transform") -> np.ndarray:
    """An SVG ``transform`` attribute as a 3×3 affine matrix (functions applied right to left, as SVG does)."""
    matrix = np.eye(3)
    position = 0
    while text[position:].strip():
        match = _TRANSFORM.match(text, position)
        if match is None:
            raise _bad_transform(text, where, "it is not a list of matrix, translate, scale, rotate, skewX, skewY")
        function, body = match.group(1), match.group(2)
        values = [float(v) for v in _NUMBER.findall(body)]
        leftover = _NUMBER.sub(" ", body).replace(",", " ").strip()
        if leftover or len(values) not in _ARGUMENTS[function]:
            raise _bad_transform(text, where, f"{function}() has the wrong arguments")
        if not all(math.isfinite(v) for v in values):
            raise _bad_transform(text, where, "a number is too large")
        matrix = matrix @ _function_matrix(function, values)
        position = match.end()
    return matrix


def _function_matrix(function: str, v: list[float]) -> np.ndarray:
    if function == "matrix":
        a, b, c, d, e, f = v
    elif function == "translate":
        a, b, c, d, e, f = 1.0, 0.0, 0.0, 1.0, v[0], v[1] if len(v) > 1 else 0.0
    elif function == "scale":
        a, b, c, d, e, f = v[0], 0.0, 0.0, v[1] if len(v) > 1 else v[0], 0.0, 0.0
    elif function == "rotate":
        cos, sin = math.cos(math.radians(v[0])), math.sin(math.radians(v[0]))
        cx, cy = (v[1], v[2]) if len(v) == 3 else (0.0, 0.0)
        # rotate(a, cx, cy) = translate(cx, cy) rotate(a) translate(-cx, -cy)
        a, b, c, d = cos, sin, -sin, cos
        e, f = cx - cos * cx + sin * cy, cy - sin * cx - cos * cy
    elif function == "skewX":
        a, b, c, d, e, f = 1.0, 0.0, math.tan(math.radians(v[0])), 1.0, 0.0, 0.0
    else:  # skewY
        a, b, c, d, e, f = 1.0, math.tan(math.radians(v[0])), 0.0, 1.0, 0.0, 0.0
    return np.array([[a, c, e], [b, d, f], [0.0, 0.0, 1.0]])


def _bad_transform(text: str, where: str, what: str) -> InitStrokesError:
    return InitStrokesError(
        f"{where} has the transform {shorten(text, 60)!r}, which cannot be read: {what}; write e.g. "
        "'translate(10 20) rotate(30)'."
    )


__all__ = [
    "MAX_INIT_BYTES",
    "MAX_STROKES",
    "PROVENANCE_ID",
    "InitSketch",
    "parse_transform",
    "read_init_file",
    "read_init_sketch",
    "read_init_svg",
]

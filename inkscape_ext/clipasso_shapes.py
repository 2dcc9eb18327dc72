"""Shapes drawn in the document, as the engine's ``mask_paths`` / ``detail_paths``: path data in image pixels.

A shape selected with an image (``path``, ``rect``, ``circle``, ``ellipse``, ``polygon``, ``polyline``, or a group
of them) is mapped from its own coordinates into the engine's pixel frame of the image: its composed transform
(its own and every ancestor's, so any layer) to the document, then the inverse of the image's composed transform
and of ``clipasso_place.placement()`` (x, y, width, height, ``preserveAspectRatio``, units). An image's own
``clip-path`` is mapped the same way from the image's user space (``clipPathUnits`` userSpaceOnUse, or
objectBoundingBox: the image's viewport). Curves and arcs become cubic Béziers (exact under any affine map; inkex
approximates arcs by quarter turns or less), each subpath closed with ``Z`` where the drawing closed it, so the
engine can say which were open. The fill rule is the shape's ``fill-rule`` (``clip-rule`` in a clip), as styled or
inherited, nonzero by default. The document is only read.

Several images: each shape goes to every selected image whose pixel rectangle its mapped bounding box overlaps;
a shape that overlaps none of them is an error, before the engine starts. Standard library and inkex only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import inkex
from clipasso_pixelsize import UnknownSize, pixel_size
from clipasso_place import placement

#: The elements that are shapes (open ones too: the engine closes or refuses them, and says so).
SHAPE_TYPES = (inkex.PathElement, inkex.Rectangle, inkex.Circle, inkex.Ellipse, inkex.Polygon, inkex.Polyline)
MODES = ("object", "detail", "ignore")
#: The engine's range for ``detail_weight`` (``SketchSettings``), checked here so the message names our option.
MAX_DETAIL_WEIGHT = 1000.0


@dataclass(frozen=True)
class PixelShape:
    """One shape in the image's pixel frame."""

    d: str
    fill_rule: str
    #: what the user calls it in messages: the element's id
    label: str
    #: (left, top, right, bottom) of the mapped geometry, in pixels
    box: tuple[float, float, float, float]

    def to_json(self) -> dict[str, str]:
        return {"d": self.d, "fill_rule": self.fill_rule}

    def overlaps(self, size: tuple[int, int]) -> bool:
        """Whether the bounding box meets the inside of the W × H image (touching an edge does not count)."""
        left, top, right, bottom = self.box
        return right > 0 and bottom > 0 and left < size[0] and top < size[1]


def shape_fields(
    svg: inkex.SvgDocumentElement,
    images: list[inkex.Image],
    files: list[str],
    elements: list[Any],
    *,
    mode: str,
    use_clip: bool,
    detail_weight: float,
) -> list[dict[str, Any]]:
    """For each image, the request fields its shapes add: ``mask_paths``, ``detail_paths`` (+ ``detail_weight``).

    ``elements`` are the selected shapes and groups; ``mode`` says what they are (``MODES``). An image's own clip
    is its object mask (``use_clip``) unless selected shapes are its object mask. A selected shape that overlaps
    no selected image is an ``AbortExtension``, before the engine starts."""
    active = elements if mode != "ignore" else []
    if active and mode == "detail" and not (math.isfinite(detail_weight) and 1 <= detail_weight <= MAX_DETAIL_WEIGHT):
        raise inkex.AbortExtension(
            f"The detail weight {detail_weight:g} is not a number from 1 to {MAX_DETAIL_WEIGHT:g}; set it under "
            "'Shapes selected with the image', then try again."
        )
    unused = {leaf.get_id() for e in active for leaf in leaves(e)}
    fields: list[dict[str, Any]] = []
    for img, file in zip(images, files):
        clipped = use_clip and bool(img.get("clip-path"))
        if not active and not clipped:
            fields.append({})
            continue
        size = _size(img, file)
        mine = [shape for shape in selected_shapes(svg, img, size, active) if shape.overlaps(size)]
        unused -= {shape.label for shape in mine}
        found: dict[str, Any] = {}
        if mine:
            found["mask_paths" if mode == "object" else "detail_paths"] = [shape.to_json() for shape in mine]
        if mine and mode == "detail":
            found["detail_weight"] = detail_weight
        if clipped and "mask_paths" not in found:
            # A clip shape outside the picture hides nothing of it: left out (the engine would refuse it).
            clip = [shape.to_json() for shape in clip_shapes(svg, img, size) if shape.overlaps(size)]
            if clip:
                found["mask_paths"] = clip
        fields.append(found)
    if unused:
        label = sorted(unused)[0]
        where = f"the image '{images[0].get_id()}'" if len(images) == 1 else "any of the selected images"
        raise inkex.AbortExtension(
            f"The shape '{label}' does not overlap {where}; move it over the image or leave it out of the selection."
        )
    return fields


def _size(img: inkex.Image, file: str) -> tuple[int, int]:
    try:
        return pixel_size(file)
    except UnknownSize as err:
        raise inkex.AbortExtension(
            f"The size of image '{img.get_id()}' cannot be read ({err}), so shapes cannot be placed on it; save it as "
            "PNG or JPEG, or sketch it without shapes."
        ) from err


def is_sketch(element: inkex.BaseElement) -> bool:
    """A group this extension made (its strokes are not a mask)."""
    return element.get("data-clipasso-version") is not None


def leaves(element: inkex.BaseElement) -> list[inkex.BaseElement]:
    """The shapes ``element`` is or holds (a group's, at any depth); empty for anything else."""
    if isinstance(element, SHAPE_TYPES):
        return [element]
    if isinstance(element, inkex.Group) and not is_sketch(element):
        return [leaf for child in element for leaf in leaves(child)]
    return []


def to_pixels(
    svg: inkex.SvgDocumentElement, img: inkex.Image, size: tuple[int, int]
) -> tuple[inkex.Transform, inkex.Transform]:
    """Maps into the image's pixel frame from the document (root user space) and from the image's user space.

    An image drawn with no area (a zero width, or a ``scale(0)``) cannot be inverted: ``AbortExtension``."""
    user = placement(svg, img, size).pixels_to_user
    document = img.composed_transform() @ user
    for matrix in (user, document):
        (a, c, _), (b, d, _) = matrix.matrix
        if not math.isfinite(a * d - b * c) or abs(a * d - b * c) < 1e-12:
            raise inkex.AbortExtension(
                f"The image '{img.get_id()}' is drawn with no area (a zero size or scale); give it a size, then "
                "try again."
            )
    return -document, -user


def pixel_shape(element: inkex.BaseElement, matrix: inkex.Transform, rule_property: str = "fill-rule") -> PixelShape:
    """``element``'s geometry through ``matrix`` (its coordinates -> pixels) as absolute cubic path data."""
    path = element.path if isinstance(element, inkex.PathElement) else element.to_path_element().path
    parts = []
    xs: list[float] = []
    ys: list[float] = []
    for subpath, closed in _subpaths(path.to_absolute()):
        for nodes in subpath.to_superpath():
            if not nodes:
                continue
            points = [[matrix.apply_to_point(p) for p in node] for node in nodes]
            part = [f"M {_n(points[0][1].x)},{_n(points[0][1].y)}"]
            for k in range(1, len(nodes)):
                before, node = nodes[k - 1], nodes[k]
                straight = list(before[2]) == list(before[1]) and list(node[0]) == list(node[1])
                if closed and straight and k == len(nodes) - 1 and list(node[1]) == list(nodes[0][1]):
                    continue  # the line back to the start, which ``Z`` draws
                if straight:
                    part.append(f"L {_n(points[k][1].x)},{_n(points[k][1].y)}")
                else:
                    ctrl = (points[k - 1][2], points[k][0], points[k][1])
                    part.append("C " + " ".join(f"{_n(p.x)},{_n(p.y)}" for p in ctrl))
            parts.append(" ".join(part) + (" Z" if closed else ""))
    d = " ".join(parts)
    corners = [p for part in parts for p in _numbers(part)]
    box = inkex.Path(d).bounding_box() if all(math.isfinite(v) for xy in corners for v in xy) else None
    if corners and box is not None:  # tight, not the control points'
        xs, ys = [box.left, box.right], [box.top, box.bottom]
    elif corners:  # non-finite numbers (a degenerate transform): sent as they are, the engine refuses them
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    rule = str(element.specified_style().get(rule_property) or "nonzero").strip()
    return PixelShape(
        d=d,
        fill_rule=rule if rule in ("nonzero", "evenodd") else "nonzero",  # invalid values fall back, as renderers do
        label=element.get_id(),
        box=(min(xs), min(ys), max(xs), max(ys)) if xs else (math.inf, math.inf, -math.inf, -math.inf),
    )


def _subpaths(path: inkex.Path) -> Iterable[tuple[inkex.Path, bool]]:
    """An absolute path cut into subpaths, each with whether it ends in ``Z`` (a command after ``Z`` without a
    moveto starts a new subpath at the closed one's start, as SVG says)."""
    current: list[Any] = []
    start = None
    for segment in path:
        if isinstance(segment, inkex.paths.Move):
            if current:
                yield inkex.Path(current), False
            current, start = [segment], segment
        elif isinstance(segment, inkex.paths.ZoneClose):
            if current:
                yield inkex.Path([*current, segment]), True
            current = []
        else:
            if not current and start is not None:
                current = [inkex.paths.Move(start.x, start.y)]
            current.append(segment)
    if current:
        yield inkex.Path(current), False


def selected_shapes(
    svg: inkex.SvgDocumentElement, img: inkex.Image, size: tuple[int, int], elements: list[Any]
) -> list[PixelShape]:
    """Every shape in ``elements`` (selected shapes or groups) in ``img``'s pixel frame."""
    from_document, _ = to_pixels(svg, img, size)
    return [pixel_shape(leaf, from_document @ leaf.composed_transform()) for e in elements for leaf in leaves(e)]


def clip_shapes(svg: inkex.SvgDocumentElement, img: inkex.Image, size: tuple[int, int]) -> list[PixelShape]:
    """The image's own ``clip-path`` as shapes in its pixel frame (empty when it has none or none we can read)."""
    reference = (img.get("clip-path") or "").strip()
    if not reference.startswith("url(") or not reference.endswith(")"):
        return []
    clip = svg.getElementById(reference[4:-1].strip().strip("'\"").lstrip("#"))
    if clip is None or not isinstance(clip, inkex.ClipPath):
        return []
    _, from_user = to_pixels(svg, img, size)
    units = inkex.Transform()
    if (clip.get("clipPathUnits") or "userSpaceOnUse").strip() == "objectBoundingBox":
        x, y, w, h = placement(svg, img, size).viewport  # an image's bounding box is its viewport
        units = inkex.Transform(((w, 0.0, x), (0.0, h, y)))
    shapes = []
    for leaf in (leaf for child in clip for leaf in leaves(child)):
        inner = inkex.Transform()
        node = leaf
        while node is not None and node is not clip:  # the leaf's transforms up to the clipPath, which has its own
            inner = node.transform @ inner
            node = node.getparent()
        # The clipPath's transform is outermost, after the bounding box units (as browsers apply it).
        shapes.append(pixel_shape(leaf, from_user @ clip.transform @ units @ inner, "clip-rule"))
    return shapes


def _numbers(part: str) -> list[tuple[float, float]]:
    """The coordinate pairs of one subpath's path data, as written."""
    pairs = [token.split(",") for token in part.split() if "," in token]
    return [(float(x), float(y)) for x, y in pairs]


def _n(value: float) -> str:
    """A coordinate with 4 decimals (a ten-thousandth of a pixel), no trailing zeros; non-finite as written."""
    if not math.isfinite(value):
        return repr(value)
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text

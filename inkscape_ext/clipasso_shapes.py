"""Shapes drawn in the document, as the engine's ``mask_paths`` / ``detail_paths``: path data in image pixels.

A shape selected with an image (``path``, ``rect``, ``circle``, ``ellipse``, ``polygon``, ``polyline``, or a group
of them) is mapped from its own coordinates into the engine's pixel frame of the image: its composed transform
(its own and every ancestor's, so any layer) to the document, then the inverse of the image's composed transform
and of ``clipasso_place.placement()`` (x, y, width, height, ``preserveAspectRatio``, units). Curves and arcs become
cubic Béziers (exact under any affine map; inkex approximates arcs by quarter turns or less), each subpath closed
with ``Z`` where the drawing closed it, so the engine can say which were open. The fill rule is the shape's
``fill-rule`` (``clip-rule`` in a clip), as styled or inherited, nonzero by default. The document is only read.

Clips. What the user sees of a clipped image is the object: the intersection of the image's own ``clip-path`` and
every ancestor's (a clipped group or layer), each mapped from the user space of the element it clips
(``clipPathUnits`` userSpaceOnUse, or objectBoundingBox: that element's bounding box; the clipPath's transform
outermost). A clipPath is the union of its children, each intersected with its own ``clip-path``, and intersected
with the clipPath's ``clip-path``. Any such formula is sent as an intersection of unions (``region`` numbers,
docs/protocol.md): a union of intersections is distributed. Selected object shapes narrow it further (region 0).

Several images: each shape goes to every selected image whose pixel rectangle its mapped bounding box overlaps;
a shape that overlaps none of them is an error, before the engine starts. Standard library and inkex only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, List

import inkex
from clipasso_pixelsize import UnknownSize, pixel_size
from clipasso_place import placement

#: The elements that are shapes (open ones too: the engine closes or refuses them, and says so).
SHAPE_TYPES = (inkex.PathElement, inkex.Rectangle, inkex.Circle, inkex.Ellipse, inkex.Polygon, inkex.Polyline)
MODES = ("object", "detail", "ignore")
#: The engine's range for ``detail_weight`` (``SketchSettings``), checked here so the message names our option.
MAX_DETAIL_WEIGHT = 1000.0
#: The engine's limits: shapes in one field, and coordinates in pixels.
MAX_SHAPES = 1000
MAX_COORDINATE = 1e7
#: Most regions the clips of one image may make once distributed (each nesting level can multiply them).
MAX_REGIONS = 64
OPTION = "A clipped image's clip is the object"
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_PATH_DATA = re.compile(rf"(?:[\s,]|[MmZzLlHhVvCcSsQqTtAa]|{_NUMBER})*")


@dataclass(frozen=True)
class PixelShape:
    """One shape in the image's pixel frame."""

    d: str
    fill_rule: str
    #: what the user calls it in messages: the element's id
    label: str
    #: (left, top, right, bottom) of the mapped geometry, in pixels
    box: tuple[float, float, float, float]
    #: shapes of one region make their union; regions intersect (the engine's ``region``)
    region: int = 0

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"d": self.d, "fill_rule": self.fill_rule}
        if self.region:
            found["region"] = self.region
        return found

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

    ``elements`` are the selected shapes and groups; ``mode`` says what they are (``MODES``). What an image's
    clips leave visible is its object mask (``use_clip``), narrowed by selected object shapes. A selected shape
    that overlaps no selected image, or a clip that hides the whole image, is an ``AbortExtension`` before the
    engine starts."""
    active = elements if mode != "ignore" else []
    if active and mode == "detail" and not (math.isfinite(detail_weight) and 1 <= detail_weight <= MAX_DETAIL_WEIGHT):
        raise inkex.AbortExtension(
            f"The detail weight {detail_weight:g} is not a number from 1 to {MAX_DETAIL_WEIGHT:g}; set it under "
            "'Shapes selected with the image', then try again."
        )
    unused = {leaf.get_id() for e in active for leaf in leaves(e)}
    fields: list[dict[str, Any]] = []
    for img, file in zip(images, files):
        clipped = use_clip and any(clip_of(svg, node) is not None for node in _self_and_ancestors(img))
        if not active and not clipped:
            fields.append({})
            continue
        size = _size(img, file)
        mine = [shape for shape in selected_shapes(svg, img, size, active) if shape.overlaps(size)]
        unused -= {shape.label for shape in mine}
        found: dict[str, Any] = {}
        if mine and mode == "detail":
            found["detail_paths"] = [shape.to_json() for shape in mine]
            found["detail_weight"] = detail_weight
        regions = [mine] if mine and mode == "object" else []
        regions += visible_regions(svg, img, size) if clipped else []
        mask = [replace(shape, region=number) for number, region in enumerate(regions) for shape in region]
        if len(mask) > MAX_SHAPES:
            raise inkex.AbortExtension(
                f"The image '{img.get_id()}' would be masked by {len(mask):,} shapes (its clips and the selected "
                f"ones), more than the engine's {MAX_SHAPES:,}; simplify the clips or turn off '{OPTION}'."
            )
        if mask:
            found["mask_paths"] = [shape.to_json() for shape in mask]
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
    """``element``'s geometry through ``matrix`` (its coordinates -> pixels) as absolute cubic path data.

    Path data inkex cannot read in full (it drops what it cannot parse), or coordinates the engine would refuse,
    are an ``AbortExtension`` naming the element."""
    if isinstance(element, inkex.PathElement):
        _check_path_data(element)
    path = element.path if isinstance(element, inkex.PathElement) else element.to_path_element().path
    parts = []
    xs: list[float] = []
    ys: list[float] = []
    for subpath, closed in _subpaths(path.to_absolute()):
        for nodes in subpath.to_superpath():
            if not nodes:
                continue
            points = [[matrix.apply_to_point(p) for p in node] for node in nodes]
            if not all(abs(v) <= MAX_COORDINATE for node in points for p in node for v in (p.x, p.y)):
                raise inkex.AbortExtension(
                    f"The shape '{element.get_id()}' reaches beyond {MAX_COORDINATE:,.0f} pixels from the image (or "
                    "has a coordinate that is not a number); redraw it over the image, then try again."
                )
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
    box = inkex.Path(d).bounding_box() if parts else None
    if box is not None:  # tight, not the control points'
        xs, ys = [box.left, box.right], [box.top, box.bottom]
    rule = str(element.specified_style().get(rule_property) or "nonzero").strip()
    return PixelShape(
        d=d,
        fill_rule=rule if rule in ("nonzero", "evenodd") else "nonzero",  # invalid values fall back, as renderers do
        label=element.get_id(),
        box=(min(xs), min(ys), max(xs), max(ys)) if xs else (math.inf, math.inf, -math.inf, -math.inf),
    )


def _check_path_data(element: inkex.PathElement) -> None:
    """Refuse path data inkex reads only in part: characters outside the grammar, or numbers it left unread."""
    text = element.get("d") or ""
    numbers = len(re.findall(_NUMBER, text))
    if _PATH_DATA.fullmatch(text) is None or sum(len(seg.args) for seg in inkex.Path(text)) < numbers:
        shown = text if len(text) <= 40 else text[:37] + "…"
        raise inkex.AbortExtension(
            f"The shape '{element.get_id()}' has path data that cannot be read ('{shown}'); redraw it, or correct its "
            "d in the XML Editor (Ctrl+Shift+X), then try again."
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
    shapes = []
    for leaf in (leaf for e in elements for leaf in leaves(e)):
        (a, c, _), (b, d, _) = leaf.composed_transform().matrix
        if not math.isfinite(a * d - b * c) or abs(a * d - b * c) < 1e-12:
            raise inkex.AbortExtension(
                f"The shape '{leaf.get_id()}' is squashed flat by its transform or its layer's (a zero scale), so it "
                "encloses nothing; reset the transform (Object ▸ Transform) or leave it out of the selection."
            )
        shapes.append(pixel_shape(leaf, from_document @ leaf.composed_transform()))
    return shapes


Region = List[PixelShape]  # a union of shapes; an image's clips make a list of them, intersected


def clip_of(svg: inkex.SvgDocumentElement, node: inkex.BaseElement) -> inkex.ClipPath | None:
    """The clipPath ``node``'s ``clip-path`` (attribute or style) refers to; None without one, or when the
    reference is broken (renderers then draw the element unclipped)."""
    reference = (node.get("clip-path") or node.style.get("clip-path") or "").strip()
    if not reference.startswith("url(") or not reference.endswith(")"):
        return None
    clip = svg.getElementById(reference[4:-1].strip().strip("'\"").lstrip("#"))
    return clip if isinstance(clip, inkex.ClipPath) else None


def _self_and_ancestors(node: inkex.BaseElement) -> Iterable[inkex.BaseElement]:
    while node is not None and not isinstance(node, inkex.SvgDocumentElement):
        yield node
        node = node.getparent()


def visible_regions(svg: inkex.SvgDocumentElement, img: inkex.Image, size: tuple[int, int]) -> list[Region]:
    """What the clips of ``img`` and of its ancestors leave visible, in its pixel frame: regions whose
    intersection it is ([] when nothing clips it). A clip shape outside the picture hides nothing of it and is
    left out (the engine would refuse it); a region left empty hides the whole image: ``AbortExtension``."""
    from_document, _ = to_pixels(svg, img, size)
    regions: list[Region] = []
    for node in _self_and_ancestors(img):
        clip = clip_of(svg, node)
        if clip is None:
            continue
        found = _clip_region(svg, clip, from_document @ node.composed_transform(), _box(svg, node, img, size), [])
        for region in found:
            inside = [shape for shape in region if shape.overlaps(size)]
            if not inside:
                whose = "its clip" if node is img else f"the clip of '{node.get_id()}'"
                raise inkex.AbortExtension(
                    f"Nothing of the image '{img.get_id()}' is visible inside {whose} ('{clip.get_id()}'); move the "
                    f"clip over the image, or turn off '{OPTION}', then try again."
                )
            regions.append(inside)
        if len(regions) > MAX_REGIONS:
            raise _too_nested(img)
    return regions


def _too_nested(img: inkex.Image) -> inkex.AbortExtension:
    return inkex.AbortExtension(
        f"The clips of the image '{img.get_id()}' are nested too deeply to send as a mask (more than {MAX_REGIONS} "
        f"regions); release some of them (Object ▸ Clip ▸ Release Clip) or turn off '{OPTION}'."
    )


def _box(
    svg: inkex.SvgDocumentElement, node: inkex.BaseElement, img: inkex.Image, size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """``node``'s bounding box in its own user space (x, y, width, height): objectBoundingBox clips' frame."""
    if node is img:
        return placement(svg, img, size).viewport  # an image's bounding box is its viewport
    box = None
    for child in node:
        if isinstance(child, inkex.ShapeElement):
            child_box = child.shape_box(inkex.Transform())
            box = child_box if box is None else (box if child_box is None else box + child_box)
    if box is None:
        return (0.0, 0.0, 0.0, 0.0)  # nothing inside: the units collapse, and the clip hides everything
    return (box.left, box.top, box.width, box.height)


def _clip_region(
    svg: inkex.SvgDocumentElement,
    clip: inkex.ClipPath,
    user: inkex.Transform,
    box: tuple[float, float, float, float],
    chain: list[str],
) -> list[Region]:
    """The regions ``clip`` leaves, for an element whose user space ``user`` maps to pixels, of bounding box
    ``box``: the union of the children's, intersected with the clipPath's own ``clip-path``."""
    if clip.get_id() in chain:
        raise inkex.AbortExtension(
            f"The clip '{clip.get_id()}' refers back to itself through clip-path, so what it shows is undefined; "
            "remove the loop in the XML Editor (Ctrl+Shift+X), then try again."
        )
    chain = [*chain, clip.get_id()]
    units = inkex.Transform()
    if (clip.get("clipPathUnits") or "userSpaceOnUse").strip() == "objectBoundingBox":
        x, y, w, h = box
        units = inkex.Transform(((w, 0.0, x), (0.0, h, y)))
    # The clipPath's transform is outermost, after the bounding box units (as browsers apply it).
    inner = user @ clip.transform @ units
    union: list[Region] | None = [[]]  # the empty region: a clipPath with nothing in it hides everything
    for child in clip:
        union = _union(union, _element_region(svg, child, inner, chain), clip)
    own = clip_of(svg, clip)
    return (union or []) + (_clip_region(svg, own, user, box, chain) if own is not None else [])


def _element_region(
    svg: inkex.SvgDocumentElement, element: inkex.BaseElement, outer: inkex.Transform, chain: list[str]
) -> list[Region] | None:
    """One clipPath child's regions (``outer``: its parent's coordinates to pixels); None when it draws nothing."""
    if (
        not isinstance(element, inkex.ShapeElement)
        or (element.get("display") or element.style.get("display")) == "none"
    ):
        return None
    matrix = outer @ element.transform
    if isinstance(element, SHAPE_TYPES):
        regions: list[Region] | None = [[pixel_shape(element, matrix, "clip-rule")]]
    elif isinstance(element, inkex.Use):  # a clone: its target, moved by x and y
        target = element.href
        if target is None or target.get_id() in chain:
            return None
        moved = matrix @ inkex.Transform(translate=(element.to_dimensionless(element.get("x") or "0"),
                                                    element.to_dimensionless(element.get("y") or "0")))  # fmt: skip
        regions = _element_region(svg, target, moved, [*chain, target.get_id()])
    elif isinstance(element, (inkex.Group, inkex.Anchor)):  # Inkscape's clips may hold groups
        regions = None
        for child in element:
            regions = _union(regions, _element_region(svg, child, matrix, chain), element)
    elif isinstance(element, (inkex.TextElement, inkex.FlowRoot)):
        raise inkex.AbortExtension(
            f"The clip holds the text '{element.get_id()}', whose letters cannot be read as a mask; convert it "
            f"(Path ▸ Object to Path) or turn off '{OPTION}', then try again."
        )
    else:
        return None
    own = clip_of(svg, element)
    if regions is not None and own is not None:
        box = element.shape_box(-element.transform) if isinstance(element, inkex.ShapeElement) else None
        frame = (box.left, box.top, box.width, box.height) if box is not None else (0.0, 0.0, 0.0, 0.0)
        regions = regions + _clip_region(svg, own, matrix, frame, chain)
    return regions


def _union(a: list[Region] | None, b: list[Region] | None, where: inkex.BaseElement) -> list[Region] | None:
    """The union of two intersections of regions, as one: (A1 ∩ A2) ∪ (B1 ∩ B2) = ∩ (Ai ∪ Bj)."""
    if a is None or b is None:
        return b if a is None else a
    if len(a) * len(b) > MAX_REGIONS:
        raise inkex.AbortExtension(
            f"The clip '{where.get_id()}' nests clips too deeply to send as a mask (more than {MAX_REGIONS} "
            f"regions); release some of them (Object ▸ Clip ▸ Release Clip) or turn off '{OPTION}'."
        )
    return [[*x, *y] for x in a for y in b]


def outside_sketches(selection: list[inkex.BaseElement]) -> list[inkex.BaseElement]:
    """The selected shapes that are not in a sketch this extension made (in a refine, those are its strokes)."""

    def in_sketch(node: inkex.BaseElement | None) -> bool:
        while node is not None:
            if is_sketch(node) or node.get("data-clipasso-settings") is not None:
                return True
            node = node.getparent()
        return False

    return [element for element in selection if leaves(element) and not in_sketch(element)]


def _n(value: float) -> str:
    """A coordinate with 4 decimals (a ten-thousandth of a pixel), no trailing zeros; non-finite as written."""
    if not math.isfinite(value):
        return repr(value)
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text

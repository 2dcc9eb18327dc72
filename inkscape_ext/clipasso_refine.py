"""Refine the selected sketch: read a group this extension inserted as the user left it, and write the refined
strokes back into it in place.

Reading: every path in the group (its level sub-groups and any group the user made inside) is strokes, one per
cubic segment (a drawn path's line segments become straight cubics; arcs and quadratics go through inkex's
``to_superpath``), mapped through every transform into the source image's pixel frame, which is where the engine
works; a deleted stroke is simply not there. An element locked in Inkscape (``sodipodi:insensitive``), or inside a
locked sub-group, is sent as ``locked``. A hidden element (``display:none``, ``visibility:hidden``, itself or a
sub-group) is a stroke like any other, refined and left hidden: hiding the upper level groups is how a ladder shows
a lower level, so leaving hidden strokes out would refine one level and leave the levels above it stale; to take a
stroke out of a refine, delete it or move it out of the group. Writing: each unlocked element gets its refined
strokes in its own user space (its id, style and other attributes kept); locked elements are not touched; added
strokes go last, in a new level group when the sketch is a ladder.

Widths: the engine optimises every stroke at the sketch's one width (its provenance), so a stroke the user made
thicker or thinner keeps its own width in the document but is seen by the optimisation at the sketch's width.

A ladder sketch (level sub-groups marked ``data-clipasso-strokes``) keeps its structure: every stroke stays in the
group it is in, and the levels are the strokes the level groups hold now, in document order (the engine's ladder
is a set of prefixes of that order). A level reaches up to where the next level group starts: a stroke drawn
straight into the sketch group joins the level before it, or the first level when it lies before every level
group. After the refine each level group is relabelled with the count it reaches, unless the user renamed it; a
level group left without strokes is no level: removed when it holds nothing, else kept without its level marks.
Standard library and inkex only.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, List

import inkex
from clipasso_pixelsize import UnknownSize, pixel_size
from clipasso_place import level_label, placement, stroke_d, stroke_style

#: The engine's limit on the strokes of one sketch (given plus added).
MAX_STROKES = 4096
#: Elements that hold strokes; anything else in the group (text, images, clones, shapes) is left alone.
STROKE_ELEMENTS = (inkex.PathElement, inkex.Line, inkex.Polyline, inkex.Polygon)
#: Attributes that describe a path's geometry other than ``d``: stale once ``d`` is rewritten (a path effect
#: would even recompute ``d`` from its ``original-d`` at the next edit and undo the refine).
STALE = ("sodipodi:nodetypes", "sodipodi:type", "inkscape:original-d", "inkscape:path-effect")
GEOMETRY = ("points", "x1", "y1", "x2", "y2")
REFINE = "Refine the selected sketch"
Point = List[float]


@dataclass
class Stroke:
    """One stroke as the user left it: the element holding it, its 4 points in image px, whether it is locked."""

    element: inkex.ShapeElement
    points: list[Point]
    locked: bool


@dataclass
class EditedSketch:
    """A sketch group as found in the document, ready to become a refine request."""

    group: inkex.Group
    image: inkex.Image
    image_size: tuple[int, int]
    pixels_to_doc: inkex.Transform  # image px -> document coordinates, as the image is placed now
    strokes: list[Stroke] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)  # stroke counts at the end of each level group ([]: none)
    blocks: list[tuple[inkex.BaseElement, int]] = field(default_factory=list)  # (child of the group, its strokes)

    @property
    def locked(self) -> list[int]:
        return [i for i, s in enumerate(self.strokes) if s.locked]


def parse_ladder(text: str) -> tuple[int, ...]:
    """The "Abstraction ladder" option as stroke counts (the engine checks their order and range), () if empty."""
    items = [t for t in re.split(r"[\s,;]+", text or "") if t]
    for item in items:
        if not re.fullmatch(r"\+?\d{1,9}", item):
            shown = text if len(text) <= 60 else text[:57] + "…"
            raise inkex.AbortExtension(
                f"The abstraction ladder '{shown}' is not a list of stroke counts; give whole numbers separated "
                "by commas, such as 4,8,16, or leave it empty for none."
            )
    return tuple(int(t) for t in items)


def find_group(selection: list[inkex.BaseElement]) -> inkex.Group:
    """The one sketch group the selection is, or lies in (a stroke or level group clicked inside it)."""
    if not selection:
        raise inkex.AbortExtension(
            f"No sketch is selected; click a sketch group that CLIPasso Sketch inserted, then choose {REFINE} again."
        )
    groups: list[inkex.BaseElement] = []
    for element in selection:
        node: inkex.BaseElement | None = element
        while node is not None and node.get("data-clipasso-settings") is None:
            node = node.getparent()
        if node is None:
            raise inkex.AbortExtension(
                f"The selected object '{element.get_id()}' is not a sketch made by CLIPasso Sketch; select a group "
                "it inserted, or choose Sketch the selected images to sketch an image."
            )
        if all(node is not g for g in groups):
            groups.append(node)
    if len(groups) > 1:
        raise inkex.AbortExtension(
            f"{len(groups)} sketches are selected; select one sketch group to refine, then try again."
        )
    return groups[0]


def read_sketch(svg: inkex.SvgDocumentElement, selection: list[inkex.BaseElement]) -> EditedSketch:
    """The selected sketch as the user left it, or one ``AbortExtension`` sentence (the document untouched)."""
    group = find_group(selection)
    name = group.get_id()
    image_id = group.get("data-clipasso-image") or ""
    size = (group.get("data-clipasso-image-size") or "").split()
    if not image_id or len(size) != 2 or not all(v.isdigit() and int(v) > 0 for v in size):
        raise inkex.AbortExtension(
            f"The sketch '{name}' does not say which image it was drawn from (an older CLIPasso Sketch made it); "
            "sketch the image anew to refine it."
        )
    image = svg.getElementById(image_id)
    if not isinstance(image, inkex.Image):
        raise inkex.AbortExtension(
            f"The image '{image_id}' that the sketch '{name}' was drawn from is no longer in the document; undo its "
            "deletion or paste it back, then refine again."
        )
    image_size = (int(size[0]), int(size[1]))
    pixels_to_doc = image.composed_transform() @ placement(svg, image, image_size).pixels_to_user
    if not _invertible(pixels_to_doc):
        raise inkex.AbortExtension(
            f"The image '{image_id}' is squashed flat by its transform, so the strokes cannot be mapped onto it; "
            "reset its transform (Object ▸ Transform), then try again."
        )
    sketch = EditedSketch(group, image, image_size, pixels_to_doc)
    to_pixels = -pixels_to_doc
    for child in group:
        before = len(sketch.strokes)
        for element in _stroke_elements(child):
            sketch.strokes += _strokes_of(element, to_pixels, _locked(element, group))
        sketch.blocks.append((child, len(sketch.strokes) - before))
    sketch.levels = sorted(set(end for _, end in level_ends(sketch.blocks) if end > 0))
    if not sketch.strokes:
        raise inkex.AbortExtension(
            f"The sketch '{name}' has no strokes left to refine; draw some into the group with the Pen or Pencil "
            "tool, or sketch the image anew."
        )
    return sketch


def level_ends(blocks: list[tuple[inkex.BaseElement, int]]) -> list[tuple[inkex.BaseElement, int]]:
    """Each level group among the sketch group's children (with their stroke counts) and the count its level
    reaches: up to where the next level group starts, the last one up to the last stroke."""
    starts: list[tuple[inkex.BaseElement, int]] = []
    total = 0
    for child, count in blocks:
        if child.get("data-clipasso-strokes") is not None:
            starts.append((child, total))
        total += count
    return [(child, end) for (child, _), end in zip(starts, [start for _, start in starts[1:]] + [total])]


def _stroke_elements(node: inkex.BaseElement) -> Any:
    """The stroke elements at or under ``node``, in document order."""
    if isinstance(node, STROKE_ELEMENTS):
        yield node
    elif isinstance(node, (inkex.Group, inkex.Anchor)):  # never inside defs, clip paths or masks
        for child in node:
            yield from _stroke_elements(child)


def _locked(element: inkex.BaseElement, group: inkex.Group) -> bool:
    """Locked in Inkscape: the element itself or a group around it up to the sketch group."""
    node: inkex.BaseElement | None = element
    while node is not None:
        if node.get("sodipodi:insensitive") == "true":
            return True
        if node is group:
            return False
        node = node.getparent()
    return False


def _strokes_of(element: inkex.ShapeElement, to_pixels: inkex.Transform, locked: bool) -> list[Stroke]:
    """Every cubic segment of the element's path as a stroke in image px (zero-length segments dropped)."""
    transform = to_pixels @ element.composed_transform()
    if not locked and not _invertible(element.composed_transform()):
        raise inkex.AbortExtension(
            f"The stroke '{element.get_id()}' is squashed flat by its transform; reset it (Object ▸ Transform) or "
            "delete the stroke, then try again."
        )
    strokes = []
    for subpath in element.path.to_absolute().to_superpath():
        for before, after in zip(subpath, subpath[1:]):
            p0, c1, c2, p3 = before[1], before[2], after[0], after[1]
            if _close(c1, p0) and _close(c2, p3):  # a line segment: a straight cubic, handles at its thirds
                c1 = [p0[0] + (p3[0] - p0[0]) / 3, p0[1] + (p3[1] - p0[1]) / 3]
                c2 = [p0[0] + 2 * (p3[0] - p0[0]) / 3, p0[1] + 2 * (p3[1] - p0[1]) / 3]
            if all(_close(q, p0) for q in (c1, c2, p3)):
                continue
            points = [[float(v) for v in transform.apply_to_point(q)] for q in (p0, c1, c2, p3)]
            if not all(math.isfinite(v) and abs(v) <= 1e7 for p in points for v in p):
                raise inkex.AbortExtension(
                    f"The stroke '{element.get_id()}' lies far outside the image (or has a coordinate that is not a "
                    "number); move it back over the image or delete it, then try again."
                )
            strokes.append(Stroke(element, points, locked))
    return strokes


def _close(a: Any, b: Any) -> bool:
    return abs(a[0] - b[0]) <= 1e-9 and abs(a[1] - b[1]) <= 1e-9


def _det(t: inkex.Transform) -> float:
    return float(t.a * t.d - t.b * t.c)


def _invertible(t: inkex.Transform) -> bool:
    det = _det(t)
    return math.isfinite(det) and abs(det) > 1e-12


def refine_request(sketch: EditedSketch, request: dict[str, Any], add: int) -> dict[str, Any]:
    """The engine request: the dialog's run settings (quality, iterations, seed, device), the sketch's own width,
    its strokes as they are now, the locked ones, and ``add`` new ones; a ladder sketch keeps its levels."""
    given = len(sketch.strokes)
    if not isinstance(add, int) or add < 0 or given + add > MAX_STROKES:
        raise inkex.AbortExtension(
            f"New strokes to add must be from 0 to {MAX_STROKES - given} for this sketch of {given} strokes, got "
            f"{add}; change it, then try again."
        )
    if len(sketch.locked) == given and add == 0:
        raise inkex.AbortExtension(
            "Every stroke of the sketch is locked and none is added, so there is nothing to refine; unlock a stroke "
            "(Object ▸ Unlock All) or add new strokes."
        )
    _check_same_picture(sketch, request.get("image"))
    settings = dict(request["settings"], strokes=given + add, seeds=1)
    settings.pop("ladder", None)
    settings.pop("width_fraction", None)
    try:
        provenance = json.loads(sketch.group.get("data-clipasso-settings") or "{}")
    except ValueError:
        provenance = {}
    provenance = provenance if isinstance(provenance, dict) else {}
    for key in ("width", "width_fraction"):  # the width the sketch was drawn with, not the dialog's
        if isinstance(provenance.get(key), (int, float)) and not isinstance(provenance.get(key), bool):
            settings[key] = provenance[key]
            break
    else:
        settings["width_fraction"] = request["settings"].get("width_fraction")
    levels = [*sketch.levels, given + add] if add else list(sketch.levels)
    if len(set(levels)) > 1:
        settings["ladder"] = sorted(set(levels))
    return dict(
        request,
        settings=settings,
        init_strokes=[s.points for s in sketch.strokes],
        locked=sketch.locked,
        add=add,
    )


def _check_same_picture(sketch: EditedSketch, file: object) -> None:
    """The strokes are in the pixels of the picture the sketch was drawn on: a picture of another size (the image
    relinked or replaced) would put them elsewhere on it. A header that cannot be read is left to the engine."""
    if not isinstance(file, str):
        return
    try:
        size = pixel_size(file)
    except UnknownSize:
        return
    if size != sketch.image_size:
        (w, h), (w0, h0) = size, sketch.image_size
        raise inkex.AbortExtension(
            f"The image '{sketch.image.get_id()}' is now {w}×{h} pixels, not the {w0}×{h0} the sketch "
            f"'{sketch.group.get_id()}' was drawn on, so it was replaced; put the original back, or sketch the new "
            "image anew."
        )


def write_back(svg: inkex.SvgDocumentElement, sketch: EditedSketch, result: dict[str, Any], color: inkex.Color) -> None:
    """Put the refined strokes into the sketch's own elements, keep the locked ones as they are, append the added."""
    strokes = result.get("strokes")
    given = len(sketch.strokes)
    if not isinstance(strokes, list) or len(strokes) < given:
        raise ValueError(f"the engine returned {len(strokes or [])} strokes for the {given} given")
    by_element: dict[int, tuple[inkex.ShapeElement, list[Any]]] = {}
    for stroke, new in zip(sketch.strokes, strokes):
        if not stroke.locked:
            by_element.setdefault(id(stroke.element), (stroke.element, []))[1].append(new)
    for element, news in by_element.values():
        _rewrite(svg, element, news, sketch.pixels_to_doc)
    added = strokes[given:]
    group_id = sketch.group.get_id()
    if added:
        holder: inkex.Group = sketch.group
        if sketch.levels:
            holder = inkex.Group()
            holder.set("id", _free_id(svg, f"{group_id}-level-{len(strokes)}"))
            holder.set("inkscape:label", level_label(len(strokes), len(added), first=False))
            holder.set("data-clipasso-strokes", str(len(strokes)))
            sketch.group.append(holder)
        to_local = -holder.composed_transform() @ sketch.pixels_to_doc
        # The engine's width (image px) in the holder's units, wherever the user moved or scaled the group.
        place = replace(placement(svg, sketch.image, sketch.image_size), scale=abs(_det(to_local)) ** 0.5)
        style = stroke_style(color, place, float(result.get("width") or 1.0))
        # Numbered after the sketch's highest stroke id, so a deleted stroke's id is never reused.
        taken = [re.fullmatch(rf"{re.escape(group_id)}-stroke-(\d+)", e.get("id") or "") for e in sketch.group.iter()]
        number = max([int(m.group(1)) + 1 for m in taken if m], default=0)
        for new in added:
            while svg.getElementById(f"{group_id}-stroke-{number}") is not None:
                number += 1
            path = inkex.PathElement()
            path.set("id", f"{group_id}-stroke-{number}")
            path.set("d", stroke_d(to_local, new))
            path.set("style", style)
            holder.append(path)
        sketch.blocks.append((holder, len(added)))
    _relabel_levels(sketch, result)
    refine = result.get("refine")
    refine = refine if isinstance(refine, dict) else {}
    facts = {k: refine.get(k) for k in ("given", "locked", "added", "start_loss") if k in refine}
    facts.update(loss=result.get("loss"), iterations=result.get("iterations_run"), seed=result.get("seed"))
    sketch.group.set("data-clipasso-refined", json.dumps(facts, sort_keys=True))


def _rewrite(svg: inkex.SvgDocumentElement, element: inkex.ShapeElement, news: list[Any], pixels_to_doc: Any) -> None:
    """The element's refined strokes in its own user space: itself for the first, copies after it for the rest."""
    to_local = -element.composed_transform() @ pixels_to_doc
    if not isinstance(element, inkex.PathElement):  # a line or polyline becomes a path of the same attributes
        path = inkex.PathElement()
        for key, value in element.attrib.items():
            if key not in GEOMETRY:
                path.attrib[key] = value
        element.getparent().replace(element, path)
        element = path
    for key in STALE:
        element.attrib.pop(inkex.addNS(key.split(":")[1], key.split(":")[0]), None)
    element.set("d", stroke_d(to_local, news[0]))
    for k, new in enumerate(news[1:], start=1):  # a drawn path's further segments: one path each, same style
        copy = inkex.PathElement()
        for key, value in element.attrib.items():
            copy.attrib[key] = value
        copy.set("id", _free_id(svg, f"{element.get_id()}-{k}"))
        copy.set("d", stroke_d(to_local, new))
        element.addnext(copy)
        element = copy


def _relabel_levels(sketch: EditedSketch, result: dict[str, Any]) -> None:
    """Level groups count the strokes they reach now (a name the user changed is kept); an emptied one is no level."""
    ladder = result.get("ladder")
    losses = (
        {v.get("strokes"): v.get("loss") for v in ladder if isinstance(v, dict)} if isinstance(ladder, list) else {}
    )
    previous = 0
    for child, total in level_ends(sketch.blocks):
        ours = re.fullmatch(r"\d+ strokes( \(\+\d+\))?", child.get("inkscape:label") or "") is not None
        if total == previous:  # every stroke of this level deleted
            if len(child) == 0:
                child.delete()
            else:  # it holds something else (a note): an ordinary group now
                for key in ("data-clipasso-strokes", "data-clipasso-loss", *(["inkscape:label"] if ours else [])):
                    child.set(key, None)
            continue
        if ours:
            child.set("inkscape:label", level_label(total, total - previous, first=previous == 0))
        child.set("data-clipasso-strokes", str(total))
        loss = losses.get(total)
        if isinstance(loss, (int, float)) and not isinstance(loss, bool):
            child.set("data-clipasso-loss", f"{float(loss):.6g}")
        else:
            child.attrib.pop("data-clipasso-loss", None)
        previous = total


def _free_id(svg: inkex.SvgDocumentElement, base: str) -> str:
    """``base``, else ``base-2``, ``base-3``…, the first not in the document (deterministic ids)."""
    candidate, suffix = base, 1
    while svg.getElementById(candidate) is not None:
        suffix += 1
        candidate = f"{base}-{suffix}"
    return candidate

"""Where the engine's strokes go in the document: exactly over the image they were drawn from.

``placement()`` maps the engine's pixel frame into the image element's user space (SVG's image rules); the rest
builds the result: a group or layer right after the image (layer arithmetic for the layer case), a clip path for
``slice``, ids that cannot collide, the stroke style, and the provenance the engine reported.
Standard library and inkex only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import inkex
from inkex.units import convert_unit, parse_unit


@dataclass(frozen=True)
class Placement:
    """How the engine's pixel frame maps into the image element's user space (before its own transform)."""

    #: pixel coordinates ([0, W] x [0, H]) -> the image element's user space
    pixels_to_user: inkex.Transform
    #: the image's viewport (x, y, width, height) in its user space
    viewport: tuple[float, float, float, float]
    #: True when ``slice`` lets the picture overflow its viewport, so the strokes need clipping to it
    clipped: bool
    #: user units per pixel, for stroke widths (geometric mean of the two scales for ``none``)
    scale: float


def placement(svg: inkex.SvgDocumentElement, img: inkex.BaseElement, image_size: tuple[int, int]) -> Placement:
    """Where the picture of ``image_size`` = (W, H) pixels is drawn, following SVG's image rules.

    ``x``/``y`` default to 0; a missing ``width``/``height`` is the intrinsic size (one user unit per pixel,
    keeping the aspect ratio when only one is given); ``preserveAspectRatio`` defaults to ``xMidYMid meet``.
    """
    pw, ph = float(image_size[0]), float(image_size[1])
    vb = svg.get_viewbox() if hasattr(svg, "get_viewbox") else None
    ref_w, ref_h = (vb[2], vb[3]) if vb and vb[2] and vb[3] else (pw, ph)
    x = _length(img.get("x"), ref_w) or 0.0
    y = _length(img.get("y"), ref_h) or 0.0
    w = _length(img.get("width"), ref_w)
    h = _length(img.get("height"), ref_h)
    if w is None and h is None:
        w, h = pw, ph
    elif w is None:
        w = h * pw / ph  # type: ignore[operator]
    elif h is None:
        h = w * ph / pw
    assert w is not None and h is not None
    tokens = (img.get("preserveAspectRatio") or "xMidYMid meet").split()
    if tokens and tokens[0] == "defer":
        tokens = tokens[1:]
    align = tokens[0] if tokens else "xMidYMid"
    slice_ = len(tokens) > 1 and tokens[1] == "slice"
    if align == "none":
        sx, sy = w / pw, h / ph
        return Placement(_scale_then_move(sx, sy, x, y), (x, y, w, h), False, (abs(sx * sy)) ** 0.5)
    fractions = {"Min": 0.0, "Mid": 0.5, "Max": 1.0}
    try:
        ax, ay = fractions[align[1:4]], fractions[align[5:8]]
    except KeyError:
        ax = ay = 0.5  # an invalid value falls back to the default alignment, as renderers do
    s = max(w / pw, h / ph) if slice_ else min(w / pw, h / ph)
    tx, ty = x + (w - pw * s) * ax, y + (h - ph * s) * ay
    overflow = slice_ and (pw * s > w + 1e-9 or ph * s > h + 1e-9)
    return Placement(_scale_then_move(s, s, tx, ty), (x, y, w, h), overflow, s)


def _scale_then_move(sx: float, sy: float, tx: float, ty: float) -> inkex.Transform:
    """The affine map p -> (sx·px + tx, sy·py + ty)."""
    return inkex.Transform(((sx, 0.0, tx), (0.0, sy, ty)))


def _length(value: str | None, reference: float) -> float | None:
    """A presentation length in user units (absolute units in CSS pixels, percentages of the viewBox), or None
    where it is missing or unreadable."""
    if value is None or not value.strip() or value.strip() == "auto":
        return None
    number, unit = parse_unit(value.strip()) or (None, None)
    if number is None:
        return None
    if unit == "%":
        return number * reference / 100.0
    return float(convert_unit(value.strip(), "px"))


def insert_sketch(
    svg: inkex.SvgDocumentElement,
    img: inkex.Image,
    result: dict[str, Any],
    *,
    color: inkex.Color,
    target: str = "group",
    keep_image: bool = True,
) -> inkex.Group:
    """Put a group (``target="layer"``: a layer) of the result's strokes right after ``img``, lying over it."""
    width_px, height_px = (int(v) for v in result["image_size"])
    place = placement(svg, img, (width_px, height_px))
    group = inkex.Group()
    levels = ladder_levels(result)
    group_id = unique_id(svg, f"clipasso-{img.get_id()}", len(result["strokes"]), levels)
    group.set("id", group_id)
    group.set("inkscape:label", f"CLIPasso sketch of {img.get_id()} ({len(result['strokes'])} strokes)")
    stamp(group, result)
    # What "Refine the selected sketch" needs to find the picture again and map the strokes back to its pixels.
    group.set("data-clipasso-image", img.get_id())
    group.set("data-clipasso-image-size", f"{width_px} {height_px}")
    if target == "layer":
        group.set("inkscape:groupmode", "layer")
        parent, index = layer_slot(svg, img)
        parent.insert(index, group)
        inner = -parent.composed_transform() @ img.getparent().composed_transform() @ img.transform
        group.set("transform", str(inner))
    else:
        parent = img.getparent()
        parent.insert(parent.index(img) + 1, group)
        if img.get("transform"):
            group.set("transform", img.get("transform"))
    if place.clipped:
        group.set("clip-path", f"url(#{clip(svg, group_id, place)})")
    style = stroke_style(color, place, float(result["width"]))
    holders = level_groups(group, levels, result) if levels else [group]
    for k, stroke in enumerate(result["strokes"]):
        path = inkex.PathElement()
        path.set("id", f"{group_id}-stroke-{k}")
        path.set("d", stroke_d(place.pixels_to_user, stroke))
        path.set("style", style)
        holders[sum(1 for top in levels[:-1] if k >= top)].append(path)  # the level that adds stroke k
    if not keep_image:
        image_style = inkex.Style(img.get("style", ""))
        image_style["display"] = "none"
        img.set("style", str(image_style))
    return group


def stroke_d(pixels_to_user: inkex.Transform, stroke: Any) -> str:
    """Path data of one engine stroke (4 points, image px) in the user space ``pixels_to_user`` maps into."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = (pixels_to_user.apply_to_point(p) for p in stroke)
    return f"M {_n(x0)},{_n(y0)} C {_n(x1)},{_n(y1)} {_n(x2)},{_n(y2)} {_n(x3)},{_n(y3)}"


def ladder_levels(result: dict[str, Any]) -> list[int]:
    """The result's abstraction ladder as increasing stroke counts ending at the stroke count, or [] for none.

    After "Stop and use current" or from an unexpected reply, levels past the strokes are dropped and the count
    closes the ladder; anything unreadable is no ladder (the strokes still go in, ungrouped)."""
    count = len(result["strokes"])
    ladder = result.get("ladder")
    if not isinstance(ladder, list):
        return []
    levels: list[int] = []
    for level in ladder:
        k = level.get("strokes") if isinstance(level, dict) else None
        if not isinstance(k, int) or isinstance(k, bool) or k < 1 or (levels and k <= levels[-1]):
            return []
        if k < count:
            levels.append(k)
    return [*levels, count] if levels else []


def level_groups(group: inkex.Group, levels: list[int], result: dict[str, Any]) -> list[inkex.Group]:
    """One sub-group per ladder level in ``group``, lowest first, each to hold only the strokes it adds: hiding
    the upper ones in Inkscape's Layers and Objects dialog shows a lower level."""
    losses = {level.get("strokes"): level.get("loss") for level in result.get("ladder", []) if isinstance(level, dict)}
    holders = []
    for j, k in enumerate(levels):
        sub = inkex.Group()
        sub.set("id", f"{group.get('id')}-level-{k}")
        sub.set("inkscape:label", level_label(k, k - levels[j - 1] if j else k, first=j == 0))
        sub.set("data-clipasso-strokes", str(k))
        loss = losses.get(k)
        if isinstance(loss, (int, float)) and not isinstance(loss, bool):
            sub.set("data-clipasso-loss", f"{float(loss):.6g}")
        group.append(sub)
        holders.append(sub)
    return holders


def level_label(strokes: int, added: int, *, first: bool) -> str:
    """A level group's name, as the engine's SVG names it: "4 strokes", then "8 strokes (+4)"."""
    return f"{strokes} strokes" if first else f"{strokes} strokes (+{added})"


def stroke_style(color: inkex.Color, place: Placement, width_px: float) -> str:
    """The strokes' style; the width is the one the engine optimised (image px), in the group's units."""
    return str(
        inkex.Style(
            {
                "fill": "none",
                "stroke": str(color.to_rgb()),
                "stroke-opacity": _n(float(color.alpha)),
                "stroke-width": _n(width_px * place.scale),
                "stroke-linecap": "round",
                "stroke-linejoin": "round",
            }
        )
    )


def stamp(group: inkex.Group, result: dict[str, Any]) -> None:
    """Provenance on the group: engine version, what reproduces the strokes (base seed, seed count, winning run),
    precision and the complete settings."""
    group.set("data-clipasso-version", str(result.get("engine_version", "")))
    group.set("data-clipasso-seed", str(result.get("seed", "")))
    for key in ("seeds", "winning_run", "precision"):
        if key in result:
            group.set("data-clipasso-" + key.replace("_", "-"), str(result[key]))
    group.set("data-clipasso-device", str(result.get("device", "")))
    group.set("data-clipasso-iterations", str(result.get("iterations_run", "")))
    if result.get("stopped_early"):
        group.set("data-clipasso-stopped-early", "true")
    group.set("data-clipasso-settings", json.dumps(result.get("settings", {}), sort_keys=True))


def unique_id(svg: inkex.SvgDocumentElement, base: str, strokes: int, levels: Sequence[int] = ()) -> str:
    """``base``, or ``base-2``, ``base-3``… : the first one free for the group, its strokes and level groups.

    Deterministic, unlike ``svg.get_unique_id()``, which differs between inkex versions."""
    suffix = 1
    while True:
        candidate = base if suffix == 1 else f"{base}-{suffix}"
        ids = [candidate, *(f"{candidate}-stroke-{k}" for k in range(strokes))]
        ids += [f"{candidate}-level-{k}" for k in levels]
        if all(svg.getElementById(i) is None for i in ids):
            return candidate
        suffix += 1


def layer_slot(svg: inkex.SvgDocumentElement, img: inkex.BaseElement) -> tuple[inkex.BaseElement, int]:
    """Where a new layer goes: just above the layer holding the image (or on top, outside any layer)."""
    node = img
    layer = None
    while node.getparent() is not None:
        node = node.getparent()
        if node.get("inkscape:groupmode") == "layer" and layer is None:
            layer = node
    if layer is None:
        return svg, len(svg)
    parent = layer.getparent()
    return parent, parent.index(layer) + 1


def clip(svg: inkex.SvgDocumentElement, group_id: str, place: Placement) -> str:
    """A clipPath of the image's viewport (for ``slice``), in the group's user space; returns its id."""
    clip_path = inkex.ClipPath()
    clip_id = unique_id(svg, f"{group_id}-clip", 0)
    clip_path.set("id", clip_id)
    clip_path.set("clipPathUnits", "userSpaceOnUse")
    x, y, w, h = place.viewport
    rect = inkex.Rectangle()
    rect.set("id", f"{clip_id}-rect")
    for key, value in (("x", x), ("y", y), ("width", w), ("height", h)):
        rect.set(key, _n(value))
    clip_path.append(rect)
    svg.defs.append(clip_path)
    return clip_id


def _n(value: float) -> str:
    """A number with at most 3 decimals and no trailing zeros (stable, readable output)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text

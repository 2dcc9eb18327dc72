"""Writes the documents of the shape-mask tests (``svg/shapes_*.svg``) and what each must send, derived by hand.

Each document holds the 64×48 test photo and shapes whose document coordinates are computed here from chosen
pixel-frame geometry by the forward map written out with plain trigonometry (not inkex), so the extension's
inverse map is checked against an independent derivation. ``expected/shapes_*.json`` records that geometry:
polygons (pixel vertices), circles and ellipses (pixel centre and radii), or path data in pixels.

``python tests/extension/data/make_shapes.py`` (needs Pillow, through ``make_data``).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from pathlib import Path

from make_data import encoded, svg

HERE = Path(__file__).parent
PNG = "data:image/png;base64," + base64.b64encode(encoded("PNG")).decode()
Point = tuple[float, float]
Map = Callable[[Point], Point]


def affine(a: float, b: float, c: float, d: float, e: float, f: float) -> Map:
    """The SVG matrix(a b c d e f) as a function."""
    return lambda p: (a * p[0] + c * p[1] + e, b * p[0] + d * p[1] + f)


def rotate(deg: float) -> Map:
    r = math.radians(deg)
    return affine(math.cos(r), math.sin(r), -math.sin(r), math.cos(r), 0, 0)


def then(*maps: Map) -> Map:
    """maps[0] applied first."""

    def run(p: Point) -> Point:
        for m in maps:
            p = m(p)
        return p

    return run


def inverse(m: Map) -> Map:
    (e, f), (a1, b1), (c1, d1) = m((0, 0)), m((1, 0)), m((0, 1))
    a, b, c, d = a1 - e, b1 - f, c1 - e, d1 - f
    det = a * d - b * c
    return lambda p: ((d * (p[0] - e) - c * (p[1] - f)) / det, (-b * (p[0] - e) + a * (p[1] - f)) / det)


def points(m: Map, pts: list[Point]) -> str:
    return " ".join(f"{x:.6f},{y:.6f}" for x, y in map(m, pts))


LAYER = '<g id="{id}" inkscape:groupmode="layer" inkscape:label="{id}"{t}>{body}</g>'
SQUARE = [(16.0, 8.0), (48.0, 8.0), (48.0, 40.0), (16.0, 40.0)]


def docs() -> dict[str, tuple[str, dict]]:
    out: dict[str, tuple[str, dict]] = {}

    # Rotated and scaled image in a translated layer; the polygon lies outside every layer.
    image_map = then(lambda p: (10 + p[0], p[1]), affine(1.5, 0, 0, 1.5, 0, 0), rotate(30), affine(1, 0, 0, 1, 50, 20))
    body = LAYER.format(
        id="layer1",
        t=' transform="translate(50,20)"',
        body=f'<image id="photo" x="10" y="0" width="64" height="48" transform="rotate(30) scale(1.5)" href="{PNG}"/>',
    )
    out["shapes_rotated"] = (
        body + f'<polygon id="outline" points="{points(image_map, SQUARE)}"/>',
        {"outline": {"polygon": SQUARE, "fill_rule": "nonzero"}},
    )

    # Image at 2 units a pixel; the curved path in a layer scaled by one half, with evenodd from its layer.
    to_doc = then(lambda p: (10 + 2 * p[0], 20 + 2 * p[1]))
    in_layer = then(to_doc, lambda p: (2 * p[0], 2 * p[1]))
    pts = [(8.0, 8.0), (30.0, 0.0), (50.0, 20.0), (56.0, 40.0), (8.0, 40.0)]
    q = [f"{x:.6f},{y:.6f}" for x, y in map(in_layer, pts)]
    d = f"M {q[0]} C {q[1]} {q[2]} {q[3]} L {q[4]} Z"
    out["shapes_scaled_layer"] = (
        LAYER.format(id="layer1", t="", body=f'<image id="photo" x="10" y="20" width="128" height="96" href="{PNG}"/>')
        + LAYER.format(
            id="layer2", t=' transform="scale(0.5)" style="fill-rule:evenodd"', body=f'<path id="curve" d="{d}"/>'
        ),
        {"curve": {"d": "M 8,8 C 30,0 50,20 56,40 L 8,40 Z", "fill_rule": "evenodd"}},
    )

    # viewBox in mm, the image at x="1cm" (37.795 user units); rects in user units and in cm.
    cm = 96 / 2.54
    out["shapes_viewbox"] = (
        svg(
            LAYER.format(
                id="layer1",
                t="",
                body=f'<image id="photo" x="1cm" y="5" width="64" height="48" xlink:href="{PNG}"/>'
                '<rect id="box" x="40" y="10" width="20" height="30"/>'
                '<rect id="boxcm" x="1.2cm" y="20" width="10" height="10" style="fill-rule:evenodd"/>',
            ),
            'width="100mm" height="80mm" viewBox="0 0 100 80"',
        ),
        {
            "box": {"polygon": [(40 - cm, 5), (60 - cm, 5), (60 - cm, 35), (40 - cm, 35)], "fill_rule": "nonzero"},
            "boxcm": {
                "polygon": [(0.2 * cm, 15), (0.2 * cm + 10, 15), (0.2 * cm + 10, 25), (0.2 * cm, 25)],
                "fill_rule": "evenodd",
            },
        },
    )

    # A circle in another, rotated layer; the image in a translated layer (2 units a pixel).
    layer2 = then(rotate(-20), affine(1, 0, 0, 1, 20, 10))
    cx, cy = inverse(layer2)((5 + 2 * 32, 5 + 2 * 24))  # the pixel (32, 24), in layer 2's coordinates
    out["shapes_circle_layer"] = (
        LAYER.format(
            id="layer1",
            t=' transform="translate(5,5)"',
            body=f'<image id="photo" width="128" height="96" xlink:href="{PNG}"/>',
        )
        + LAYER.format(
            id="layer2",
            t=' transform="translate(20,10) rotate(-20)"',
            body=f'<circle id="disc" cx="{cx:.6f}" cy="{cy:.6f}" r="30"/>',
        ),
        {"disc": {"ellipse": [32, 24, 15, 15], "fill_rule": "nonzero"}},
    )

    # Clipped images: userSpaceOnUse (a circle), and objectBoundingBox (an ellipse) under a clipPath transform.
    out["shapes_clip"] = (
        "<defs>"
        '<clipPath id="clipU" clipPathUnits="userSpaceOnUse">'
        '<circle id="clipcircle" cx="74" cy="68" r="40"/></clipPath>'
        '<clipPath id="clipB" clipPathUnits="objectBoundingBox" transform="translate(6,0)">'
        '<ellipse id="clipellipse" cx="0.5" cy="0.5" rx="0.25" ry="0.5" style="clip-rule:evenodd"/></clipPath>'
        "</defs>"
        + LAYER.format(
            id="layer1",
            t="",
            body=f'<image id="photo" x="10" y="20" width="128" height="96" clip-path="url(#clipU)" href="{PNG}"/>'
            f'<image id="photo2" x="150" y="20" width="64" height="48" clip-path="url(#clipB)" href="{PNG}"/>'
            '<rect id="inside" x="30" y="40" width="40" height="40"/>',
        ),
        {
            "clipcircle": {"ellipse": [32, 24, 20, 20], "fill_rule": "nonzero"},
            "clipellipse": {"ellipse": [38, 24, 16, 24], "fill_rule": "evenodd"},
            "inside": {"polygon": [(10, 10), (30, 10), (30, 30), (10, 30)], "fill_rule": "nonzero"},
        },
    )

    # Two images; a group (evenodd) of a ring and a triangle; shapes over one, the other, both, none; bad inputs.
    ring = "M 20,30 H 60 V 70 H 20 Z M 30,40 H 50 V 60 H 30 Z"
    out["shapes_two"] = (
        LAYER.format(
            id="layer1",
            t="",
            body=f'<image id="photo" x="10" y="20" width="128" height="96" href="{PNG}"/>'
            f'<image id="photo2" x="150" y="20" width="64" height="48" href="{PNG}"/>'
            f'<g id="group" style="fill-rule:evenodd"><path id="ring" d="{ring}"/>'
            '<polygon id="tri" points="160,30 200,30 180,60"/><text id="label" x="0" y="0">a</text></g>'
            '<rect id="both" x="100" y="40" width="80" height="20"/>'
            '<rect id="nowhere" x="0" y="150" width="20" height="20"/>'
            '<path id="open" d="M 20,30 L 60,30 L 40,60"/>'
            '<rect id="everything" x="0" y="0" width="300" height="200"/>'
            '<text id="words" x="20" y="40">not a shape</text>',
        ),
        {
            "ring": {"d": "M 5,5 H 25 V 25 H 5 Z M 10,10 H 20 V 20 H 10 Z", "fill_rule": "evenodd"},
            "tri": {"polygon": [(10, 10), (50, 10), (30, 40)], "fill_rule": "evenodd"},
            "both@photo": {"polygon": [(45, 10), (85, 10), (85, 20), (45, 20)], "fill_rule": "nonzero"},
            "both@photo2": {"polygon": [(-50, 20), (30, 20), (30, 40), (-50, 40)], "fill_rule": "nonzero"},
            "open": {"d": "M 5,5 L 25,5 L 15,20", "fill_rule": "nonzero"},
        },
    )
    return out


def main() -> None:
    (HERE / "expected").mkdir(exist_ok=True)
    for name, (body, expected) in docs().items():
        text = body if body.startswith("<?xml") else svg(body)
        (HERE / "svg" / f"{name}.svg").write_text(text, encoding="utf-8")
        (HERE / "expected" / f"{name}.json").write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

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

    # Clips on the image, on its group and on its layer, and nested clips (the visible region is their
    # intersection). The image: x=5, y=5, 1 unit a pixel, in a group rotate(20) scale(1.5), in a translated layer.
    img_user = then(lambda p: (p[0] + 5, p[1] + 5))  # pixels -> the image's (and the group's) user space
    layer_user = then(img_user, affine(1.5, 0, 0, 1.5, 0, 0), rotate(20))  # -> the layer's user space
    # clipI (userSpaceOnUse, transform translate(2,3)) holds a circle (transform translate(1,1)) clipped by the
    # rect clipC in the circle's user space, and a rect B (clip-rule evenodd); clipI is clipped by clipJ.
    child = then(img_user, lambda p: (p[0] - 2, p[1] - 3))  # -> clipI's children's coordinates
    in_circle = then(child, lambda p: (p[0] - 1, p[1] - 1))  # -> the circle's own (and its clip's) coordinates
    circle_c = in_circle((30, 24))  # the circle: pixel centre (30, 24), radius 18
    c_rect = (*in_circle((20, 10)), 40, 30)  # clipC: pixel x 20..60, y 10..40
    b_rect = (*child((2, 30)), 12, 16)  # B: pixel x 2..14, y 30..46
    j_poly = [(1.0, 1.0), (63.0, 1.0), (63.0, 36.0), (1.0, 47.0)]
    diamond = [(32.0, 0.0), (62.0, 24.0), (32.0, 48.0), (2.0, 24.0)]
    out["shapes_clip_nested"] = (
        "<defs>"
        '<clipPath id="clipI" transform="translate(2,3)" clip-path="url(#clipJ)">'
        f'<circle id="ccircle" transform="translate(1,1)" cx="{circle_c[0]}" cy="{circle_c[1]}" r="18" '
        'clip-path="url(#clipC)"/>'
        f'<rect id="brect" x="{b_rect[0]}" y="{b_rect[1]}" width="{b_rect[2]}" height="{b_rect[3]}" '
        'style="clip-rule:evenodd"/></clipPath>'
        f'<clipPath id="clipC"><rect id="crect" x="{c_rect[0]}" y="{c_rect[1]}" width="{c_rect[2]}" '
        f'height="{c_rect[3]}"/></clipPath>'
        f'<clipPath id="clipJ"><polygon id="jpoly" points="{points(img_user, j_poly)}"/></clipPath>'
        '<clipPath id="clipG" clipPathUnits="objectBoundingBox">'
        '<ellipse id="gellipse" cx="0.5" cy="0.5" rx="0.45" ry="0.4"/></clipPath>'
        f'<clipPath id="clipL"><g id="lgroup"><polygon id="ldiamond" points="{points(layer_user, diamond)}"/>'
        '<text id="hiddentext" x="0" y="0" style="display:none">hidden</text></g></clipPath>'
        "</defs>"
        + LAYER.format(
            id="layer1",
            t=' transform="translate(30,10)" style="clip-path:url(#clipL)"',
            body='<g id="group" transform="rotate(20) scale(1.5)" clip-path="url(#clipG)">'
            f'<image id="photo" x="5" y="5" width="64" height="48" clip-path="url(#clipI)" href="{PNG}"/></g>',
        ),
        {
            "ccircle": {"ellipse": [30, 24, 18, 18], "fill_rule": "nonzero"},
            "crect": {"polygon": [(20, 10), (60, 10), (60, 40), (20, 40)], "fill_rule": "nonzero"},
            "brect": {"polygon": [(2, 30), (14, 30), (14, 46), (2, 46)], "fill_rule": "evenodd"},
            "jpoly": {"polygon": j_poly, "fill_rule": "nonzero"},
            "gellipse": {"ellipse": [32, 24, 28.8, 19.2], "fill_rule": "nonzero"},
            "ldiamond": {"polygon": diamond, "fill_rule": "nonzero"},
        },
    )

    # More clips, one image each (64×48 at 1 unit a pixel, x = 10 + 80k): a clone in a clip, clips that hide the
    # whole image (far away, empty, only a hidden child), a loop, text, a broken reference; and bad shapes.
    images = ["use", "far", "empty", "hidden", "loop", "text", "broken"]
    clips = {
        "use": '<use id="usedisc" href="#disc0" x="4" y="2"/>',
        "far": '<circle id="farcircle" cx="900" cy="900" r="10"/>',
        "empty": "",
        "hidden": '<rect id="hiddenrect" x="250" y="20" width="40" height="40" style="display:none"/>',
        "loop": '<rect id="looprect" x="330" y="20" width="40" height="40"/>',
        "text": '<text id="cliptext" x="410" y="40">A</text>',
    }
    defs = "".join(
        f'<clipPath id="clip-{name}"' + (' clip-path="url(#clip-loop2)"' if name == "loop" else "") + f">{body}"
        "</clipPath>"
        for name, body in clips.items()
    )
    defs += '<clipPath id="clip-loop2" clip-path="url(#clip-loop)"><rect id="loop2" width="999" height="999"/>'
    defs += '</clipPath><circle id="disc0" cx="38" cy="42" r="12"/>'
    body = "".join(
        f'<image id="photo-{name}" x="{10 + 80 * k}" y="20" width="64" height="48" '
        f'clip-path="url(#clip-{"missing" if name == "broken" else name})" href="{PNG}"/>'
        for k, name in enumerate(images)
    )
    out["shapes_clip_more"] = (
        f"<defs>{defs}</defs>"
        + LAYER.format(id="layer1", t="", body=body + '<rect id="inphoto" x="20" y="30" width="10" height="10"/>')
        + LAYER.format(
            id="flatlayer", t=' transform="translate(20,30) scale(0)"', body='<rect id="flat" width="20" height="20"/>'
        )
        + LAYER.format(
            id="badlayer",
            t="",
            body='<path id="badd" d="M 20 30 L 60 30 L oops Z"/><path id="short" d="M 20 30 L 60 30 L 40 Z"/>'
            '<path id="huge" d="M 20 30 L 1e400 30 L 40 60 Z"/><path id="far" d="M 20 30 L 1e9 30 L 40 60 Z"/>'
            '<path id="arcflags" d="M 20 30 a 10 10 0 0110 10 Z"/>',
        ),
        # The clone: the disc (38, 42) r 12 moved by (4, 2), in the image's user space (x = 10, y = 20).
        {"usedisc": {"ellipse": [38 + 4 - 10, 42 + 2 - 20, 12, 12], "fill_rule": "nonzero"}},
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
    out["shapes_refine"] = refine_doc()
    return out


def refine_doc() -> tuple[str, dict]:
    """``svg/edited.svg`` (the edited sketch of issue 14; the image at (10, 20), 2 units a pixel) with the image
    clipped by a circle and a polygon in another, rotated and translated layer, to select with the sketch."""
    text = (HERE / "svg" / "edited.svg").read_text(encoding="utf-8")
    to_doc = then(lambda p: (10 + 2 * p[0], 20 + 2 * p[1]))
    layer = then(rotate(-30), affine(1, 0, 0, 1, 40, 30))
    quad = [(10.0, 10.0), (40.0, 8.0), (50.0, 40.0), (12.0, 38.0)]
    clip = '<defs><clipPath id="clipR"><circle id="rcircle" cx="74" cy="68" r="40"/></clipPath></defs>'
    shape = LAYER.format(
        id="layer9",
        t=' transform="translate(40,30) rotate(-30)"',
        body=f'<polygon id="obj" points="{points(then(to_doc, inverse(layer)), quad)}"/>'
        '<rect id="away" x="200" y="150" width="10" height="10"/>',
    )
    start = text.index(">", text.index("<svg")) + 1
    text = text[:start] + clip + text[start:]
    text = text.replace('<image id="photo" ', '<image id="photo" clip-path="url(#clipR)" ', 1)
    text = text.replace("</svg>", shape + "</svg>", 1)
    return text, {
        "obj": {"polygon": quad, "fill_rule": "nonzero"},
        "rcircle": {"ellipse": [32, 24, 20, 20], "fill_rule": "nonzero"},
    }


def main() -> None:
    (HERE / "expected").mkdir(exist_ok=True)
    for name, (body, expected) in docs().items():
        text = body if body.startswith("<?xml") else svg(body)
        (HERE / "svg" / f"{name}.svg").write_text(text, encoding="utf-8")
        (HERE / "expected" / f"{name}.json").write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

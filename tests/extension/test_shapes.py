"""Shapes selected with the image (issue 13): the geometry the extension sends, against hand-derived golden files.

``data/expected/shapes_*.json`` hold each shape's geometry in the image's pixel frame, derived by
``data/make_shapes.py`` with plain trigonometry from the numbers it wrote into ``data/svg/shapes_*.svg``. The sent
path data is compared with it numerically: dense samples of both must lie within ``TOLERANCE_PX`` of the other
(a symmetric Hausdorff distance), so a wrong transform, a missing piece or an extra one all fail.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import inkex
import numpy as np
import pytest
from conftest import DATA, FakeEngine
from lxml import etree
from test_sketch import run_sketch

#: Agreement with the derivation: inkex's arcs are cubic approximations (2.7e-4 of the radius for a quarter
#: turn) and the coordinates are written with 4 decimals (the documents' with 6).
TOLERANCE_PX = 0.01


def outlines(d: str, per_segment: int = 64) -> list[np.ndarray]:
    """Each subpath of path data as a polyline of points along it, closed (as it is filled)."""
    out = []
    for sub in inkex.Path(d).to_superpath():
        nodes = [[np.array(p, dtype=float) for p in node] for node in sub]
        first, last = nodes[0][1], nodes[-1][1]
        nodes[-1] = [nodes[-1][0], last, last]
        nodes.append([first, first, first])  # the closing line
        t = np.linspace(0.0, 1.0, per_segment)[:, None]
        pieces = []
        for a, b in itertools.pairwise(nodes):
            p0, p1, p2, p3 = a[1], a[2], b[0], b[1]
            pieces.append((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3)
        out.append(np.concatenate(pieces))
    return out


def samples(d: str) -> np.ndarray:
    return np.concatenate(outlines(d))


def expected_outlines(geometry: dict[str, Any]) -> list[np.ndarray]:
    if "polygon" in geometry:
        return outlines("M " + " L ".join(f"{x},{y}" for x, y in geometry["polygon"]) + " Z")
    if "ellipse" in geometry:
        cx, cy, rx, ry = geometry["ellipse"]
        a = np.linspace(0, 2 * math.pi, 4000)
        return [np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)]
    return outlines(geometry["d"])


def distance_to(points: np.ndarray, lines: list[np.ndarray]) -> np.ndarray:
    """Each point's distance to the nearest of the polylines."""
    a = np.concatenate([line[:-1] for line in lines])
    ab = np.concatenate([line[1:] for line in lines]) - a
    ap = points[:, None, :] - a[None, :, :]
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-30), 0.0, 1.0)
    return np.sqrt(((ap - t[..., None] * ab) ** 2).sum(-1)).min(1)


def hausdorff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Symmetric Hausdorff distance between two sets of polylines (points of each against the other's lines)."""
    return float(max(distance_to(np.concatenate(a), b).max(), distance_to(np.concatenate(b), a).max()))


def golden(name: str) -> dict[str, Any]:
    return json.loads((DATA / "expected" / f"{name}.json").read_text(encoding="utf-8"))


def sent(fake_engine: FakeEngine, doc: str, *args: str) -> list[dict[str, Any]]:
    """Run the extension on ``doc``; the requests the engine received, one per image."""
    status, out = run_sketch(doc, *args)
    assert status == 0 and b"clipasso-photo" in out
    return fake_engine.request_log()


def assert_same_geometry(shape: dict[str, Any], geometry: dict[str, Any]) -> None:
    assert shape["fill_rule"] == geometry["fill_rule"]
    assert hausdorff(outlines(shape["d"]), expected_outlines(geometry)) < TOLERANCE_PX, shape["d"]


@pytest.mark.parametrize(
    ("doc", "ids"),
    [
        ("shapes_rotated", ["outline"]),  # rotated and scaled image, in a translated layer
        ("shapes_scaled_layer", ["curve"]),  # a curve in a layer scaled by 1/2; evenodd from the layer's style
        ("shapes_viewbox", ["box", "boxcm"]),  # a mm viewBox, the image at x="1cm", a rect at x="1.2cm"
        ("shapes_circle_layer", ["disc"]),  # a circle in another, rotated layer
    ],
)
def test_geometry_sent_matches_the_golden_file(doc: str, ids: list[str], fake_engine: FakeEngine) -> None:
    (request,) = sent(fake_engine, doc, "--id=photo", *(f"--id={i}" for i in ids))
    assert "detail_paths" not in request and request["mask"] is None
    assert len(request["mask_paths"]) == len(ids)
    for shape, name in zip(request["mask_paths"], ids, strict=True):
        assert_same_geometry(shape, golden(doc)[name])


def test_circle_is_a_circle_all_round(fake_engine: FakeEngine) -> None:
    """The circle in the rotated layer, checked point by point: every sample at radius 15 around (32, 24), and
    no gap in its angles (a missing arc would pass a one-sided distance test)."""
    (request,) = sent(fake_engine, "shapes_circle_layer", "--id=photo", "--id=disc")
    points = samples(request["mask_paths"][0]["d"]) - (32, 24)
    assert np.abs(np.hypot(points[:, 0], points[:, 1]) - 15).max() < 0.005
    angles = np.sort(np.arctan2(points[:, 1], points[:, 0]))
    assert np.diff(np.concatenate([angles, angles[:1] + 2 * math.pi])).max() < 0.05


def test_a_wrong_map_fails_the_comparison() -> None:
    """The comparison can fail: the golden circle moved by a tenth of a pixel, or a quarter of it missing."""
    circle = {"ellipse": [32, 24, 15, 15], "fill_rule": "nonzero"}
    d = "M 47,24 A 15,15 0 1 1 17,24 A 15,15 0 1 1 47,24 Z"
    assert hausdorff(outlines(d), expected_outlines(circle)) < TOLERANCE_PX
    moved = "M 47.1,24 A 15,15 0 1 1 17.1,24 A 15,15 0 1 1 47.1,24 Z"
    assert hausdorff(outlines(moved), expected_outlines(circle)) > TOLERANCE_PX
    three_quarters = "M 47,24 A 15,15 0 1 1 32,9"  # closed by a straight chord
    assert hausdorff(outlines(three_quarters), expected_outlines(circle)) > TOLERANCE_PX


def test_clip_path_is_the_object_mask(fake_engine: FakeEngine) -> None:
    """userSpaceOnUse (a circle) and objectBoundingBox (an ellipse, clip-rule evenodd, a clipPath transform)."""
    first, second = sent(fake_engine, "shapes_clip", "--id=photo", "--id=photo2")
    (circle,) = first["mask_paths"]
    (ellipse,) = second["mask_paths"]
    assert_same_geometry(circle, golden("shapes_clip")["clipcircle"])
    assert_same_geometry(ellipse, golden("shapes_clip")["clipellipse"])


def regions(request: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The sent mask shapes by region number (a missing region is 0), in order."""
    found: dict[int, list[dict[str, Any]]] = {}
    for shape in request["mask_paths"]:
        found.setdefault(shape.get("region", 0), []).append(shape)
    assert sorted(found) == list(range(len(found)))  # numbered from 0 without gaps
    return [found[k] for k in sorted(found)]


def assert_regions(request: dict[str, Any], doc: str, names: list[list[str]]) -> None:
    got = regions(request)
    assert [len(region) for region in got] == [len(region) for region in names]
    for region, want in zip(got, names, strict=True):
        for shape, name in zip(region, want, strict=True):
            assert_same_geometry(shape, golden(doc)[name])


def test_clip_options(fake_engine: FakeEngine) -> None:
    """Off: no mask. Selected object shapes narrow the clip (what is visible): both sent, as regions that
    intersect; as details, the clip stays the object."""
    (off,) = sent(fake_engine, "shapes_clip", "--id=photo", "--use_clip=false")
    assert "mask_paths" not in off and "detail_paths" not in off
    fake_engine.requests.unlink()
    (shapes,) = sent(fake_engine, "shapes_clip", "--id=photo", "--id=inside")
    assert_regions(shapes, "shapes_clip", [["inside"], ["clipcircle"]])
    fake_engine.requests.unlink()
    (alone,) = sent(fake_engine, "shapes_clip", "--id=photo", "--id=inside", "--use_clip=false")
    assert_regions(alone, "shapes_clip", [["inside"]])
    assert "region" not in alone["mask_paths"][0]  # one region: the request an engine without regions reads
    fake_engine.requests.unlink()
    (detail,) = sent(fake_engine, "shapes_clip", "--id=photo", "--id=inside", "--shapes=detail", "--detail_weight=7")
    assert_same_geometry(detail["detail_paths"][0], golden("shapes_clip")["inside"])
    assert_same_geometry(detail["mask_paths"][0], golden("shapes_clip")["clipcircle"])
    assert detail["settings"]["detail_weight"] == 7.0


NESTED = [["ccircle", "brect"], ["crect", "brect"], ["jpoly"], ["gellipse"], ["ldiamond"]]


def test_clips_of_the_image_its_group_and_layer_and_nested_clips(fake_engine: FakeEngine) -> None:
    """shapes_clip_nested: the image's clip (a circle clipped by a rect, united with a rect B, the whole clipped
    by a polygon), its rotated group's objectBoundingBox ellipse and its layer's polygon (in style): the visible
    region ((circle ∩ C) ∪ B) ∩ J ∩ ellipse ∩ diamond is sent as (circle ∪ B) ∩ (C ∪ B) ∩ J ∩ ellipse ∩ diamond."""
    (request,) = sent(fake_engine, "shapes_clip_nested", "--id=photo")
    assert_regions(request, "shapes_clip_nested", NESTED)
    fake_engine.requests.unlink()
    (off,) = sent(fake_engine, "shapes_clip_nested", "--id=photo", "--use_clip=false")
    assert "mask_paths" not in off


def test_nested_clips_as_the_engine_fills_them(fake_engine: FakeEngine) -> None:
    """The real rasteriser on what is sent, against the region computed point by point from the hand-derived
    geometry (8×8 samples a pixel): a pixel wholly inside is at least half covered, one wholly outside less."""
    from clipasso_engine import shape_mask

    (request,) = sent(fake_engine, "shapes_clip_nested", "--id=photo")
    mask, _ = shape_mask.request_shapes(request)
    plane = shape_mask.combined_mask(mask, (64, 48), "mask")
    assert plane is not None
    k = (np.arange(8) + 0.5) / 8
    yy, xx = np.mgrid[0:48, 0:64]
    x = (xx[..., None, None] + k[None, None, None, :]).astype(float)
    y = (yy[..., None, None] + k[None, None, :, None]).astype(float)
    circle = (x - 30) ** 2 + (y - 24) ** 2 < 18**2
    c_rect = (x > 20) & (x < 60) & (y > 10) & (y < 40)
    b_rect = (x > 2) & (x < 14) & (y > 30) & (y < 46)
    j_poly = (x > 1) & (x < 63) & (y > 1) & (y < 36 + (x - 63) * (47 - 36) / (1 - 63))
    ellipse = ((x - 32) / 28.8) ** 2 + ((y - 24) / 19.2) ** 2 < 1
    diamond = np.abs(x - 32) / 30 + np.abs(y - 24) / 24 < 1
    exact = (((circle & c_rect) | b_rect) & j_poly & ellipse & diamond).mean(axis=(2, 3))
    assert 300 < exact.sum() < 1500  # the region is neither empty nor the whole image
    assert (plane[exact == 1] >= 128).all() and (plane[exact == 0] < 128).all()
    assert plane.astype(float).sum() / 255 == pytest.approx(exact.sum(), rel=0.01)
    # A union of every clip instead (one region) would cover much more: the comparison can fail.
    union = shape_mask.combined_mask([shape_mask.Shape(m.d, m.fill_rule) for m in mask], (64, 48), "mask")
    assert union is not None and union.astype(float).sum() / 255 > 1.5 * exact.sum()


def test_clips_as_inkscape_draws_them(tmp_path: Path, fake_engine: FakeEngine) -> None:
    """Independent of the derivation: Inkscape 1.2 renders shapes_clip_nested (a black image; without the three
    constructs where it departs from the SVG specification, see README) and every rendered pixel, mapped into the
    image's pixels by hand (the layer's translate(30,10), the group's rotate(20) scale(1.5), the image at (5, 5)),
    is dark where the engine's mask of what the extension sends is set, and light where it is not."""
    import base64
    import io
    import re
    import shutil
    import subprocess

    from PIL import Image

    from clipasso_engine import shape_mask

    inkscape = shutil.which("inkscape")
    if inkscape is None:
        pytest.fail("Inkscape is missing: apt-get install inkscape")
    text = (DATA / "svg" / "shapes_clip_nested.svg").read_text(encoding="utf-8")
    text = text.replace(' transform="translate(2,3)" clip-path="url(#clipJ)"', "")
    text = text.replace('clipPathUnits="objectBoundingBox"><ellipse id="gellipse" cx="0.5" cy="0.5" rx="0.45" '
                        'ry="0.4"', '><ellipse id="gellipse" cx="37" cy="29" rx="28.8" ry="19.2"')  # fmt: skip
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, "PNG")
    black = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    text = re.sub(r' href="data:[^"]*"', f' xlink:href="{black}"', text)
    doc, png = tmp_path / "nested.svg", tmp_path / "nested.png"
    doc.write_text(text, encoding="utf-8")
    (request,) = sent(fake_engine, doc, "--id=photo")
    assert len(regions(request)) == 4  # the clipped circle and B, C and B, the ellipse, the diamond
    mask, _ = shape_mask.request_shapes(request)
    plane = shape_mask.combined_mask(mask, (64, 48), "mask")
    assert plane is not None
    options = ["--export-area-page", "--export-dpi=384", "--export-background=white", "--export-background-opacity=1"]
    subprocess.run([inkscape, str(doc), "--export-type=png", f"--export-filename={png}", *options],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    dark = np.asarray(Image.open(png).convert("L")) < 128  # 4 pixels a user unit
    yy, xx = np.mgrid[0 : dark.shape[0], 0 : dark.shape[1]]
    dx, dy = (xx + 0.5) / 4 - 30, (yy + 0.5) / 4 - 10
    turn = math.radians(-20)
    x = (math.cos(turn) * dx - math.sin(turn) * dy) / 1.5 - 5
    y = (math.sin(turn) * dx + math.cos(turn) * dy) / 1.5 - 5
    on = (x >= 0) & (x < 64) & (y >= 0) & (y < 48)
    inside = np.zeros_like(dark)
    inside[on] = plane[y[on].astype(int), x[on].astype(int)] >= 128
    # Away from the mask's edges (1.5 image px, 9 rendered px) the two agree exactly.
    from scipy import ndimage

    sure_in = ndimage.binary_erosion(inside, iterations=9)
    sure_out = ~ndimage.binary_dilation(inside, iterations=9)
    assert sure_in.sum() > 5000 and dark[sure_in].all() and not dark[sure_out].any()
    assert abs(int(dark.sum()) - int(inside.sum())) < 0.03 * inside.sum()


def test_a_clone_in_a_clip(fake_engine: FakeEngine) -> None:
    (request,) = sent(fake_engine, "shapes_clip_more", "--id=photo-use")
    assert_regions(request, "shapes_clip_more", [["usedisc"]])


def test_a_broken_clip_reference_clips_nothing(fake_engine: FakeEngine) -> None:
    """Renderers draw an element whose clip-path points at nothing unclipped: no mask."""
    (request,) = sent(fake_engine, "shapes_clip_more", "--id=photo-broken")
    assert "mask_paths" not in request


def test_modes(fake_engine: FakeEngine) -> None:
    (detail,) = sent(fake_engine, "shapes_two", "--id=photo", "--id=both", "--shapes=detail")
    assert "mask_paths" not in detail and len(detail["detail_paths"]) == 1
    assert detail["settings"]["detail_weight"] == 4.0  # the default: the engine's own
    fake_engine.requests.unlink()
    (ignored,) = sent(fake_engine, "shapes_two", "--id=photo", "--id=both", "--id=nowhere", "--shapes=ignore")
    assert "mask_paths" not in ignored and "detail_paths" not in ignored and "detail_weight" not in ignored["settings"]


def test_shapes_go_to_the_images_they_overlap(fake_engine: FakeEngine) -> None:
    """Two images; a group (ring + triangle, evenodd inherited), a rect over both, an open path over one."""
    ids = ("--id=photo", "--id=photo2", "--id=group", "--id=both", "--id=open")
    first, second = sent(fake_engine, "shapes_two", *ids)
    want = golden("shapes_two")
    for shape, name in zip(first["mask_paths"], ["ring", "both@photo", "open"], strict=True):
        assert_same_geometry(shape, want[name])
    for shape, name in zip(second["mask_paths"], ["tri", "both@photo2"], strict=True):
        assert_same_geometry(shape, want[name])


def test_open_path_is_sent_open_and_whole_image_shape_is_sent(fake_engine: FakeEngine) -> None:
    """The engine decides about both (it closes the open path and says so; a whole-image mask is no mask)."""
    (request,) = sent(fake_engine, "shapes_two", "--id=photo", "--id=open", "--id=everything")
    opened, everything = request["mask_paths"]
    assert opened["d"] == "M 5,5 L 25,5 L 15,20"  # no Z: the drawing left it open
    assert everything["d"].endswith(" Z") and samples(everything["d"]).min(0) == pytest.approx((-5, -10))


def test_what_the_engine_makes_of_what_is_sent(fake_engine: FakeEngine) -> None:
    """The real engine's rasteriser (``clipasso_engine.shape_mask``, no torch) on the extension's request: the
    open path is closed with a note, the whole-image rect is no mask with a note, the circle has its area."""
    from clipasso_engine import shape_mask

    (request,) = sent(fake_engine, "shapes_two", "--id=photo", "--id=open", "--id=everything")
    mask, _ = shape_mask.request_shapes(request)
    notes: list[str] = []
    assert shape_mask.combined_mask(mask, (64, 48), "mask", notes.append) is None
    assert any("open path" in n for n in notes) and any("cover the whole image" in n for n in notes)
    fake_engine.requests.unlink()
    (request,) = sent(fake_engine, "shapes_circle_layer", "--id=photo", "--id=disc")
    mask, _ = shape_mask.request_shapes(request)
    area = shape_mask.combined_mask(mask, (64, 48), "mask").astype(float).sum() / 255
    assert area == pytest.approx(math.pi * 15**2, rel=0.005)


def test_the_shapes_are_left_as_they_were(fake_engine: FakeEngine) -> None:
    path = DATA / "svg" / "shapes_two.svg"
    before = inkex.load_svg(str(path)).getroot()
    status, out = run_sketch("shapes_two", "--id=photo", "--id=photo2", "--id=group", "--id=both", "--id=open")
    after = inkex.load_svg(out).getroot()
    assert status == 0
    for name in ("group", "both", "open"):
        assert etree.tostring(after.getElementById(name)) == etree.tostring(before.getElementById(name))


@pytest.mark.parametrize(
    ("doc", "args", "expected"),
    [
        ("shapes_two", ["--id=photo", "--id=nowhere"],
         "The shape 'nowhere' does not overlap the image 'photo'; move it over the image or leave it out of the "
         "selection."),
        ("shapes_two", ["--id=photo", "--id=photo2", "--id=both", "--id=nowhere"],
         "The shape 'nowhere' does not overlap any of the selected images;"),
        ("shapes_two", ["--id=photo", "--id=words"], "The selected object 'words' is neither a raster image nor a "
         "closed shape; select images and the shapes over them"),
        ("shapes_two", ["--id=both", "--id=open"], "Only shapes are selected; Shift+click the image they belong to"),
    ],
)  # fmt: skip
def test_bad_selections_are_one_sentence_before_the_engine(
    doc: str, args: list[str], expected: str, fake_engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run_sketch(doc, *args)
    err = capsys.readouterr().err
    assert status != 0 and out == b"" and expected in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert not fake_engine.started_pids()  # found before the engine starts


HIDDEN = "is visible inside its clip ('clip-{0}'); move the clip over the image, or turn off 'A clipped image's clip is"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--id=photo-far"], "Nothing of the image 'photo-far' " + HIDDEN.format("far")),
        (["--id=photo-empty"], "Nothing of the image 'photo-empty' " + HIDDEN.format("empty")),
        (["--id=photo-hidden"], "Nothing of the image 'photo-hidden' " + HIDDEN.format("hidden")),
        (["--id=photo-loop"], "The clip 'clip-loop' refers back to itself through clip-path, so what it shows is "
         "undefined; remove the loop in the XML Editor (Ctrl+Shift+X), then try again."),
        (["--id=photo-text"], "The clip holds the text 'cliptext', whose letters cannot be read as a mask; convert "
         "it (Path ▸ Object to Path) or turn off 'A clipped image's clip is the object', then try again."),
        (["--id=photo-use", "--id=flat"], "The shape 'flat' is squashed flat by its transform or its layer's (a zero "
         "scale), so it encloses nothing; reset the transform (Object ▸ Transform) or leave it out of the selection."),
        (["--id=photo-use", "--id=badd"], "The shape 'badd' has path data that cannot be read ('M 20 30 L 60 30 L "
         "oops Z'); redraw it, or correct its d in the XML Editor (Ctrl+Shift+X), then try again."),
        (["--id=photo-use", "--id=short"], "The shape 'short' has path data that cannot be read ('M 20 30 L 60 30 L "
         "40 Z');"),
        (["--id=photo-use", "--id=arcflags"], "The shape 'arcflags' has path data that cannot be read"),
        (["--id=photo-use", "--id=huge"], "The shape 'huge' reaches beyond 10,000,000 pixels from the image (or has "
         "a coordinate that is not a number); redraw it over the image, then try again."),
        (["--id=photo-use", "--id=far"], "The shape 'far' reaches beyond 10,000,000 pixels from the image"),
    ],
)  # fmt: skip
def test_bad_clips_and_shapes_are_one_sentence_before_the_engine(
    args: list[str], expected: str, fake_engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run_sketch("shapes_clip_more", *args)
    err = capsys.readouterr().err
    assert status != 0 and out == b"" and expected in err, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert not fake_engine.started_pids()


@pytest.mark.parametrize("name", ["far", "empty", "hidden", "loop", "text"])
def test_turning_the_clip_off_is_the_way_out(name: str, fake_engine: FakeEngine) -> None:
    """What the clip sentences advise works: with the option off the image is sketched without a mask."""
    (request,) = sent(fake_engine, "shapes_clip_more", f"--id=photo-{name}", "--use_clip=false")
    assert "mask_paths" not in request


# ---- refine mode: shapes selected with the sketch group (data/svg/shapes_refine.svg, made from edited.svg) ---------

REFINE = ("--mode=refine", "--add=1")


def refined(fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, Any]:
    """Refine shapes_refine with ``args`` (the selection and options); the one request the engine received."""
    fake_engine.requests.unlink(missing_ok=True)
    for key, value in fake_engine.env("refine").items():
        monkeypatch.setenv(key, value)
    status, out = run_sketch("shapes_refine", *REFINE, *args)
    assert status == 0 and b"data-clipasso-refined" in out
    (request,) = fake_engine.request_log()
    assert len(request["init_strokes"]) == 8 and request["add"] == 1  # a refine, with the shapes added
    return request


def test_refine_with_an_object_shape_and_the_clip(fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The polygon in a rotated layer narrows the image's clip, as in sketch mode (so the target is masked and
    added strokes start inside); a selected stroke of the sketch is still the sketch, not a shape."""
    request = refined(fake_engine, monkeypatch, "--id=clipasso-photo", "--id=obj")
    assert_regions(request, "shapes_refine", [["obj"], ["rcircle"]])
    stroke = refined(fake_engine, monkeypatch, "--id=clipasso-photo-stroke-0", "--id=obj")
    assert stroke["mask_paths"] == request["mask_paths"]
    plain = refined(fake_engine, monkeypatch, "--id=clipasso-photo")  # no shape selected: the clip alone
    assert_regions(plain, "shapes_refine", [["rcircle"]])
    off = refined(fake_engine, monkeypatch, "--id=clipasso-photo", "--use_clip=false")
    assert "mask_paths" not in off and "detail_paths" not in off


def test_refine_with_a_detail_shape(fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    selection = ("--id=clipasso-photo", "--id=obj")
    request = refined(fake_engine, monkeypatch, *selection, "--shapes=detail", "--detail_weight=7")
    assert_same_geometry(request["detail_paths"][0], golden("shapes_refine")["obj"])
    assert request["settings"]["detail_weight"] == 7.0 and request["settings"]["seeds"] == 1
    assert_regions(request, "shapes_refine", [["rcircle"]])
    ignored = refined(fake_engine, monkeypatch, *selection, "--shapes=ignore", "--use_clip=false")
    assert "mask_paths" not in ignored and "detail_paths" not in ignored


def test_refine_with_a_shape_off_the_image_is_one_sentence(
    fake_engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run_sketch("shapes_refine", *REFINE, "--id=clipasso-photo", "--id=away")
    err = capsys.readouterr().err
    assert status != 0 and out == b"" and "Traceback" not in err
    assert "The shape 'away' does not overlap the image 'photo'; move it over the image or leave it out" in err
    assert err.strip().count("\n") == 0 and not fake_engine.started_pids()


def _doc_with_image(tmp_path: Path, image: str) -> Path:
    text = (DATA / "svg" / "shapes_two.svg").read_text(encoding="utf-8")
    start = text.index('href="', text.index('id="photo"')) + len('href="')
    doc = tmp_path / "doc.svg"
    doc.write_text(text[:start] + image + text[text.index('"', start) :], encoding="utf-8")
    return doc


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("size", "The size of image 'photo' cannot be read (not a PNG, JPEG, GIF, BMP, WebP or TIFF file), so"),
        ("zero", "The image 'photo' is drawn with no area (a zero size or scale); give it a size, then try again."),
    ],
)
def test_images_shapes_cannot_be_placed_on(
    change: str, expected: str, tmp_path: Path, fake_engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    if change == "size":
        doc = _doc_with_image(tmp_path, "data:image/x-icon;base64,AAABAAEAEBA=")
    else:
        doc = tmp_path / "zero.svg"
        text = (DATA / "svg" / "shapes_two.svg").read_text(encoding="utf-8")
        doc.write_text(text.replace('width="128" height="96"', 'width="0" height="96"', 1), encoding="utf-8")
    status, out = run_sketch(doc, "--id=photo", "--id=both")
    err = capsys.readouterr().err
    assert status != 0 and out == b"" and expected in err and "Traceback" not in err
    assert not fake_engine.started_pids()
    if change == "size":  # without shapes the same image goes to the engine, which reads any format it can
        fake_engine.requests.unlink(missing_ok=True)
        status, _ = run_sketch(doc, "--id=photo")
        assert status == 0 and len(fake_engine.request_log()) == 1


@pytest.mark.parametrize("weight", ["0", "0.5", "nan", "inf", "-inf", "1e9"])
def test_detail_weight_out_of_range_is_one_sentence(
    weight: str, fake_engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run_sketch("shapes_two", "--id=photo", "--id=both", "--shapes=detail", f"--detail_weight={weight}")
    err = capsys.readouterr().err
    assert status != 0 and out == b"" and "is not a number from 1 to 1000; set it under" in err
    assert err.strip().count("\n") == 0 and not fake_engine.started_pids()


@pytest.mark.parametrize("weight", ["1", "1000"])
def test_detail_weight_range_ends_are_sent(weight: str, fake_engine: FakeEngine) -> None:
    (request,) = sent(
        fake_engine, "shapes_two", "--id=photo", "--id=both", "--shapes=detail", f"--detail_weight={weight}"
    )
    assert request["settings"]["detail_weight"] == float(weight)

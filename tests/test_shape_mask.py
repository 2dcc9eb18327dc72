"""Masks drawn as shapes: rasterisation accuracy, fill rules, the SVG file reader, the sketch API end to end with
the tiny models, the detail weighting, and every bad input as one sentence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import TinyModels

import clipasso_engine.api as api
from clipasso_engine.api import sketch
from clipasso_engine.config import SketchSettings
from clipasso_engine.errors import MaskError, PathDataError, ShapeMaskError
from clipasso_engine.saliency import sampling_probabilities
from clipasso_engine.shape_mask import (
    MAX_SHAPES,
    Shape,
    as_shapes,
    combined_mask,
    rasterise,
    request_shapes,
    shapes_from_json,
    winding_numbers,
)
from clipasso_engine.shape_svg import parse_transform, read_shapes_svg


def circle(cx: float, cy: float, r: float, sweep: int = 1) -> str:
    return f"M {cx - r} {cy} A {r} {r} 0 0 {sweep} {cx + r} {cy} A {r} {r} 0 0 {sweep} {cx - r} {cy} Z"


def star(cx: float, cy: float, r: float) -> str:
    points = [(cx + r * math.sin(k * 4 * math.pi / 5), cy - r * math.cos(k * 4 * math.pi / 5)) for k in range(5)]
    return "M " + " L ".join(f"{x} {y}" for x, y in points) + " Z"


# --- accuracy ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [30.4, 60.2, 150.7])
def test_circle_area_and_boundary(radius: float) -> None:
    size = int(2 * radius + 21)
    cx, cy = size / 2 + 0.31, size / 2 + 0.17
    coverage = rasterise(Shape(circle(cx, cy, radius)), (size, size))
    assert abs(coverage.sum() / (math.pi * radius**2) - 1) < 0.005
    # The half-coverage boundary lies within 0.5 px of the true circle: pixels more than 0.5 px inside are at
    # least half covered, pixels more than 0.5 px outside less than half.
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    distance = np.hypot(xx - cx, yy - cy) - radius
    assert (coverage[distance < -0.5] >= 0.5).all() and (coverage[distance > 0.5] < 0.5).all()
    assert (coverage[distance < -1.0] == 1).all() and (coverage[distance > 1.0] == 0).all()


def test_a_shape_larger_than_one_tile() -> None:
    coverage = rasterise(Shape("M 10.5 20.25 H 1100.5 V 700.75 H 10.5 Z"), (1200, 800))
    assert coverage.sum() == pytest.approx(1090 * 680.5, rel=1e-4)
    assert coverage[300, 511] == 1 and coverage[300, 512] == 1 and coverage[10, 600] == 0


def pentagram_areas(r: float) -> tuple[float, float]:
    """(nonzero area, evenodd area) of the pentagram of circumradius r: all of it, and its five points only."""
    inner = r * math.cos(2 * math.pi / 5) / math.cos(math.pi / 5)  # the inner pentagon's circumradius
    pentagon = 5 / 2 * inner**2 * math.sin(2 * math.pi / 5)
    tip = 5 * 0.5 * r * inner * math.sin(math.pi / 5) * 2 - pentagon  # star = 10 triangles (centre, r, inner)
    return tip + pentagon, tip


@pytest.mark.parametrize("rule", ["nonzero", "evenodd"])
def test_pentagram_follows_its_fill_rule(rule: str) -> None:
    coverage = rasterise(Shape(star(100, 100, 80), rule), (200, 200))
    nonzero, evenodd = pentagram_areas(80)
    assert coverage[100, 100] == (1.0 if rule == "nonzero" else 0.0)
    assert coverage.sum() == pytest.approx(nonzero if rule == "nonzero" else evenodd, rel=0.005)


@pytest.mark.parametrize(
    ("sweep", "rule", "hole"), [(1, "nonzero", False), (0, "nonzero", True), (1, "evenodd", True), (0, "evenodd", True)]
)
def test_ring_with_same_or_opposite_orientation(sweep: int, rule: str, hole: bool) -> None:
    coverage = rasterise(Shape(circle(100, 100, 80) + " " + circle(100, 100, 40, sweep), rule), (200, 200))
    assert coverage[100, 100] == (0.0 if hole else 1.0) and coverage[100, 30] == 1.0
    expected = math.pi * (80**2 - 40**2) if hole else math.pi * 80**2
    assert coverage.sum() == pytest.approx(expected, rel=0.005)


def test_winding_numbers_exact() -> None:
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10.0]])
    points = np.array([[5, 5], [15, 5], [-1, 5], [5, 11.0]])
    assert winding_numbers(points, [square]).tolist() == [1, 0, 0, 0]
    assert winding_numbers(points, [square, square]).tolist() == [2, 0, 0, 0]
    assert winding_numbers(points, [square, square[::-1]]).tolist() == [0, 0, 0, 0]


def test_shapes_combine_as_a_union_and_a_full_cover_is_no_mask() -> None:
    notes: list[str] = []
    left, right = Shape("M 0 0 H 50 V 100 H 0 Z"), Shape("M 40 0 H 100 V 100 H 40 Z")
    assert combined_mask([left, right], (100, 100), "mask", notes.append) is None
    assert notes == ["The mask shapes cover the whole image, so they change nothing (the same as no mask)."]
    half = combined_mask([left], (100, 100), "mask")
    assert half is not None and half.dtype == np.uint8 and half[1:-1, 1:50].min() == 255 and half[:, 51:].max() == 0


def lens_area(r: float, distance: float) -> float:
    """The area two circles of radius r whose centres are ``distance`` apart have in common."""
    return 2 * r**2 * math.acos(distance / (2 * r)) - distance / 2 * math.sqrt(4 * r**2 - distance**2)


def test_regions_intersect_and_shapes_within_a_region_unite() -> None:
    """Nested clips: shapes of one region make their union, different regions intersect (a lens of two discs)."""
    a, b = Shape(circle(80, 100, 50)), Shape(circle(130, 100, 50), region=1)
    lens = combined_mask([a, b], (220, 200), "mask")
    assert lens is not None and lens[100, 105] == 255 and lens[100, 50] == 0 and lens[100, 160] == 0
    assert lens.astype(float).sum() / 255 == pytest.approx(lens_area(50, 50), rel=0.005)
    union = combined_mask([a, Shape(b.d)], (220, 200), "mask")
    assert union is not None
    assert union.astype(float).sum() / 255 == pytest.approx(2 * math.pi * 50**2 - lens_area(50, 50), rel=0.005)
    # A region covering the whole image leaves the others as they are; regions are numbers, not positions.
    whole = Shape("M -1 -1 H 221 V 201 H -1 Z", region=7)
    assert np.array_equal(combined_mask([whole, a], (220, 200), "mask"), combined_mask([a], (220, 200), "mask"))
    notes: list[str] = []
    assert combined_mask([whole, Shape(whole.d, region=3)], (220, 200), "mask", notes.append) is None
    assert notes == ["The mask shapes cover the whole image, so they change nothing (the same as no mask)."]


def test_regions_with_nothing_in_common_are_one_sentence() -> None:
    apart = [Shape(circle(40, 40, 20)), Shape(circle(150, 40, 20), region=2)]
    with pytest.raises(ShapeMaskError) as caught:
        combined_mask(apart, (200, 100), "mask")
    assert str(caught.value) == (
        "The mask shapes' regions 0, 2 have no pixel in common, so nothing of the image is left (with clip-paths: "
        "the clips hide the whole image); make them overlap."
    )


def test_regions_through_json_and_the_api_helpers() -> None:
    (shape,) = shapes_from_json([{"d": "M 0 0", "region": 3}], "mask_paths")
    assert shape == Shape("M 0 0", "nonzero", 3)
    assert as_shapes([shape, {"d": "M 1 1"}], "mask_paths") == [shape, Shape("M 1 1")]


def test_an_open_path_is_closed_and_said_so() -> None:
    notes: list[str] = []
    mask = combined_mask([Shape("M 10 10 L 90 10 L 90 90")], (100, 100), "mask", notes.append)
    assert mask is not None and mask[80, 85] == 255 and mask[80, 15] == 0  # the triangle below the diagonal
    assert notes == ["The mask shape is an open path; it is filled as if closed by a straight line, as SVG fills it."]


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "error", "sentence"),
    [
        (
            Shape(circle(500, 500, 20)),
            ShapeMaskError,
            "The mask shape lies entirely outside the 100×80 image; draw it over the image (coordinates are image "
            "pixels).",
        ),
        (
            Shape("M 10 10 L 50 50"),
            ShapeMaskError,
            "The mask shape encloses no area (it is a point or a line); draw a closed shape.",
        ),
        (
            Shape("M 10 10 L 50 10 L 90 10 Z"),
            ShapeMaskError,
            "The mask shape encloses no area (it is a point or a line); draw a closed shape.",
        ),
        (
            Shape("M 0 0 L 1e8 0 L 0 10 Z"),
            ShapeMaskError,
            "The mask shape has coordinates beyond ±10,000,000 px; give shapes in the image's pixel frame.",
        ),
        (
            Shape("M 10 10 L 50 10 oops"),
            PathDataError,
            "The mask shape: The path data 'M 10 10 L 50 10 oops' cannot be read: 'o' at character 17 is not a path "
            "command; write SVG path data such as 'M 0 0 L 10 0 L 0 10 Z'.",
        ),
    ],
)
def test_bad_shapes_are_one_sentence(shape: Shape, error: type[Exception], sentence: str) -> None:
    with pytest.raises(error) as caught:
        combined_mask([shape], (100, 80), "mask")
    assert str(caught.value) == sentence


@pytest.mark.parametrize(
    ("value", "sentence"),
    [
        ("M 0 0", '"mask_paths" must be a list of {"d": ..., "fill_rule": ...} objects, not a string.'),
        ({"d": "M 0 0"}, '"mask_paths" must be a list of {"d": ..., "fill_rule": ...} objects, not an object.'),
        (["M 0 0"], '"mask_paths" item 1 must be an object {"d": ..., "fill_rule": ...}, not a string.'),
        ([{"d": 5}], '"mask_paths" item 1 needs "d", SVG path data as a string, not a number.'),
        ([{}], '"mask_paths" item 1 needs "d", SVG path data as a string, not null.'),
        (
            [{"d": "M 0 0", "fill_rule": "winding"}],
            '"mask_paths" item 1 has fill_rule \'winding\'; use "nonzero" or "evenodd".',
        ),
        ([{"d": "M 0 0", "fill_rule": None}], '"mask_paths" item 1 has fill_rule None; use "nonzero" or "evenodd".'),
        ([{"d": "M 0 0", "fill": "red"}], '"mask_paths" item 1 has unknown key(s) fill; use d, fill_rule and region.'),
        ([{"d": "M 0 0", "region": -1}], '"mask_paths" item 1 has region -1; use a whole number from 0 to 999.'),
        ([{"d": "M 0 0", "region": 1000}], '"mask_paths" item 1 has region 1000; use a whole number from 0 to 999.'),
        ([{"d": "M 0 0", "region": 1.5}], '"mask_paths" item 1 has region 1.5; use a whole number from 0 to 999.'),
        ([{"d": "M 0 0", "region": 1e300}], '"mask_paths" item 1 has region 1e+300; use a whole number from 0 to 999.'),
        ([{"d": "M 0 0", "region": True}], '"mask_paths" item 1 has region True; use a whole number from 0 to 999.'),
        ([{"d": "M 0 0", "region": "1"}], "\"mask_paths\" item 1 has region '1'; use a whole number from 0 to 999."),
        ([{"d": "M 0 0", "region": None}], '"mask_paths" item 1 has region None; use a whole number from 0 to 999.'),
        (
            [{"d": "M 0 0"}] * (MAX_SHAPES + 1),
            f'"mask_paths" has {MAX_SHAPES + 1:,} shapes, more than 1,000; combine or simplify them.',
        ),
    ],
)
def test_wrong_json_is_one_sentence(value: object, sentence: str) -> None:
    with pytest.raises(ShapeMaskError) as caught:
        shapes_from_json(value, "mask_paths")
    assert str(caught.value) == sentence


def test_request_shapes_parse_the_path_data_early() -> None:
    mask, detail = request_shapes({"mask_paths": [{"d": circle(5, 5, 3)}], "detail_paths": None})
    assert mask == [Shape(circle(5, 5, 3), "nonzero")] and detail == []
    with pytest.raises(PathDataError, match=r"^The detail shape 2 of 2: The path data 'Q' cannot be read"):
        request_shapes({"detail_paths": [{"d": "M 0 0 L 1 1"}, {"d": "Q"}]})


# --- the SVG file reader -----------------------------------------------------------------------------------------


def write_svg(tmp_path: Path, body: str, root: str = 'viewBox="0 0 100 80" width="100" height="80"') -> Path:
    path = tmp_path / "shapes.svg"
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" {root}>{body}</svg>', encoding="utf-8")
    return path


def test_svg_file_shapes_and_transforms(tmp_path: Path) -> None:
    path = write_svg(
        tmp_path,
        '<defs><rect width="100" height="80"/></defs>'
        '<g transform="translate(10 5)" style="fill-rule:evenodd">'
        '<rect x="0" y="0" width="20" height="10"/><circle cx="50" cy="30" r="10" transform="scale(0.5)"/></g>'
        '<ellipse cx="70" cy="60" rx="10" ry="5"/><polygon points="0,70 10,70 10,80" fill-rule="nonzero"/>'
        '<path d="M 80 0 h 10 v 10 z" transform="rotate(90 85 5)"/>',
    )
    shapes = read_shapes_svg(path)
    assert [shape.fill_rule for shape in shapes] == ["evenodd", "evenodd", "nonzero", "nonzero", "nonzero"]
    masks = [rasterise(shape, (100, 80)) for shape in shapes]
    # Vertices snap to the 1/4 px subpixel grid: a pixel-aligned edge's pixels may be 1/8 off.
    assert masks[0].sum() == pytest.approx(200, abs=2.5) and masks[0][6, 11] == 1 and masks[0][3, 11] == 0
    assert masks[0][5, 10] >= 0.75 and masks[0][4, 10] <= 0.25
    # r 10 scaled by 0.5, centred at (35, 20); a 5 px circle is within 2 % (measured -1.7 %), not 0.5 %.
    assert masks[1].sum() == pytest.approx(math.pi * 25, rel=0.02)
    assert masks[1][20, 35] == 1 and masks[1][(20 + 6), 35] == 0
    assert masks[2].sum() == pytest.approx(math.pi * 50, rel=0.03)  # measured -2.3 %: 0.07 px inward on a 5 px axis
    assert masks[3].sum() == pytest.approx(50, rel=0.01)
    rotated = masks[4]  # the triangle (80,0)-(90,0)-(90,10) turned a quarter about (85, 5): right angle at (90,10)
    assert rotated.sum() == pytest.approx(50, rel=0.01) and rotated[8, 88] == 1 and rotated[1, 84] == 0


def test_parse_transform_lists() -> None:
    matrix = parse_transform("translate(10,20) scale(2) rotate(90)", "t")
    np.testing.assert_allclose(matrix @ [1, 0, 1], [10, 22, 1], atol=1e-12)
    np.testing.assert_allclose(parse_transform("matrix(1 2 3 4 5 6)", "t")[:2].ravel(), [1, 3, 5, 2, 4, 6])
    np.testing.assert_allclose(parse_transform("skewX(45)", "t") @ [0, 1, 1], [1, 1, 1], atol=1e-12)


@pytest.mark.parametrize(
    ("body", "root", "words"),
    [
        ('<rect width="10" height="10"/>', 'viewBox="5 0 100 80"', "does not start at 0 0"),
        ('<rect width="10" height="10"/>', 'viewBox="0 0 100 80" width="200"', "scales its coordinates"),
        ('<rect width="10" height="10"/>', 'viewBox="0 0 100 80" width="100mm"', "is not a number of pixels"),
        ('<use href="#a"/>', "", "is a clone; unlink it first"),
        ("<svg/>", "", "is a nested SVG"),
        ("<g/>", "", "has no path, rect, circle, ellipse or polygon"),
        ('<rect width="10" height="10" transform="spin(3)"/>', "", "transform 'spin(3)' that cannot be read"),
        ('<rect width="10" height="10" style="fill-rule: odd"/>', "", "fill-rule 'odd'; use nonzero or evenodd"),
        ('<circle cx="5" cy="5"/>', "", "has no r; give it one"),
    ],
)
def test_bad_svg_files_are_one_sentence(tmp_path: Path, body: str, root: str, words: str) -> None:
    with pytest.raises(ShapeMaskError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_shapes_svg(write_svg(tmp_path, body, root))


def test_svg_file_safety(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.svg"
    bomb.write_text(
        '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]><svg>&b;</svg>'
    )
    with pytest.raises(ShapeMaskError, match="declares XML entities"):
        read_shapes_svg(bomb)
    (tmp_path / "bad.svg").write_text("<svg><rect")
    with pytest.raises(ShapeMaskError, match="is not a readable SVG file"):
        read_shapes_svg(tmp_path / "bad.svg")
    with pytest.raises(ShapeMaskError, match="cannot be read"):
        read_shapes_svg(tmp_path / "missing.svg")
    (tmp_path / "other.xml").write_text("<html/>")
    with pytest.raises(ShapeMaskError, match="not SVG"):
        read_shapes_svg(tmp_path / "other.xml")


# --- detail weighting --------------------------------------------------------------------------------------------


def test_detail_weight_multiplies_the_probability_inside() -> None:
    attention = torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) + 0.1
    edges = torch.zeros(8, 8)
    detail = torch.zeros(8, 8)
    detail[:, :4] = 1.0
    plain = sampling_probabilities(attention, edges, None, 0.3)
    weighted = sampling_probabilities(attention, edges, None, 0.3, detail, 4.0)
    assert weighted.sum() == pytest.approx(1.0)
    expected = plain * (1 + 3 * detail)  # four times as likely inside, then renormalised
    torch.testing.assert_close(weighted, expected / expected.sum())
    assert weighted[:, :4].sum() > 0.7  # half the pixels, most of the probability
    torch.testing.assert_close(sampling_probabilities(attention, edges, None, 0.3, detail, 1.0), plain)


@pytest.mark.parametrize("value", [math.nan, math.inf, 0.5, 1001.0, -4.0])
def test_detail_weight_is_range_checked(value: float) -> None:
    with pytest.raises(Exception, match=r"detail_weight must be a finite number at least 1 and at most 1000"):
        SketchSettings(detail_weight=value)


# --- end to end with the tiny models -----------------------------------------------------------------------------

W, H = 240, 120


def photo(tmp_path: Path) -> Path:
    """An object on the left (a dark disk), busy 'background' texture over the whole right half."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.full((H, W, 3), 235, np.uint8)
    rgb[(xx - 60) ** 2 + (yy - 60) ** 2 <= 35**2] = 30
    rgb[:, W // 2 :] = rng.integers(0, 256, (H, W // 2, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    return path


def tiny(**changes: object) -> SketchSettings:
    base: dict[str, object] = {"strokes": 12, "iterations": 2, "seeds": 1, "augmentations": 1}
    return SketchSettings(**{**base, **changes})  # type: ignore[arg-type]


def recorded_starts(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """The start points (canvas px) of every initialisation the API draws."""
    from clipasso_engine import strokes as strokes_module

    starts: list[torch.Tensor] = []
    original = strokes_module.initial_strokes

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        strokes = original(*args, **kwargs)  # type: ignore[arg-type]
        starts.append(strokes[:, 0].detach().cpu())
        return strokes

    monkeypatch.setattr(strokes_module, "initial_strokes", spy)
    return starts


def test_every_stroke_starts_inside_the_mask_shape(
    tiny_env: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = photo(tmp_path)
    starts = recorded_starts(monkeypatch)
    sketch(image, tiny())
    scale, offset_y = 240 / 224, (240 - 120) // 2
    unmasked = starts[-1] * scale - torch.tensor([0.0, offset_y])
    assert (unmasked[:, 0] > W // 2).any()  # without the mask the background draws strokes: the test can fail
    statuses: list[tuple[str, str]] = []
    result = sketch(
        image,
        tiny(),
        mask_paths=[{"d": circle(60, 60, 45)}],
        on_status=lambda stage, message: statuses.append((stage, message)),
    )
    masked = starts[-1] * scale - torch.tensor([0.0, offset_y])
    # A start is a pixel's top-left corner (spec §3.5) on the 224 canvas: inside the circle within one canvas pixel.
    assert (torch.hypot(masked[:, 0] - 60, masked[:, 1] - 60) <= 45 + scale * math.sqrt(2)).all()
    assert len(result.strokes) == 12 and not any(stage == "shapes" for stage, _ in statuses)


def test_a_refine_with_shapes_adds_strokes_inside_the_mask_and_the_details(
    tiny_env: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refine mode with shapes (the extension sends init_strokes with mask_paths / detail_paths): the added strokes
    start inside the object mask, and mostly inside a detail shape weighted up; the given strokes stay given."""
    image = photo(tmp_path)
    starts = recorded_starts(monkeypatch)
    given = [[[x, 20.0], [x + 5, 30.0], [x + 10, 40.0], [x + 15, 50.0]] for x in (150.0, 200.0)]  # background
    scale, offset_y = 240 / 224, (240 - 120) // 2

    def added(settings: SketchSettings, **shapes: object) -> torch.Tensor:
        result = sketch(image, settings, init_strokes=given, locked=[0, 1], add=24, **shapes)  # type: ignore[arg-type]
        assert len(result.strokes) == 26 and result.strokes[:2] == given
        return starts[-1] * scale - torch.tensor([0.0, offset_y])

    free = added(tiny(iterations=1))
    assert len(free) == 24 and (free[:, 0] > W // 2).sum() >= 6  # the background draws strokes: the test can fail
    masked = added(tiny(iterations=1), mask_paths=[{"d": circle(60, 60, 45)}])
    assert (torch.hypot(masked[:, 0] - 60, masked[:, 1] - 60) <= 45 + scale * math.sqrt(2)).all()
    detail = added(tiny(iterations=1, detail_weight=1000), detail_paths=[{"d": circle(60, 60, 15)}])
    reach = 15 + scale * math.sqrt(2)
    inside, before = (torch.hypot(p[:, 0] - 60, p[:, 1] - 60) <= reach for p in (detail, free))
    assert inside.sum() >= 20 > before.sum()


def test_mask_shapes_intersect_a_raster_mask(tiny_env: TinyModels, tmp_path: Path) -> None:
    image = photo(tmp_path)
    raster = tmp_path / "mask.png"
    Image.fromarray(np.where(np.arange(W)[None].repeat(H, 0) >= W // 2, 255, 0).astype(np.uint8)).save(raster)
    with pytest.raises(MaskError, match="and the mask shapes have no pixel in common; make them overlap"):
        sketch(image, tiny(), mask=raster, mask_paths=[Shape(circle(60, 60, 30))])


def test_full_cover_and_bad_shapes_through_the_api(
    tiny_env: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = photo(tmp_path)
    statuses: list[tuple[str, str]] = []
    sketch(
        image,
        tiny(iterations=1, strokes=2),
        mask_paths=[Shape(f"M -5 -5 H {W + 5} V {H + 5} H -5 Z")],
        detail_paths=[Shape(circle(60, 60, 20))],
        on_status=lambda stage, message: statuses.append((stage, message)),
    )
    assert (
        "shapes",
        "The mask shapes cover the whole image, so they change nothing (the same as no mask).",
    ) in statuses
    loaded: list[str] = []

    def load(*_args: object) -> None:
        loaded.append("loss")

    monkeypatch.setattr(api, "loss_network", load)
    with pytest.raises(ShapeMaskError, match="lies entirely outside the 240×120 image"):
        sketch(image, tiny(), detail_paths=[Shape(circle(1000, 60, 20))])
    assert loaded == []  # refused before any model loads


# --- the protocol ------------------------------------------------------------------------------------------------


def test_shapes_through_clipasso_serve(tiny_env: TinyModels, tmp_path: Path) -> None:
    from test_serve import Engine, _env, _request

    image = photo(tmp_path)
    request = _request(
        image,
        {"strokes": 4, "seeds": 1, "augmentations": 1, "iterations": 2, "detail_weight": 8},
        mask_paths=[{"d": circle(60, 60, 45), "fill_rule": "evenodd"}],
        detail_paths=[{"d": f"M -1 -1 H {W + 1} V {H + 1} H -1 Z"}],
    )
    engine = Engine(request, _env(), tmp_path / "engine.log")
    try:
        messages = engine.until("result")
        covered = "The detail shapes cover the whole image, so they change nothing (the same as no detail)."
        assert {"type": "status", "stage": "shapes", "message": covered}.items() <= next(
            m for m in messages if m.get("stage") == "shapes"
        ).items()
        assert messages[0]["settings"]["detail_weight"] == 8
        strokes = np.asarray(messages[-1]["strokes"])
        assert strokes.shape == (4, 4, 2)
        bad = Engine(
            _request(image, {}, mask_paths=[{"d": "M 0 0 L 5 5 Z", "fill_rule": "winding"}]),
            _env(),
            tmp_path / "bad.log",
        )
        try:
            reply = bad.next()
            assert reply is not None and reply["type"] == "error" and reply["code"] == "bad_shapes"
            assert reply["message"] == '"mask_paths" item 1 has fill_rule \'winding\'; use "nonzero" or "evenodd".'
        finally:
            bad.close()
    finally:
        engine.close()


def test_a_refine_with_mask_shapes_through_clipasso_serve(tiny_env: TinyModels, tmp_path: Path) -> None:
    """serve takes init_strokes, locked and add together with mask_paths in two regions (a nested clip): the
    locked stroke comes back as sent, and the added strokes start inside the lens the two regions leave."""
    from test_serve import Engine, _env, _request

    given = [[[150.0, 20.0], [155.0, 30.0], [160.0, 40.0], [165.0, 50.0]]]
    regions = [{"d": circle(60, 60, 45)}, {"d": circle(90, 60, 45), "region": 1}]
    settings = {"iterations": 1, "augmentations": 1}
    request = _request(photo(tmp_path), settings, init_strokes=given, locked=[0], add=6, mask_paths=regions)
    engine = Engine(request, _env(), tmp_path / "engine.log")
    try:
        strokes = np.asarray(engine.until("result")[-1]["strokes"])
    finally:
        engine.close()
    assert strokes.shape == (7, 4, 2) and strokes[0].tolist() == given[0]
    # One step of the optimiser moves a point by about a canvas pixel (240/224 image px): a margin of 3 px.
    first = strokes[1:, 0]
    assert (np.hypot(first[:, 0] - 60, first[:, 1] - 60) <= 48).all()
    assert (np.hypot(first[:, 0] - 90, first[:, 1] - 60) <= 48).all()


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        ({"mask_paths": "M 0 0"}, "bad_shapes", "must be a list"),
        ({"detail_paths": [{"d": None}]}, "bad_shapes", 'needs "d"'),
        ({"mask_paths": [{"d": "M 0 0 L nan 1"}]}, "bad_paths", "The mask shape 1 of 1: The path data"),
    ],
)
def test_bad_protocol_shapes_are_answered_before_anything_loads(
    extra: dict[str, object], code: str, words: str
) -> None:
    from clipasso_engine.errors import ClipassoError
    from clipasso_engine.serve import parse_request

    with pytest.raises(ClipassoError) as caught:
        parse_request(json.dumps({"protocol": 1, "type": "sketch", "image": "x.png", **extra}))
    assert caught.value.code == code and words in str(caught.value)


# --- the CLI -----------------------------------------------------------------------------------------------------


def test_cli_mask_svg_and_detail_svg(tiny_env: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clipasso_engine.cli import main

    image = photo(tmp_path)
    shapes = tmp_path / "mask.svg"
    shapes.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}">'
        '<g transform="translate(60 60)"><circle r="45"/></g></svg>'
    )
    run = ["sketch", str(image), "-q", "--strokes", "4", "--seeds", "1", "--iterations", "2", "--augmentations", "1"]
    out = tmp_path / "out.svg"
    assert (
        main([*run, "-o", str(out), "--mask-svg", str(shapes), "--detail-svg", str(shapes), "--detail-weight", "9"])
        == 0
    )
    assert 'detail_weight":9.0' in out.read_text()  # stamped in the provenance
    bad = tmp_path / "bad.svg"
    bad.write_text('<svg xmlns="http://www.w3.org/2000/svg"><path d="M 0 0 L 5 oops"/></svg>')
    capsys.readouterr()
    assert main([*run, "-o", str(tmp_path / "no.svg"), "--mask-svg", str(bad)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "The mask shape 1 of 1: The path data 'M 0 0 L 5 oops' cannot be read" in error[0]
    assert not (tmp_path / "no.svg").exists()
    assert main([*run, "-o", str(tmp_path / "no.svg"), "--detail-weight", "nan"]) == 2
    assert "detail_weight must be a finite number" in capsys.readouterr().err

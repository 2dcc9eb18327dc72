"""SVG output: structure, numbers, provenance, placement over the photo, and no NaN or Infinity ever."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch
from lxml import etree
from PIL import Image

from clipasso_engine.errors import OutputError
from clipasso_engine.image_io import prepare_image
from clipasso_engine.svg import strokes_to_svg
from clipasso_engine.version import __version__

SVG_NS = "{http://www.w3.org/2000/svg}"
NUMBER = r"-?\d+\.\d{3}"
PATH_D = re.compile(rf"M ({NUMBER}) ({NUMBER}) C ({NUMBER}) ({NUMBER}) ({NUMBER}) ({NUMBER}) ({NUMBER}) ({NUMBER})")
METADATA = {"engine_version": "9.9.9", "seed": 1000, "loss": 0.7712, "settings": {"strokes": 3, "preset": "fast"}}


@pytest.fixture
def strokes() -> torch.Tensor:
    return torch.tensor(
        [
            [[10.0, 20.0], [30.25, 40.5], [50.125, 60.0625], [70.0, 80.0]],
            [[0.0004, -0.0004], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
            [[-12.3456, 7.0], [8.0, 9.0], [10.0, 11.0], [12.0, 1999.99949]],
        ],
        dtype=torch.float64,
    )


def _parse(text: str) -> etree._Element:
    return etree.fromstring(text.encode("utf-8"))


def test_structure_is_what_the_issue_asks(strokes: torch.Tensor) -> None:
    text = strokes_to_svg(strokes, 4.1, (640, 480), METADATA)
    root = _parse(text)
    assert root.tag == f"{SVG_NS}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("640px", "480px", "0 0 640 480")
    groups = root.findall(f"{SVG_NS}g")
    assert len(groups) == 1 and groups[0].get("id") == "clipasso-sketch"
    paths = groups[0].findall(f"{SVG_NS}path")
    assert len(paths) == 3 and root.findall(f".//{SVG_NS}path") == paths
    for i, path in enumerate(paths):
        assert path.get("id") == f"clipasso-stroke-{i}"
        assert path.get("fill") == "none" and path.get("stroke") == "#000000"
        assert path.get("stroke-linecap") == "round" and path.get("stroke-linejoin") == "round"
        assert path.get("stroke-width") == "4.100"
        match = PATH_D.fullmatch(path.get("d"))
        assert match is not None, path.get("d")
        assert np.allclose([float(v) for v in match.groups()], strokes[i].flatten().numpy(), atol=5e-4)


def test_numbers_have_three_decimals_and_no_negative_zero(strokes: torch.Tensor) -> None:
    paths = _parse(strokes_to_svg(strokes, 3, (100, 100))).findall(f".//{SVG_NS}path")
    assert paths[0].get("d") == "M 10.000 20.000 C 30.250 40.500 50.125 60.062 70.000 80.000"
    assert paths[1].get("d").startswith("M 0.000 0.000 C")
    assert paths[2].get("d") == "M -12.346 7.000 C 8.000 9.000 10.000 11.000 12.000 1999.999"


def test_provenance_is_in_the_file(strokes: torch.Tensor) -> None:
    text = strokes_to_svg(strokes, 3, (64, 48), {**METADATA, "note": "a <b> & 'c' --"})
    assert f"<!-- Generator: clipasso-engine {__version__} -->" in text
    metadata = _parse(text).find(f"{SVG_NS}metadata")
    assert metadata is not None and metadata.get("id") == "clipasso-provenance"
    assert json.loads(metadata.text) == {**METADATA, "note": "a <b> & 'c' --"}
    bare = _parse(strokes_to_svg(strokes, 3, (64, 48))).find(f"{SVG_NS}metadata")
    assert json.loads(bare.text) == {"engine_version": __version__}  # the version is stamped even without metadata


def test_same_input_gives_same_bytes_from_any_container(strokes: torch.Tensor) -> None:
    settings_a = {"seed": 0, "settings": {"b": 1, "a": [1, 2]}}
    settings_b = {"settings": {"a": [1, 2], "b": 1}, "seed": 0}  # same content, other key order
    from_tensor = strokes_to_svg(strokes, 2.5, (300, 200), settings_a)
    assert from_tensor == strokes_to_svg(strokes.double().numpy(), 2.5, (300, 200), settings_b)
    assert from_tensor == strokes_to_svg(strokes.tolist(), 2.5, (300, 200), settings_a)


def test_colour_and_empty_sketch() -> None:
    root = _parse(strokes_to_svg(np.zeros((0, 4, 2)), 1.0, (5, 5), color="#ff0000"))
    assert root.findall(f".//{SVG_NS}path") == []
    path = _parse(strokes_to_svg([[[0, 0], [1, 1], [2, 2], [3, 3]]], 1.0, (5, 5), color="#ff0000")).find(
        f".//{SVG_NS}path"
    )
    assert path.get("stroke") == "#ff0000"


@pytest.mark.parametrize(
    ("strokes", "width", "message"),
    [
        (np.zeros((2, 3, 2)), 1.0, "shape"),
        (np.zeros((1, 4, 2)), 0.0, "width"),
        (np.zeros((1, 4, 2)), -2.0, "width"),
    ],
)
def test_bad_strokes_are_bugs_not_output(strokes: np.ndarray, width: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        strokes_to_svg(strokes, width, (10, 10))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_points_are_refused_naming_the_stroke(value: float) -> None:
    points = np.zeros((3, 4, 2))
    points[2, 1, 0] = value
    with pytest.raises(OutputError, match=rf"^Cannot write the SVG: stroke 2 .* not a finite number \({value}\)"):
        strokes_to_svg(points, 1.0, (10, 10))
    with pytest.raises(OutputError, match="stroke 2"):  # the same from a tensor
        strokes_to_svg(torch.from_numpy(points).float(), 1.0, (10, 10))


@pytest.mark.parametrize("width", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_width_is_refused(width: float) -> None:
    with pytest.raises(OutputError, match=r"^Cannot write the SVG: the stroke width is (-?inf|nan), not a finite"):
        strokes_to_svg(np.zeros((1, 4, 2)), width, (10, 10))


@pytest.mark.parametrize(
    ("metadata", "location"),
    [
        ({"settings": {"lr": float("inf")}}, r"settings\.lr is inf"),
        ({"settings": {"early_stop": float("-inf")}}, r"settings\.early_stop is -inf"),
        ({"settings": {"geometric_weights": [0.0, float("nan")]}}, r"settings\.geometric_weights\[1\] is nan"),
        ({"loss": float("nan")}, "loss is nan"),
        ({"loss": np.float32("inf")}, "loss is inf"),  # not a float subclass: default=str would hide it as "inf"
    ],
)
def test_non_finite_provenance_is_refused(metadata: dict[str, object], location: str) -> None:
    # Python's json writes the non-JSON literals NaN and Infinity, which Inkscape's and every other parser refuse.
    with pytest.raises(OutputError, match=rf"^Cannot write the SVG's provenance: {location}, which JSON cannot hold"):
        strokes_to_svg(np.zeros((1, 4, 2)), 1.0, (10, 10), metadata)


def test_extreme_finite_numbers_are_written_in_full() -> None:
    text = strokes_to_svg([[[1e300, -1e300], [0, 0], [0, 0], [0, 0]]], 1e308, (10, 10), {"lr": 1e308})
    assert "NaN" not in text and "Infinity" not in text and "inf" not in text
    path = _parse(text).find(f".//{SVG_NS}path")
    assert float(path.get("stroke-width")) == 1e308 and float(path.get("d").split()[1]) == 1e300
    assert json.loads(_parse(text).find(f"{SVG_NS}metadata").text)["lr"] == 1e308


def test_strokes_sit_on_the_object_they_depict() -> None:
    # A dark box in a wide photo; strokes drawn around the box's canvas outline, mapped back and rendered at the
    # photo's size, must cover the box's outline and nothing far from it.
    import cairosvg  # a test dependency (pyproject); imported here so the other tests run without it

    width, height, box = 400, 150, (250, 40, 330, 110)  # x0, y0, x1, y1
    pixels = np.full((height, width, 3), 255, np.uint8)
    pixels[box[1] : box[3], box[0] : box[2]] = 30
    prepared = prepare_image(Image.fromarray(pixels))
    dark = (prepared.image.mean(0) < 0.5).nonzero()
    (top, left), (bottom, right) = dark.min(0).values.tolist(), (dark.max(0).values + 1).tolist()
    corners = [(left, top), (right, top), (right, bottom), (left, bottom)]
    canvas_strokes = torch.tensor(
        [
            [
                list(a),
                [(2 * a[0] + b[0]) / 3, (2 * a[1] + b[1]) / 3],
                [(a[0] + 2 * b[0]) / 3, (a[1] + 2 * b[1]) / 3],
                list(b),
            ]
            for a, b in zip(corners, corners[1:] + corners[:1], strict=True)
        ],
        dtype=torch.float64,
    )
    image_strokes = prepared.canvas_to_image(canvas_strokes)
    text = strokes_to_svg(image_strokes, 3.0, prepared.image_size)
    png = cairosvg.svg2png(bytestring=text.encode(), output_width=width, output_height=height, background_color="white")
    ink = np.asarray(Image.open(io.BytesIO(png)).convert("L")) < 128
    ys, xs = ink.nonzero()
    tolerance = 2 * prepared.scale  # one canvas pixel of detection slack on each side, plus the stroke
    assert abs(xs.min() - box[0]) <= tolerance and abs(xs.max() + 1 - box[2]) <= tolerance
    assert abs(ys.min() - box[1]) <= tolerance and abs(ys.max() + 1 - box[3]) <= tolerance
    assert ink[box[1] + 20 : box[3] - 20, box[0] + 20 : box[2] - 20].sum() == 0  # outline only, interior clear


LADDER = [{"strokes": 1, "loss": 2.5}, {"strokes": 3, "loss": 1.25}]


def test_a_ladder_is_one_group_per_level_holding_the_strokes_it_adds(strokes: torch.Tensor) -> None:
    text = strokes_to_svg(strokes, 3, (100, 100), importance=[0.5, 0.25, -1e-7], rank=[1, 2, 3], ladder=LADDER)
    root = _parse(text)
    (sketch,) = root.findall(f"{SVG_NS}g")
    levels = sketch.findall(f"{SVG_NS}g")
    label = "{http://www.inkscape.org/namespaces/inkscape}label"
    assert [g.get(label) for g in levels] == ["1 strokes", "3 strokes (+2)"]
    assert [g.get("data-clipasso-loss") for g in levels] == ["2.5", "1.25"]
    assert [[p.get("id") for p in g.findall(f"{SVG_NS}path")] for g in levels] == [
        ["clipasso-stroke-0"],
        ["clipasso-stroke-1", "clipasso-stroke-2"],
    ]
    paths = root.findall(f".//{SVG_NS}path")
    assert [p.get("data-clipasso-rank") for p in paths] == ["1", "2", "3"]
    assert [p.get("data-clipasso-importance") for p in paths] == ["0.5", "0.25", "-1e-07"]
    # Without a ladder: one group of paths and no Inkscape namespace, as before.
    plain = strokes_to_svg(strokes, 3, (100, 100), importance=[0.5, 0.25, 0.0], rank=[1, 2, 3])
    assert "inkscape" not in plain and len(_parse(plain).findall(f"{SVG_NS}g/{SVG_NS}path")) == 3


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"importance": [0.5, float("nan"), 0.1]}, OutputError),
        ({"importance": [0.5]}, ValueError),
        ({"rank": [1, 2]}, ValueError),
        ({"ladder": [{"strokes": 2, "loss": 1.0}]}, ValueError),  # the top level must be every stroke
        ({"ladder": [{"strokes": k, "loss": 1.0} for k in (2, 2, 3)]}, ValueError),
        ({"ladder": [{"strokes": 1, "loss": float("inf")}, {"strokes": 3, "loss": 1.0}]}, OutputError),
    ],
)
def test_bad_importance_or_ladder_is_refused(strokes: torch.Tensor, changes: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        strokes_to_svg(strokes, 3, (100, 100), **changes)  # type: ignore[arg-type]

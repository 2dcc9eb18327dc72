"""SVG output (structure, numbers, provenance, placement over the photo) and atomic writes."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from lxml import etree
from PIL import Image

from clipasso_engine import svg as svg_module
from clipasso_engine.errors import OutputError
from clipasso_engine.image_io import prepare_image
from clipasso_engine.svg import strokes_to_svg, write_atomic
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
        (np.full((1, 4, 2), np.nan), 1.0, "finite"),
        (np.zeros((1, 4, 2)), 0.0, "width"),
        (np.zeros((1, 4, 2)), float("inf"), "width"),
    ],
)
def test_bad_strokes_are_bugs_not_output(strokes: np.ndarray, width: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        strokes_to_svg(strokes, width, (10, 10))


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


# --- write_atomic ------------------------------------------------------------------------------------------------


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name not in keep)


def test_writes_text_and_bytes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.svg"
    write_atomic(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    write_atomic(str(target), b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path, {"out.svg"}) == []


def test_new_file_gets_the_usual_mode_and_an_old_file_keeps_its_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new.svg", "x")
        assert stat.S_IMODE((tmp_path / "new.svg").stat().st_mode) == 0o644  # not mkstemp's private 0600
        old = tmp_path / "old.svg"
        old.write_text("old")
        old.chmod(0o640)
        write_atomic(old, "new")
        assert stat.S_IMODE(old.stat().st_mode) == 0o640
    finally:
        os.umask(umask)


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_failure_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    target = tmp_path / "out.svg"
    target.write_text("precious")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "write":
        monkeypatch.setattr(svg_module.os, "fdopen", lambda fd, mode: _FailingFile(fd))
    else:
        monkeypatch.setattr(svg_module.os, failing, boom)
    with pytest.raises(OutputError, match=r"Cannot write .*out\.svg: the disk is full") as caught:
        write_atomic(target, "new content")
    assert str(caught.value).count(". ") == 0 and str(caught.value).endswith(".")
    assert target.read_text() == "precious"
    assert _leftovers(tmp_path, {"out.svg"}) == []


class _FailingFile(io.FileIO):
    """A real file object on the temp file's descriptor whose write fails halfway, like a full disk."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd, "wb")

    def write(self, data: object) -> int:
        super().write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")


def test_interrupt_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.svg"
    target.write_text("precious")

    def interrupt(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(svg_module.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is not turned into an OutputError
        write_atomic(target, "new content")
    assert target.read_text() == "precious"
    assert _leftovers(tmp_path, {"out.svg"}) == []


def test_missing_folder_and_folder_target(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"the folder .*nowhere does not exist"):
        write_atomic(tmp_path / "nowhere" / "out.svg", "x")
    with pytest.raises(OutputError, match="it is a folder"):
        write_atomic(tmp_path, "x")
    assert not (tmp_path / "nowhere").exists()


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, which ignores folder permissions, so the refusal is simulated where it would occur.
    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(svg_module.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match="permission denied"):
        write_atomic(tmp_path / "out.svg", "x")
    assert not (tmp_path / "out.svg").exists()

"""The extension script against the fake engine replaying recorded replies: golden files, placement, errors.

Needs neither torch nor Inkscape: inkex (1.4 here; Inkscape's 1.2 is covered by the window tests).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import inkex
import pytest
from clipasso_sketch import Sketch
from conftest import DATA, EXT, FAKE_ENGINE, FakeEngine, alive
from inkex.tester import ComparisonMixin, TestCase
from inkex.tester.inx import InxMixin

PLACEMENT_DOCS = ["plain", "rotated", "nested", "viewbox", "slice", "none", "meet_align", "nosize", "linked"]


class _FakeEngineEnv:
    """unittest-style setup of the fake engine (inkex.tester classes cannot take pytest fixtures)."""

    reply = "basic"

    def setUp(self) -> None:
        super().setUp()
        self._folder = Path(tempfile.mkdtemp(prefix="clipasso-fake-"))
        self.engine = FakeEngine(self._folder)
        self._saved = dict(os.environ)
        os.environ.update(self.engine.env(self.reply), CLIPASSO_NO_WINDOW="1")

    def tearDown(self) -> None:
        os.environ.clear()
        os.environ.update(self._saved)
        assert not [p for p in self.engine.started_pids() if alive(p)], "an engine process outlived the test"
        shutil.rmtree(self._folder)
        super().tearDown()


class TestPlacementGolden(_FakeEngineEnv, ComparisonMixin, TestCase):
    """One golden file per placement case: rotated, scaled, nested layers, viewBox, slice, none, no size, linked."""

    effect_class = Sketch
    compare_file = tuple(f"svg/{name}.svg" for name in PLACEMENT_DOCS)
    comparisons = (("--id=photo",),)


class TestOptionsGolden(_FakeEngineEnv, ComparisonMixin, TestCase):
    """Output options: a new layer, the image hidden, a translucent colour, a thicker width; two images at once."""

    effect_class = Sketch
    compare_file = "svg/plain.svg"
    comparisons = (
        ("--id=photo", "--target=layer", "--keep_image=false"),
        ("--id=photo", "--color=4278190208", "--width=5"),
    )


class TestTwoImagesGolden(_FakeEngineEnv, ComparisonMixin, TestCase):
    effect_class = Sketch
    compare_file = "svg/two.svg"
    comparisons = (("--id=photo", "--id=photo2"),)


class TestInx(InxMixin, TestCase):
    def test_inx_matches_arguments(self) -> None:
        cwd = os.getcwd()
        os.chdir(EXT)  # InxFile loads the script by its relative path, as Inkscape does
        try:
            self.assertInxIsGood("clipasso_sketch.inx")
            self.assertInxSchemaValid("clipasso_sketch.inx")
        finally:
            os.chdir(cwd)

    def test_inx_names_the_parameters_scripts_set(self) -> None:
        inx = inkex.inx.InxFile(str(EXT / "clipasso_sketch.inx"))
        names = {p.name for p in inx.params}
        assert {"strokes", "preset", "iterations", "seeds", "width", "color", "device", "keep_image"} <= names
        assert inx.ident == "org.clipasso.sketch"
        assert inx.xml.find_one("effect").get("implements-custom-gui") == "true"


ENGINE_SENTENCES = (
    "weights_missing",
    "weights_file_missing",
    "bad_image",
    "bad_settings",
    "bad_request",
    "out_of_memory",
    "output_failed",
    "bad_paths",
    "bad_shapes",
)


def engine_message(reply: str) -> str:
    """The ``message`` of the final error line of a recorded reply."""
    last = json.loads((DATA / "replies" / f"{reply}.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert last["type"] == "error" and last["message"]
    return str(last["message"])


def run_sketch(doc: str | Path, *args: str) -> tuple[int, bytes]:
    """Run the extension in-process; the exit status and what it wrote as the new document."""
    out = io.BytesIO()
    path = doc if isinstance(doc, Path) else DATA / "svg" / f"{doc}.svg"
    try:
        Sketch().run([str(path), *args], output=out)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue()
    return 0, out.getvalue()


def document_point(element: inkex.BaseElement, point: tuple[float, float]) -> tuple[float, float]:
    p = element.getparent().composed_transform().apply_to_point(point)
    return p.x, p.y


# Where the image's pixel corners (0, 0) and (64, 48) must land, in the image element's user space.
EXPECTED_CORNERS = {
    "plain": ((10, 20), (138, 116)),
    "rotated": ((10, 0), (74, 48)),
    "nested": ((0, 0), (32, 24)),
    "viewbox": ((37.795, 5), (101.795, 53)),  # x="1cm" is 37.795 user units (CSS pixels)
    "slice": ((10 + 100 - 64 * 100 / 48, 10), (110, 110)),  # xMax: the right edges meet, the left overflows
    "none": ((10, 10), (110, 40)),
    "meet_align": ((0, 0), (64, 48)),  # xMinYMax meet in a 200x48 box: scale 1, left-aligned
    "nosize": ((5, 6), (69, 54)),  # no width/height: the intrinsic size
    "linked": ((10, 20), (138, 116)),
}


def recorded_strokes() -> list[list[list[float]]]:
    """The strokes of the recorded engine result that the fake engine replays (``basic``)."""
    lines = (DATA / "replies" / "basic.jsonl").read_text(encoding="utf-8").splitlines()
    result = json.loads(lines[-1])
    assert result["type"] == "result" and result["image_size"] == [64, 48]
    return result["strokes"]


@pytest.mark.parametrize("name", PLACEMENT_DOCS)
def test_strokes_land_where_the_image_pixels_are(name: str, fake_engine: FakeEngine) -> None:
    """Every control point of every stroke lands where its pixel is drawn (the map the corners define)."""
    status, out = run_sketch(name, "--id=photo")
    assert status == 0
    svg = inkex.load_svg(out).getroot()
    image = svg.getElementById("photo")
    (x0, y0), (x1, y1) = EXPECTED_CORNERS[name]
    to_doc = image.composed_transform()
    for k, stroke in enumerate(recorded_strokes()):
        path = svg.getElementById(f"clipasso-photo-stroke-{k}")
        assert path.getparent().getparent() is image.getparent()
        assert path.getparent().getparent().index(path.getparent()) == image.getparent().index(image) + 1
        got = [c for p in path.path.control_points for c in document_point(path, p)]
        want = [to_doc.apply_to_point((x0 + px * (x1 - x0) / 64, y0 + py * (y1 - y0) / 48)) for px, py in stroke]
        assert got == pytest.approx([c for w in want for c in (w.x, w.y)], abs=2e-3)


def test_layer_output_lands_on_the_same_spot(fake_engine: FakeEngine) -> None:
    _, as_group = run_sketch("nested", "--id=photo")
    _, as_layer = run_sketch("nested", "--id=photo", "--target=layer")
    group_svg, layer_svg = inkex.load_svg(as_group).getroot(), inkex.load_svg(as_layer).getroot()
    layer = layer_svg.getElementById("clipasso-photo")
    assert layer.get("inkscape:groupmode") == "layer"
    assert layer.getparent().get("id") == "layer1"  # beside the sublayer that holds the image
    for k in range(3):
        a = group_svg.getElementById(f"clipasso-photo-stroke-{k}")
        b = layer_svg.getElementById(f"clipasso-photo-stroke-{k}")
        for pa, pb in zip(a.path.end_points, b.path.end_points, strict=True):
            assert document_point(a, pa) == pytest.approx(document_point(b, pb), abs=1e-3)


def test_request_settings_and_clean_environment(fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/usr/share/inkscape/extensions")
    monkeypatch.setenv("CLIPASSO_LOSS_MODEL", "tiny-rn")
    status, _ = run_sketch("plain", "--id=photo", "--strokes=8", "--iterations=5", "--width=2.5", "--device=cpu")
    assert status == 0
    (request,) = fake_engine.request_log()
    assert request["type"] == "sketch" and request["protocol"] == 1 and request["mask"] is None
    assert request["preview_interval_s"] == 0.0  # no window, no previews
    assert Path(request["image"]).suffix == ".png"
    settings = request["settings"]
    assert settings == {
        "preset": "auto",
        "strokes": 8,
        "seed": 0,
        "device": "cpu",
        "iterations": 5,
        "width_fraction": 0.025,
    }
    (environment,) = fake_engine.environment_log()
    assert "PYTHONPATH" not in environment and environment["CLIPASSO_LOSS_MODEL"] == "tiny-rn"
    assert not Path(request["image"]).exists()  # the decoded copy is cleaned up


def test_running_twice_gives_unique_ids_and_provenance(fake_engine: FakeEngine, tmp_path: Path) -> None:
    _, once = run_sketch("plain", "--id=photo")
    first = tmp_path / "once.svg"
    first.write_bytes(once)
    _, twice = run_sketch(first, "--id=photo", "--seed=7")
    svg = inkex.load_svg(twice).getroot()
    assert svg.getElementById("clipasso-photo") is not None
    second = svg.getElementById("clipasso-photo-2")
    assert second is not None and svg.getElementById("clipasso-photo-2-stroke-2") is not None
    assert second.get("data-clipasso-version") == "0.1.0"
    assert second.get("data-clipasso-seed") == "0"  # the engine's reply, not our request, is the provenance
    assert '"strokes": 3' in second.get("data-clipasso-settings")
    ids = [el.get("id") for el in svg.iter() if el.get("id")]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("doc", "args", "reply", "expected"),
    [
        ("plain", [], "basic", "No image is selected; click a raster image"),
        # A rect selected with the image is a mask shape now (issue 13); this one lies beside the image.
        ("two", ["--id=photo", "--id=rect1"], "basic", "The shape 'rect1' does not overlap the image 'photo'"),
        ("missing", ["--id=photo"], "basic", "linked image file"),
        ("plain", ["--id=photo"], "crash", "stopped unexpectedly (exit status 3); see the log"),
        ("plain", ["--id=photo"], "internal", "failed (internal); see the log"),
        # The engine's own sentence, for every other code (issue 8 item 6): it names the fix, the log does not.
        *(("plain", ["--id=photo"], reply, engine_message(reply)) for reply in ENGINE_SENTENCES),
    ],
)
def test_errors_are_one_sentence_and_leave_the_document(
    doc: str,
    args: list[str],
    reply: str,
    expected: str,
    fake_engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAKE_ENGINE_REPLY", str(DATA / "replies" / f"{reply}.jsonl"))
    status, out = run_sketch(doc, *args)
    captured = capsys.readouterr()
    assert status != 0 and out == b""  # no output: Inkscape keeps the document as it was
    assert expected in captured.err
    assert captured.err.strip().count("\n") == 0 and "Traceback" not in captured.err
    if reply == "crash":
        assert "Traceback: boom" in fake_engine.log.read_text()  # the engine's stderr went to the log
        assert str(fake_engine.log) in captured.err


@pytest.mark.parametrize("engine", ["missing", "no_module"])
def test_engine_not_installed(
    engine: str, fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    python = fake_engine.folder / "python"
    if engine == "no_module":  # an interpreter without the engine package: Python's own complaint
        python.write_text(f'#!/bin/sh\nexec {shutil.which("python3")} -I -S "$@"\n')  # -S: no site-packages
        python.chmod(0o755)
    monkeypatch.setenv("CLIPASSO_ENGINE_PYTHON", str(python))
    status, out = run_sketch("plain", "--id=photo")
    err = capsys.readouterr().err
    assert status != 0 and out == b""
    assert "not installed; run `python3 install.py` from the CLIPasso folder" in err


def test_installer_record_is_used(fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import clipasso_client

    record = tmp_path / "clipasso_engine.json"
    record.write_text(f'{{"python": "{FAKE_ENGINE}"}}')
    monkeypatch.delenv("CLIPASSO_ENGINE_PYTHON")
    monkeypatch.setattr(clipasso_client, "CONFIG_FILE", str(record))
    status, out = run_sketch("plain", "--id=photo")
    assert status == 0 and b"clipasso-photo-stroke-2" in out


def test_success_writes_nothing_to_stderr(fake_engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run_sketch("two", "--id=photo", "--id=photo2")
    captured = capsys.readouterr()
    assert status == 0 and captured.err == "" and captured.out == ""
    assert out.count(b"<path") == 6


@pytest.mark.parametrize("broken", ["not_executable", "exits", "hangs"])
def test_engine_python_that_does_not_run_names_the_fix(
    broken: str, fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recorded interpreter exists but cannot run (a venv whose base Python was removed): re-run install.py."""
    import clipasso_client

    python = fake_engine.folder / "python"
    body = {"not_executable": "", "exits": "exit 127", "hangs": "exec sleep 60"}[broken]
    python.write_text(f"#!/bin/sh\n{body}\n")
    python.chmod(0o644 if broken == "not_executable" else 0o755)
    monkeypatch.setenv("CLIPASSO_ENGINE_PYTHON", str(python))
    monkeypatch.setattr(clipasso_client, "STARTUP_TIMEOUT_S", 1.0)
    status, out = run_sketch("plain", "--id=photo")
    err = capsys.readouterr().err
    assert status != 0 and out == b""
    assert f"Python {python} " in err and "re-run `python3 install.py` from the CLIPasso folder" in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert not fake_engine.started_pids()


def test_each_run_has_its_own_log(fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs at once must not truncate each other's log: each gets a new file, and old ones are pruned."""
    import clipasso_client

    first = clipasso_client.log_path()
    Path(first).write_text("run one is still writing\n")
    second = clipasso_client.log_path()
    assert second != first and Path(first).read_text() == "run one is still writing\n"
    folder = Path(first).parent
    for k in range(clipasso_client.KEPT_LOGS + 5):
        (folder / f"{clipasso_client.LOG_PREFIX}20000101-0000{k:02d}-1.log").write_text("old")
    clipasso_client.log_path()
    assert len(list(folder.glob(f"{clipasso_client.LOG_PREFIX}*.log"))) == clipasso_client.KEPT_LOGS
    assert Path(first).exists()  # the newest survive

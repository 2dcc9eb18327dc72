"""The ``clipasso`` command end to end with the tiny models: real photos, SVG and JSON output, determinism, the
progress bar on a terminal, every bad input of the issue's point 2, and Ctrl-C / SIGTERM during a run."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from PIL import Image
from skimage import data as skdata
from tiny_models import TinyModels

from clipasso_engine.cli import build_parser, main
from clipasso_engine.cli_settings import settings_from_args
from clipasso_engine.config import SketchSettings

ROOT = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"
TINY_RUN = ["--strokes", "6", "--iterations", "5", "--seeds", "1", "--augmentations", "1"]
SENTINEL = b"an existing file that a failed run must not touch\n"


@pytest.fixture(autouse=True)
def _keep_sigterm() -> Iterator[None]:
    """``main()`` installs a SIGTERM handler for ``sketch``; give pytest its own back."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def _env() -> dict[str, str]:
    """The test's environment (``tiny_env`` has set the model variables) for a subprocess."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "clipasso_engine", *args]


def _photo(tmp_path: Path, name: str, fmt: str = "png") -> Path:
    path = tmp_path / f"{name}.{fmt}"
    Image.fromarray(getattr(skdata, name)()).save(path)
    return path


def _svg_points(text: str) -> tuple[etree._Element, np.ndarray]:
    root = etree.fromstring(text.encode("utf-8"))
    numbers = [[float(v) for v in re.findall(r"-?\d+\.\d+", p.get("d"))] for p in root.iter(f"{SVG}path")]
    return root, np.asarray(numbers).reshape(-1, 4, 2)


def _doc_result_fields() -> set[str]:
    """Field names of the ``result`` example in docs/protocol.md."""
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    example = doc[doc.index('"type": "result"') : doc.index('"svg": "<svg')]
    return set(re.findall(r'"(\w+)":', example)) - {"type"}


@pytest.mark.parametrize(("name", "fmt"), [("chelsea", "jpg"), ("coffee", "png"), ("rocket", "webp")])
def test_real_photos_give_valid_svgs_in_the_image_frame(
    tiny_env: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, fmt: str
) -> None:
    photo = _photo(tmp_path, name, fmt)
    height, width = getattr(skdata, name)().shape[:2]
    out = tmp_path / "out.svg"
    assert main(["sketch", str(photo), "-o", str(out), "-q", "--seed", "5", *TINY_RUN]) == 0
    assert capsys.readouterr() == ("", "")
    root, points = _svg_points(out.read_text(encoding="utf-8"))
    assert root.get("viewBox") == f"0 0 {width} {height}"
    groups = root.findall(f"{SVG}g")
    assert len(groups) == 1 and len(groups[0].findall(f"{SVG}path")) == 6 == len(points)
    # Strokes start on salient pixels of the photo, so inside its frame (not the padded square's).
    starts = points[:, 0]
    assert (starts >= 0).all() and (starts[:, 0] <= width).all() and (starts[:, 1] <= height).all()
    stroke_width = float(groups[0].find(f"{SVG}path").get("stroke-width"))
    assert stroke_width == pytest.approx(3 * max(width, height) / 224, abs=1e-3)
    provenance = json.loads(root.find(f"{SVG}metadata").text)
    assert provenance["seed"] == 5 and provenance["settings"]["strokes"] == 6
    assert provenance["engine_version"] and np.isfinite(provenance["loss"])


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty folder of its own (``tiny_env`` puts its cache folder into ``tmp_path``)."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def test_subprocess_run_writes_svg_and_json_and_says_one_line(tiny_env: TinyModels, work: Path) -> None:
    tmp_path = work
    photo = _photo(tmp_path, "chelsea")
    out, facts = tmp_path / "cat.svg", tmp_path / "cat.json"
    done = subprocess.run(
        _command("sketch", str(photo), "-o", str(out), "--json", str(facts), *TINY_RUN),
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    # Not a tty: no progress bar, no model-loading chatter, only the summary.
    assert re.fullmatch(
        rf"Wrote 6 strokes to {re.escape(str(out))} \(preset fast \(auto: no GPU\), best loss .*\)\.\n", done.stderr
    ), done.stderr
    result = json.loads(facts.read_text(encoding="utf-8"))
    assert _doc_result_fields() <= set(result)
    assert result["image_size"] == [451, 300] and result["iterations_run"] == 5
    _, points = _svg_points(out.read_text(encoding="utf-8"))
    np.testing.assert_allclose(points, np.asarray(result["strokes"]), atol=6e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.json", "cat.svg", "chelsea.png"]


def test_same_seed_same_svg_other_seed_other_strokes(tiny_env: TinyModels, tmp_path: Path) -> None:
    photo = _photo(tmp_path, "coffee")
    outputs = {}
    for label, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        outputs[label] = tmp_path / f"{label}.svg"
        assert main(["sketch", str(photo), "-o", str(outputs[label]), "-q", "--seed", seed, *TINY_RUN]) == 0
    first, again, other = (outputs[k].read_bytes() for k in "abc")
    assert first == again
    assert not np.array_equal(_svg_points(first.decode())[1], _svg_points(other.decode())[1])


def test_width_option_is_in_output_pixels(tiny_env: TinyModels, tmp_path: Path) -> None:
    out = tmp_path / "out.svg"
    assert main(["sketch", str(_photo(tmp_path, "coffee")), "-o", str(out), "-q", "--width", "7.5", *TINY_RUN]) == 0
    assert out.read_text(encoding="utf-8").count('stroke-width="7.500"') == 6


def _bomb(path: Path) -> None:
    """A PNG header claiming 30000×30000 pixels: past Pillow's decompression-bomb limit, no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def _bad_case(case: str, folder: Path) -> tuple[list[str], str]:
    """Arguments (without ``-o``) of a bad run, and a pattern its error sentence must match."""
    good = folder / "good.png"
    Image.fromarray(skdata.coffee()[:60, :80]).save(good)
    bad = folder / "bad.png"
    if case == "missing":
        return [str(bad)], "does not exist"
    if case == "empty":
        bad.write_bytes(b"")
        return [str(bad)], "is empty"
    if case == "truncated":
        bad.write_bytes(good.read_bytes()[:200])
        return [str(bad)], "truncated|damaged"
    if case == "not_an_image":
        bad.write_text("hello, I am text\n", encoding="utf-8")
        return [str(bad)], "not an image"
    if case == "folder":
        return [str(folder)], "is a folder"
    if case == "bomb":
        _bomb(bad)
        return [str(bad)], "decompression bomb"
    if case == "mask_size":
        mask = folder / "mask.png"
        Image.new("L", (81, 60), 255).save(mask)
        return [str(good), "--mask", str(mask)], r"81×60 pixels but the image is 80×60"
    if case == "mask_missing":
        return [str(good), "--mask", str(folder / "nope.png")], "does not exist"
    if case == "json_folder_missing":
        return [str(good), "--json", str(folder / "nope" / "x.json")], "does not exist; create it"
    if case == "bad_setting":
        return [str(good), "--strokes", "0"], "strokes must be a whole number"
    if case == "bad_device":
        return [str(good), "--device", "tpu"], "Unknown device 'tpu'"
    raise AssertionError(case)


BAD_CASES = [
    "missing",
    "empty",
    "truncated",
    "not_an_image",
    "folder",
    "bomb",
    "mask_size",
    "mask_missing",
    "json_folder_missing",
    "bad_setting",
    "bad_device",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_sentence_and_writes_nothing(
    tiny_env: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    args, pattern = _bad_case(case, tmp_path)
    out = tmp_path / "existing.svg"
    out.write_bytes(SENTINEL)
    before = sorted(tmp_path.iterdir())
    status = main(["sketch", *TINY_RUN, *args, "-o", str(out)])  # args last: their options win
    captured = capsys.readouterr()
    assert status != 0 and captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipasso: "), captured.err
    assert re.search(pattern, lines[0]) and lines[0].endswith("."), lines[0]
    assert out.read_bytes() == SENTINEL
    assert sorted(tmp_path.iterdir()) == before


def test_output_in_a_missing_folder_fails_before_the_run(
    tiny_env: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = time.monotonic()
    status = main(
        ["sketch", str(_photo(tmp_path, "coffee")), "-o", str(tmp_path / "no" / "x.svg"), "--iterations", "500"]
    )
    assert status != 0 and time.monotonic() - start < 5
    assert capsys.readouterr().err.startswith("clipasso: Cannot write")


def test_bad_input_in_a_real_process_is_one_line(tiny_env: TinyModels, tmp_path: Path) -> None:
    """The process as a whole (logging, warnings, interpreter) says one sentence: here a decompression bomb."""
    bomb, out = tmp_path / "bomb.png", tmp_path / "out.svg"
    _bomb(bomb)
    out.write_bytes(SENTINEL)
    done = subprocess.run(
        _command("sketch", str(bomb), "-o", str(out)), env=_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("clipasso: "), done.stderr
    assert "Traceback" not in done.stderr and out.read_bytes() == SENTINEL


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_only_on_a_terminal_and_not_with_quiet(
    tiny_env: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet: bool
) -> None:
    terminal = _FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    args = ["sketch", str(_photo(tmp_path, "coffee")), "-o", str(tmp_path / "o.svg"), *TINY_RUN]
    assert main([*args, "-q"] if quiet else args) == 0
    shown = terminal.getvalue()
    if quiet:
        assert shown == ""
    else:
        assert re.search(r"\r[█·]+ 5/5  loss now \d+\.\d{4}  best \d+\.\d{4}  elapsed 0:\d\d  ETA 0:00 ", shown), shown
        assert "Optimising 6 strokes" in shown and shown.rstrip("\n").splitlines()[-1].startswith("Wrote 6 strokes")


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the other side closed
                break
    return seen


def _wait_reading(fd: int, proc: subprocess.Popen[bytes], timeout: float) -> tuple[int | None, bytes]:
    """Wait for ``proc`` while still reading its terminal (a full pty would block its writes); if it has not exited
    by ``timeout``, SIGABRT makes faulthandler (PYTHONFAULTHANDLER) print where every thread is, for the report."""
    seen = b""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        seen += _read_until(fd, b"\0never", timeout=0.2)
    if proc.poll() is None:
        proc.send_signal(signal.SIGABRT)
        seen += _read_until(fd, b"\0never", timeout=3)
        return None, seen
    return proc.returncode, seen + _read_until(fd, b"written.", timeout=5)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_during_a_run_on_a_terminal_writes_nothing(
    tiny_env: TinyModels, work: Path, signum: signal.Signals
) -> None:
    tmp_path = work
    photo, out, facts = _photo(tmp_path, "chelsea"), tmp_path / "out.svg", tmp_path / "out.json"
    out.write_bytes(SENTINEL)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        _command("sketch", str(photo), "-o", str(out), "--json", str(facts), "--iterations", "100000", *TINY_RUN[:2]),
        env={**_env(), "PYTHONFAULTHANDLER": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        # Ctrl-C reaches a program in the foreground. A shell starts background jobs (a CI run under `&`) with
        # SIGINT ignored, and Python, like any Unix program, keeps an ignored SIGINT ignored: undo that here.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(secondary)
    try:
        # A real terminal gets the progress bar: wait for it, then interrupt mid-run.
        shown = _read_until(primary, b"ETA", timeout=60)
        bar = rb"\r[\xe2\x96\x88\xc2\xb7]+ \d+/100000  loss now \d+\.\d{4}  best \d+\.\d{4}  elapsed \d:\d\d  ETA "
        assert re.search(bar, shown), shown
        proc.send_signal(signum)
        status, after = _wait_reading(primary, proc, timeout=20)
        shown += after
        assert status == 130, shown[-3000:].decode(errors="replace")  # None: still running 20 s after the signal
    finally:
        proc.kill()
        proc.wait()
        os.close(primary)
    assert shown.rstrip().endswith(b"clipasso: interrupted; nothing was written."), shown
    assert b"Traceback" not in shown
    assert out.read_bytes() == SENTINEL and not facts.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chelsea.png", "out.svg"]


def test_presets_environment_and_options_stack(tiny_env: TinyModels, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    paper = settings_from_args(parser.parse_args(["sketch", "in.png", "-o", "o.svg", "--preset", "paper"]))
    tiny = tiny_env.settings()
    # paper is exactly the spec's defaults, apart from the models the environment selects.
    assert paper == tiny and paper.preset == "paper"
    # The default is auto: on this CPU-only machine, fast.
    assert settings_from_args(parser.parse_args(["sketch", "in.png", "-o", "o.svg"])).preset == "fast"
    assert (paper.strokes, paper.iterations, paper.seeds, paper.width, paper.device) == (16, 2000, 3, None, "auto")
    fast = settings_from_args(parser.parse_args(["sketch", "in.png", "-o", "o.svg", "--preset", "fast"]))
    assert fast.preset == "fast" and fast.iterations < paper.iterations and fast.loss_model == tiny.loss_model
    mixed = settings_from_args(
        parser.parse_args(["sketch", "i", "-o", "o", "--preset", "fast", "--strokes", "8", "--seed", "9"])
    )
    assert (mixed.strokes, mixed.seed, mixed.iterations) == (8, 9, fast.iterations)
    monkeypatch.setenv("CLIPASSO_LOSS_MODEL", "RN50")
    explicit = settings_from_args(parser.parse_args(["sketch", "i", "-o", "o", "--loss-model", "RN101"]))
    assert explicit.preset == "fast"
    assert explicit.loss_model == "RN101"
    assert settings_from_args(parser.parse_args(["sketch", "i", "-o", "o"])).loss_model == "RN50"
    assert SketchSettings().strokes == paper.strokes


def test_an_explicit_option_equal_to_a_default_beats_the_environment(
    tiny_env: TinyModels, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--loss-weights openai` is the default value, yet explicit: the environment must not replace it later."""
    image = tmp_path / "cat.png"
    Image.fromarray(skdata.chelsea()[::4, ::4]).save(image)
    monkeypatch.setenv("CLIPASSO_LOSS_WEIGHTS", str(tmp_path / "from-the-environment.pt"))
    monkeypatch.setenv("CLIPASSO_LOSS_MODEL", "RN50")
    status = main(["sketch", str(image), "-o", str(tmp_path / "o.svg"), "--loss-model", "RN101",
                   "--loss-weights", "openai", "--iterations", "1", "--seeds", "1"])  # fmt: skip
    err = capsys.readouterr().err
    # Offline (tiny_env sets HF_HUB_OFFLINE), RN101's openai weights are missing: the error names them,
    # not the environment's file or model.
    assert status != 0 and "RN101" in err and "from-the-environment" not in err and "RN50" not in err, err

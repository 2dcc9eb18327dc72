"""The progress window under Xvfb, run by Inkscape's own Python and inkex 1.2: Cancel and "Stop and use current".

Marked ``inkscape``: it needs Inkscape's Python with PyGObject, Xvfb and xdotool, and fails without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import DATA, EXT, FakeEngine

pytestmark = pytest.mark.inkscape
INKSCAPE_PYTHON = "/usr/bin/python3"
INKEX_12 = "/usr/share/inkscape/extensions"


def start(display: str, engine: FakeEngine, reply: str, *args: str) -> subprocess.Popen[bytes]:
    if shutil.which("xdotool") is None or not Path(INKEX_12).is_dir():
        pytest.fail("xdotool or Inkscape's inkex is missing: apt-get install inkscape xdotool gir1.2-gtk-3.0")
    env = {k: v for k, v in os.environ.items() if k != "CLIPASSO_NO_WINDOW"}
    env.update(engine.env(reply), DISPLAY=display, PYTHONPATH=INKEX_12)  # as Inkscape runs it
    return subprocess.Popen(
        [INKSCAPE_PYTHON, str(EXT / "clipasso_sketch.py"), "--id=photo", *args, str(DATA / "svg" / "plain.svg")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=EXT,
    )


def press(display: str, keys: str) -> None:
    """Wait for the window, let a preview arrive, focus it and type ``keys`` (no window manager on Xvfb)."""
    env = dict(os.environ, DISPLAY=display)
    deadline = time.monotonic() + 20
    window = ""
    while not window and time.monotonic() < deadline:
        found = subprocess.run(
            ["xdotool", "search", "--name", "CLIPasso Sketch"], capture_output=True, text=True, env=env
        )
        window = found.stdout.split()[0] if found.stdout.split() else ""
        time.sleep(0.2)
    assert window, "the progress window never appeared"
    time.sleep(1.0)
    subprocess.run(["xdotool", "windowfocus", "--sync", window], check=True, env=env, timeout=10)
    subprocess.run(["xdotool", "key", "--clearmodifiers", keys], check=True, env=env, timeout=10)


@pytest.mark.parametrize("reply", ["hold", "cancel_children"])
def test_cancel_kills_the_engine_and_changes_nothing(reply: str, xserver: str, fake_engine: FakeEngine) -> None:
    proc = start(xserver, fake_engine, reply)
    press(xserver, "alt+c")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == b"" and err == b""  # no document, no dialog: no undo step
    assert len(fake_engine.started_pids()) == (2 if reply == "cancel_children" else 1)
    # (the fake_engine fixture then asserts that the engine and its child are dead)


def test_stop_inserts_the_current_best(xserver: str, fake_engine: FakeEngine) -> None:
    proc = start(xserver, fake_engine, "hold")
    press(xserver, "alt+s")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and err == b""
    preview = next(
        m
        for m in map(json.loads, (DATA / "replies" / "hold.jsonl").read_text().splitlines())
        if m.get("type") == "preview"
    )
    last = len(preview["strokes"]) - 1  # the strokes of the preview the engine had sent
    assert (
        f'id="clipasso-photo-stroke-{last}"'.encode() in out and f"clipasso-photo-stroke-{last + 1}".encode() not in out
    )
    assert b'data-clipasso-stopped-early="true"' in out
    (request,) = fake_engine.request_log()
    assert request["preview_interval_s"] > 0  # the window asks for previews
    # GTK's and the draw callback's errors go to the log: the live preview must have drawn without any.
    log = fake_engine.log.read_text(errors="replace")
    assert "Error" not in log and "No live preview" not in log, log


def test_stop_keeps_the_ladder_so_far(xserver: str, fake_engine: FakeEngine) -> None:
    """Issue 12: "Stop and use current" during a ladder run inserts the current best strokes as the ladder's levels;
    the live preview drew them level by level (no error in the log)."""
    proc = start(xserver, fake_engine, "ladder_hold", "--strokes=6", "--ladder=2,4")
    press(xserver, "alt+s")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and err == b""
    assert b'data-clipasso-stopped-early="true"' in out
    for label in ("2 strokes", "4 strokes (+2)", "6 strokes (+2)"):
        assert f'inkscape:label="{label}"'.encode() in out
    (request,) = fake_engine.request_log()
    assert request["settings"]["ladder"] == [2, 4]
    log = fake_engine.log.read_text(errors="replace")
    assert "Error" not in log and "No live preview" not in log, log


def test_stop_before_any_strokes_changes_nothing(xserver: str, fake_engine: FakeEngine) -> None:
    proc = start(xserver, fake_engine, "hold_before_strokes")
    press(xserver, "alt+s")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == b"" and err == b""


def test_preview_follows_exif_orientation(tmp_path: Path, xserver: str) -> None:
    """A camera JPEG stored sideways (EXIF Orientation 6: turn 90° clockwise) is previewed upright, like the
    engine's pixel frame, so the strokes lie over the photo as they will in the document."""
    from PIL import Image

    stored = Image.new("RGB", (64, 48), (255, 255, 255))
    stored.paste((255, 0, 0), (0, 0, 16, 16))  # red in the stored top-left: the top-right once upright
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "camera.jpg"
    stored.save(photo, exif=exif.tobytes(), quality=95)
    probe = (
        "import sys, clipasso_progress as p\n"
        "assert p.available(sys.argv[1])\n"
        "pb = p.preview_pixbuf(sys.argv[2])\n"
        "px = pb.get_pixels(); n, stride = pb.get_n_channels(), pb.get_rowstride()\n"
        "w, h = pb.get_width(), pb.get_height()\n"
        "at = lambda x, y: tuple(px[y * stride + x * n : y * stride + x * n + 3])\n"
        "print(w, h, *at(w - 5, 5), *at(5, 5))\n"
    )
    env = dict(os.environ, DISPLAY=xserver, PYTHONPATH=f"{INKEX_12}:{EXT}")
    done = subprocess.run(
        [INKSCAPE_PYTHON, "-c", probe, str(tmp_path / "log.txt"), str(photo)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    width, height, *colours = (int(v) for v in done.stdout.split())
    assert (width, height) == (240, 320)  # upright: portrait, scaled to fit 320
    top_right, top_left = colours[:3], colours[3:]
    assert top_right[0] > 200 and top_right[1] < 60 and top_left == pytest.approx([255, 255, 255], abs=30)

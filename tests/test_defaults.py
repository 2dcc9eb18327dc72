"""Defaults live in config.py; the only other copies (the .inx, pyproject's version) are kept in step here."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from clipasso_engine.api import CANVAS_STROKE_WIDTH
from clipasso_engine.config import AUTO_PRESET, CANVAS, PRESET_CHOICES, SketchSettings, choose_preset, preset_settings
from clipasso_engine.version import __version__

ROOT = Path(__file__).resolve().parent.parent
NS = {"ink": "http://www.inkscape.org/namespace/inkscape/extension"}


def inx_params() -> dict[str, ET.Element]:
    tree = ET.parse(ROOT / "inkscape_ext" / "clipasso_sketch.inx")
    return {p.get("name", ""): p for p in tree.getroot().iter(f"{{{NS['ink']}}}param")}


def test_inx_defaults_match_the_engine() -> None:
    params = inx_params()
    assert int(params["strokes"].text or "") == SketchSettings().strokes
    # Width is a percentage of the image's longer side: the paper's 3 px on the 224 canvas.
    assert float(params["width"].text or "") == round(100 * CANVAS_STROKE_WIDTH / CANVAS, 2)
    options = {o.get("value"): (o.text or "") for o in params["preset"].iter(f"{{{NS['ink']}}}option")}
    assert set(options) == set(PRESET_CHOICES)
    # Auto is the default (an optiongroup's first option), as on the command line, and says what it picks.
    assert next(iter(options)) == AUTO_PRESET
    gpu, cpu = choose_preset(AUTO_PRESET, "cuda"), choose_preset(AUTO_PRESET, "cpu")
    assert (
        f"{gpu.capitalize()} on a GPU" in options[AUTO_PRESET]
        and f"{cpu.capitalize()} on a CPU" in options[AUTO_PRESET]
    )
    for name, label in options.items():
        if name == AUTO_PRESET:
            continue
        settings = preset_settings(name)
        runs = "1 run" if settings.seeds == 1 else f"best of {settings.seeds} runs"
        assert f"{settings.iterations} iterations" in label and runs in label, (name, label)


def test_inx_ladder_and_refine_defaults_match_the_engine() -> None:
    """No ladder and nothing added unless asked, as on the command line; the ladder text is what the engine reads."""
    params = inx_params()
    assert params["ladder"].get("type") == "string"
    levels = tuple(int(t) for t in (params["ladder"].text or "").replace(",", " ").split())
    assert levels == SketchSettings().ladder == ()
    assert int(params["add"].text or "") == 0 and params["add"].get("min") == "0"
    # The ladder sits next to the stroke count, and its largest level can reach the stroke count's maximum.
    names = list(params)
    assert names.index("ladder") == names.index("strokes") + 1
    assert int(params["strokes"].get("max") or 0) <= 4096 and int(params["add"].get("max") or 0) <= 4096
    modes = [o.get("value") for o in params["mode"].iter(f"{{{NS['ink']}}}option")]
    assert modes == ["sketch", "refine"]  # a new sketch is the default


def test_version_is_stamped_from_one_place() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^version = "([^"]+)"$', pyproject, re.MULTILINE).group(1) == __version__  # type: ignore[union-attr]
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)

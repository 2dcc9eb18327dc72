"""Edit, then refine (issue 14, engine side): reading --init SVGs, locked strokes as constants, added strokes where
coverage is low, provenance, every bad input (one sentence, exit 2), and the protocol fields."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from test_serve import Engine
from tiny_models import TinyModels

from clipasso_engine import api, init_svg
from clipasso_engine.api import sketch
from clipasso_engine.augment import draw_augmentations
from clipasso_engine.cli import main
from clipasso_engine.config import SketchSettings
from clipasso_engine.errors import InitStrokesError
from clipasso_engine.init_svg import parse_transform, read_init_file, read_init_svg
from clipasso_engine.loss_network import load_loss_network
from clipasso_engine.optimize import optimise_strokes, sketch_images
from clipasso_engine.refine import RefinePlan, parse_lock_list, plan_from_options, plan_refine
from clipasso_engine.serve import parse_request
from clipasso_engine.strokes import initial_strokes, uncovered_probabilities
from clipasso_engine.svg import strokes_to_svg

ROOT = Path(__file__).resolve().parents[1]
W, H = 320, 160
DISK_A, DISK_B = (80, 80, 34), (240, 80, 34)  # centre x, centre y, radius (image px)
TINY = ["--iterations", "4", "--augmentations", "1", "--preset", "fast"]


def _tiny(**changes: Any) -> SketchSettings:
    base: dict[str, Any] = {"strokes": 6, "iterations": 8, "seeds": 1, "augmentations": 1, "early_stop_delta": 0.0}
    return SketchSettings(**{**base, **changes})


def _two_disks() -> Image.Image:
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.full((H, W, 3), 255, np.uint8)
    for cx, cy, r in (DISK_A, DISK_B):
        rgb[(xx - cx) ** 2 + (yy - cy) ** 2 <= r**2] = 20
    return Image.fromarray(rgb)


def _ring(disk: tuple[int, int, int], count: int) -> list[list[list[float]]]:
    """``count`` strokes tracing the disk's outline (image px)."""
    cx, cy, r = disk
    strokes = []
    for i in range(count):
        angles = [2 * math.pi * (i + t / 3) / count for t in range(4)]
        strokes.append([[cx + r * math.cos(a), cy + r * math.sin(a)] for a in angles])
    return strokes


def _hatch(disk: tuple[int, int, int], spacing: float = 8.0) -> list[list[list[float]]]:
    """Straight strokes across the disk every ``spacing`` image px, a little beyond it: the disk is covered."""
    cx, cy, r = disk
    reach = r + spacing
    rows = np.arange(cy - reach, cy + reach + 0.1, spacing)
    return [[[cx - reach + 2 * reach * t / 3, float(y)] for t in range(4)] for y in rows]


def _bits(strokes: object) -> bytes:
    return np.asarray(strokes, dtype=np.float64).tobytes()


# --- the optimiser's locked strokes ---------------------------------------------------------------------------


def test_optimiser_keeps_locked_strokes_bit_identical_and_moves_the_others(tiny_models: TinyModels) -> None:
    """Without the restore in optimise_strokes, Adam moves every stroke (the locked ones by about lr per step)."""
    network = load_loss_network(tiny_models.settings(), torch.device("cpu"))
    generator = torch.Generator().manual_seed(3)
    initial = (40 + 144 * torch.rand(1, 5, 4, 2, generator=generator)).float()
    target = sketch_images(initial + 15, 3.0)[0].detach()
    settings = SketchSettings(iterations=6, seeds=1, augmentations=1, eval_every=1, early_stop_delta=0.0)
    plan = draw_augmentations(0, settings.iterations, settings.augmentations)
    locked = torch.tensor([True, False, False, True, False])
    result = optimise_strokes(initial, target, network, settings, plan, width=3.0, locked=locked)
    assert torch.equal(result.points[locked], initial[0][locked])
    moved = (result.points[~locked] - initial[0][~locked]).abs().amax(dim=(1, 2))
    assert (moved > 0.5).all(), moved


# --- the refine through sketch() ------------------------------------------------------------------------------


def test_refine_keeps_locked_strokes_exactly_moves_the_rest_and_lowers_the_loss(tiny_env: TinyModels) -> None:
    image = _two_disks()
    first = sketch(image, _tiny())
    # Numbers that no canvas round trip gives back exactly (1/3 px shifts, a 1e-9 nudge).
    given = [[[x + 1 / 3, y - 1e-9] for x, y in stroke] for stroke in first.strokes]
    result = sketch(image, _tiny(iterations=12, seeds=3, strokes=99), init_strokes=given, locked=[4, 1, 4])
    assert len(result.strokes) == 6
    for index in (1, 4):
        assert _bits(result.strokes[index]) == _bits(given[index])
    for index in (0, 2, 3, 5):
        assert np.abs(np.subtract(result.strokes[index], given[index])).max() > 0.5, index
    refine = result.provenance()["refine"]
    assert {k: v for k, v in refine.items() if k != "start_loss"} == {
        "given": 6,
        "locked": 2,
        "locked_strokes": [1, 4],
        "added": 0,
    }
    assert result.loss < refine["start_loss"], refine  # the first evaluation scores the given strokes
    # One run of as many strokes as given: the settings say so, whatever was asked.
    assert result.settings.seeds == 1 and result.settings.strokes == 6 and result.seed_losses == [result.loss]
    assert "refine" not in first.provenance()  # a new sketch's provenance is unchanged


def test_uncovered_probabilities_move_new_strokes_off_the_covered_region() -> None:
    probabilities = torch.zeros(224, 224)
    probabilities[40:80, 30:70] = 1.0  # region A
    probabilities[40:80, 150:190] = 1.0  # region B, exactly as salient
    probabilities /= probabilities.sum()
    # Five vertical strokes 10 px apart across region A.
    covering = torch.tensor([[[30.0 + 10 * k, y] for y in (40.0, 53.0, 66.0, 80.0)] for k in range(5)])
    weighted = uncovered_probabilities(probabilities, covering, width=3.0)
    assert float(weighted.sum()) == pytest.approx(1.0)
    assert float(weighted[:, :100].sum()) < 0.05 < 0.9 < float(weighted[:, 100:].sum())
    starts = initial_strokes(weighted, 20, seed=0)[:, 0]
    assert (starts[:, 0] >= 140).all(), starts  # every new stroke starts in B
    # Control: without the coverage both regions get strokes.
    plain = initial_strokes(probabilities, 20, seed=0)[:, 0]
    assert (plain[:, 0] < 100).any() and (plain[:, 0] >= 140).any()
    # Everything salient covered (one pixel under three strokes): the map comes back as it was, not as zeros.
    one = torch.zeros(224, 224)
    one[60, 50] = 1.0
    assert torch.equal(uncovered_probabilities(one, covering[1:4], width=3.0), one)


@pytest.mark.parametrize(("covered", "open_disk"), [(DISK_A, DISK_B), (DISK_B, DISK_A)])
def test_added_strokes_start_on_the_salient_disk_the_sketch_leaves_uncovered(
    tiny_env: TinyModels, covered: tuple[int, int, int], open_disk: tuple[int, int, int]
) -> None:
    # One iteration: the kept points are the scored start points, so the added strokes are where they were placed.
    hatching = _hatch(covered)
    result = sketch(_two_disks(), _tiny(iterations=1), init_strokes=hatching, add=5)
    assert len(result.strokes) == len(hatching) + 5 and result.provenance()["refine"]["added"] == 5
    added = np.asarray(result.strokes[len(hatching) :])[:, 0]
    to_open = np.hypot(added[:, 0] - open_disk[0], added[:, 1] - open_disk[1])
    assert (to_open <= open_disk[2] + 8).all(), added


# --- reading --init SVG files ---------------------------------------------------------------------------------


def test_reading_what_clipasso_writes_gives_its_numbers_back(tmp_path: Path) -> None:
    strokes: list[list[list[float]]] = [
        [[1.25, 2.5], [3.0, 4.125], [5.5, 6.0], [7.75, 8.001]],
        [[-3.5, 0.0], [10, 20], [30, 40], [320, 160]],
    ]
    path = tmp_path / "s.svg"
    path.write_text(strokes_to_svg(strokes, 3.0, (W, H), {"seed": 0}), encoding="utf-8")
    assert read_init_svg(path) == strokes


def test_reading_applies_transforms_converts_segments_and_skips_what_is_not_drawn(tmp_path: Path) -> None:
    path = tmp_path / "edited.svg"
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 320 160"><defs><path d="M 0 0 L 9 9"/></defs>'
        '<clipPath id="c"><path d="M 0 0 L 5 5"/></clipPath><!-- a comment -->'
        '<g transform="translate(100, 10)"><path id="a" d="M 0 0 C 1 0 2 0 3 0" transform="scale(2)"/>'
        '<path d="M 0 0 L 30 0 L 30 30 Z"/></g>'
        '<path d="M 10 10 Q 20 0 30 10" transform="rotate(90 10 10)"/><path d=""/><path d="M 5 5"/></svg>',
        encoding="utf-8",
    )
    strokes = np.asarray(read_init_svg(path))
    assert strokes.shape == (1 + 3 + 1, 4, 2)  # one cubic, a closed triangle (3 straight cubics), a quadratic
    assert np.allclose(strokes[0], [[100, 10], [102, 10], [104, 10], [106, 10]])
    assert np.allclose(strokes[1], [[100, 10], [110, 10], [120, 10], [130, 10]])  # a line at its thirds
    assert np.allclose(strokes[3, 3], [100, 10])  # the closing segment
    assert np.allclose(strokes[4, [0, 3]], [[10, 10], [10, 30]])  # rotated 90° about (10, 10)


def test_hidden_paths_are_strokes(tmp_path: Path) -> None:
    """Hiding is how an editor shows a lower ladder level: the hidden strokes are still the sketch's."""
    path = tmp_path / "hidden.svg"
    path.write_text(
        _svg(
            "<g style='display:none'><path d='M 0 0 L 3 3'/></g><path display='none' d='M 1 1 L 4 4'/>"
            "<path style='visibility:hidden' d='M 2 2 L 5 5'/><path opacity='0' d='M 3 3 L 6 6'/>"
        ),
        encoding="utf-8",
    )
    assert [stroke[0] for stroke in read_init_svg(path)] == [[0, 0], [1, 1], [2, 2], [3, 3]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("translate(3)", [[1, 0, 3], [0, 1, 0]]),
        ("scale(2, 3) translate(1 1)", [[2, 0, 2], [0, 3, 3]]),
        ("matrix(1,2,3,4,5,6)", [[1, 3, 5], [2, 4, 6]]),
        ("skewX(45)", [[1, 1, 0], [0, 1, 0]]),
        ("", [[1, 0, 0], [0, 1, 0]]),
    ],
)
def test_transforms(text: str, expected: list[list[float]]) -> None:
    assert np.allclose(parse_transform(text)[:2], expected)


def _svg(body: str) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg">{body}</svg>'


BAD_FILES = {
    "not_xml": ("just text, not XML", "not a well-formed XML"),
    "truncated": ('<svg xmlns="http://www.w3.org/2000/svg"><path d="M 0 0 L 1 1"/>', "not a well-formed XML"),
    "not_svg": ("<html><path d='M 0 0 L 1 1'/></html>", "not an SVG"),
    "no_paths": (_svg("<rect width='5' height='5'/>"), "has no strokes"),
    "only_moves": (_svg("<path d='M 1 1 M 2 2'/>"), "has no strokes"),
    "too_many": (_svg("<path d='M 0 0" + " l 1 1" * 4097 + "'/>"), "more than 4096 strokes"),
    "nan": (_svg("<path d='M 0 0 L nan 1'/>"), "cannot be read"),
    "overflow": (_svg("<path d='M 0 0 L 1e400 1'/>"), "cannot be read"),
    "transform_overflow": (_svg("<g transform='scale(1e300)'><path d='M 0 0 L 1e300 1'/></g>"), "beyond the range"),
    "bad_transform": (_svg("<path transform='turn(3)' d='M 0 0 L 1 1'/>"), "transform"),
    "entities": (
        '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">]><svg xmlns="http://www.w3.org/2000/svg">'
        "<desc>&a;&a;</desc><path d='M 0 0 L 1 1'/></svg>",
        "entities",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_init_files_are_one_sentence(tmp_path: Path, case: str) -> None:
    text, words = BAD_FILES[case]
    path = tmp_path / "bad.svg"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InitStrokesError) as caught:
        read_init_svg(path)
    message = str(caught.value)
    assert words in message and message.endswith(".") and "\n" not in message and len(message) <= 400, message
    assert caught.value.code == "bad_init" and caught.value.exit_status == 2


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.svg"
    path.write_text(_svg("<path d='M 0 0 L 1 1'/>"), encoding="utf-8")
    monkeypatch.setattr(init_svg, "MAX_INIT_BYTES", 20)
    with pytest.raises(InitStrokesError, match="byte limit"):
        read_init_svg(path)


# --- validating locked and add (API and protocol) ------------------------------------------------------------

ONE = [[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]]


@pytest.mark.parametrize(
    ("strokes", "locked", "add", "words"),
    [
        (ONE * 2, [2], None, "does not exist"),
        (ONE * 2, [-1], None, "does not exist"),
        (ONE * 2, [1.0], None, "not a stroke index"),
        (ONE * 2, [True], None, "not a stroke index"),
        (ONE * 2, "0,1", None, "must be a list"),
        (ONE * 2, [0, 1], None, "nothing to optimise"),
        (ONE * 2, [0, 1, 1], 0, "nothing to optimise"),
        (ONE, None, -1, "0 or more"),
        (ONE, None, 2.5, "whole number"),
        (ONE, None, 4096, "more than 4096"),
        (ONE, None, 10**100, "more than 4096"),
        (None, [0], None, "need strokes to refine"),
        (None, None, 3, "need strokes to refine"),
        ([], None, None, "empty list"),
        ("M 0 0 L 1 1", None, None, "must be a list"),
        (ONE * 4097, None, None, "more than 4096"),
        ([[[0, 0], [1, 1], [2, 2]]], None, None, "not 4 control points"),
        ([[[0, 0], [1, 1], [2, 2], [3]]], None, None, "not 4 control points"),
        ([[[0, 0], [1, 1], [2, 2], [3, float("nan")]]], None, None, "not a finite number"),
        ([[[0, 0], [1, 1], [2, 2], [3, float("inf")]]], None, None, "not a finite number"),
        ([[[0, 0], [1, 1], [2, 2], [3, 10**400]]], None, None, "not a finite number"),
        ([[[0, 0], [1, 1], [2, 2], [3, 1e8]]], None, None, "not a finite number"),
        ([[[0, 0], [1, 1], [2, 2], [3, "4"]]], None, None, "not a finite number"),
        ([[[0, 0], [1, 1], [2, 2], [3, None]]], None, None, "not a finite number"),
    ],
)
def test_bad_refine_input_is_one_sentence(strokes: object, locked: object, add: object, words: str) -> None:
    with pytest.raises(InitStrokesError) as caught:
        plan_refine(strokes, locked, add)
    message = str(caught.value)
    assert words in message and message.endswith(".") and len(message) <= 400, message


def test_repeated_lock_indices_count_once_and_nothing_asked_is_no_refine() -> None:
    plan = plan_refine(ONE * 3, [2, 0, 2], 1)
    assert plan is not None and plan.locked == (0, 2) and plan.total == 4
    assert plan_refine(None, [], 0) is None and plan_refine(None) is None


@pytest.mark.parametrize(
    ("text", "expected"), [("0,3", [0, 3]), (" 1 , 2 ", [1, 2]), ("", []), ("-1", [-1]), ("7,7", [7, 7])]
)
def test_lock_lists(text: str, expected: list[int]) -> None:
    assert parse_lock_list(text) == expected


@pytest.mark.parametrize("text", ["a", "1.5", "1,,2", "1;2", "٣", "0x1"])
def test_lock_lists_that_are_not_indices(text: str) -> None:
    with pytest.raises(InitStrokesError, match="not a whole number"):
        parse_lock_list(text)


# --- the CLI --------------------------------------------------------------------------------------------------


def _one_sentence(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipasso: ") and lines[0].endswith("."), err
    return lines[0]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "disks.png"
    _two_disks().save(path)
    return path


def test_round_trip_sketch_edit_the_file_refine(
    tiny_env: TinyModels, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "first.svg"
    assert main(["sketch", str(photo), "-o", str(first), *TINY, "--strokes", "5", "-q"]) == 0
    # The artist's edits: move stroke 1 with a transform, delete stroke 2, draw a new line into the group.
    ET.register_namespace("", "http://www.w3.org/2000/svg")
    tree = ET.parse(first)
    group = tree.getroot().find("{http://www.w3.org/2000/svg}g")
    assert group is not None
    paths = list(group)
    paths[1].set("transform", "translate(7 -4)")
    group.remove(paths[2])
    ET.SubElement(group, "{http://www.w3.org/2000/svg}path", d="M 20 20 L 60 100")
    edited = tmp_path / "edited.svg"
    tree.write(edited)
    before = read_init_svg(edited)
    second = tmp_path / "second.svg"
    status = main(
        ["sketch", str(photo), "-o", str(second), *TINY, "--init", str(edited), "--lock", "0,4", "--add", "2"]
    )
    assert status == 0, capsys.readouterr().err
    assert "refined 5 given, 2 locked, 2 added" in capsys.readouterr().err
    after_text = second.read_text(encoding="utf-8")
    # Locked strokes: the very path data that was given (what clipasso wrote, and the drawn line as a cubic).
    d_first = re.findall(r' d="([^"]+)"', first.read_text(encoding="utf-8"))
    d_second = re.findall(r' d="([^"]+)"', after_text)
    assert len(d_second) == 5 + 2 and d_second[0] == d_first[0]
    assert d_second[4] == "M 20.000 20.000 C 33.333 46.667 46.667 73.333 60.000 100.000"
    after = read_init_svg(second)
    assert np.abs(np.subtract(after[1], before[1])).max() < 6  # the moved stroke starts where it now is
    assert np.abs(np.subtract(before[1], read_init_svg(first)[1])).max() > 3.9
    provenance = json.loads(re.findall(r'<metadata id="clipasso-provenance">([^<]+)<', after_text)[0])
    assert provenance["refine"]["given"] == 5 and provenance["refine"]["locked_strokes"] == [0, 4]


@pytest.fixture
def init(tmp_path: Path) -> Path:
    path = tmp_path / "init.svg"
    path.write_text(strokes_to_svg(ONE * 3, 3.0, (W, H)), encoding="utf-8")
    return path


BAD_OPTIONS = {
    "missing": (["--init", "missing.svg"], "does not exist"),
    "folder": (["--init", "."], "is a folder"),
    "lock_range": (["--init", "{init}", "--lock", "3"], "does not exist"),
    "lock_negative": (["--init", "{init}", "--lock", "-1"], "does not exist"),
    "lock_word": (["--init", "{init}", "--lock", "first"], "not a whole number"),
    "all_locked": (["--init", "{init}", "--lock", "0,1,2"], "nothing to optimise"),
    "add_negative": (["--init", "{init}", "--add", "-2"], "0 or more"),
    "add_huge": (["--init", "{init}", "--add", "5000"], "more than 4096"),
    "lock_alone": (["--lock", "0"], "need strokes to refine"),
    "add_alone": (["--add", "2"], "need strokes to refine"),
    "init_is_output": (["--init", "{out}"], "same file"),
    "init_not_svg": (["--init", "{photo}"], "not a well-formed XML"),
    "strokes_too": (["--init", "{init}", "--strokes", "8"], "--add"),
    "seeds_too": (["--init", "{init}", "--seeds", "3"], "one run"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_refine_options_exit_2_with_one_sentence_and_write_nothing(
    photo: Path, init: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """No tiny_env: a run that got as far as loading models would fail with weights_missing, not exit 2."""
    out = tmp_path / "out.svg"
    if case == "init_is_output":
        out.write_text("the artist's file")
    options, words = BAD_OPTIONS[case]
    filled = [o.format(init=init, out=out, photo=photo) for o in options]
    os.chdir(tmp_path)
    status = main(["sketch", str(photo), "-o", str(out), *filled])
    line = _one_sentence(capsys.readouterr().err)
    assert status == 2 and words in line, line
    assert not out.exists() or out.read_text() == "the artist's file"


def test_a_bad_init_is_found_before_torch_loads(photo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.svg"
    bad.write_text("<svg")
    code = (
        "import sys\nfrom clipasso_engine.cli import main\nstatus = main(sys.argv[1:])\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')\nsys.exit(status)\n"
    )
    args = ["sketch", str(photo), "-o", str(tmp_path / "o.svg"), "--init", str(bad), "--lock", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and done.stdout.strip() == "no torch", (done.stdout, done.stderr)
    _one_sentence(done.stderr)


# --- the protocol ---------------------------------------------------------------------------------------------


def _request(image: Path, **fields: Any) -> str:
    settings = {"strokes": 16, "seeds": 3, "augmentations": 1, "iterations": 6}
    return json.dumps({"protocol": 1, "type": "sketch", "image": str(image), "settings": settings, **fields})


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"locked": [0]}, "need strokes to refine"),
        ({"init_strokes": ONE, "locked": [0]}, "nothing to optimise"),
        ({"init_strokes": ONE, "add": "2"}, "whole number"),
        ({"init_strokes": {"a": 1}}, "must be a list"),
        ({"init_strokes": [[[0, 0], [1, 1], [2, 2], [3, None]]]}, "not a finite number"),
    ],
)
def test_protocol_refine_fields_are_checked_before_the_run(photo: Path, fields: dict[str, Any], words: str) -> None:
    with pytest.raises(InitStrokesError, match=words) as caught:
        parse_request(_request(photo, **fields))
    assert caught.value.code == "bad_init"


def test_protocol_refine_runs_and_says_so(tiny_env: TinyModels, photo: Path, tmp_path: Path) -> None:
    given = [[[x + 0.1, y + 1 / 7] for x, y in stroke] for stroke in _ring(DISK_A, 3)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    engine = Engine(_request(photo, init_strokes=given, locked=[2], add=1), env, tmp_path / "engine.log")
    try:
        messages = engine.until("result")
    finally:
        engine.close()
    result = messages[-1]
    assert len(result["strokes"]) == 4 and result["strokes"][2] == given[2]  # exact through JSON too
    assert result["refine"]["given"] == 3 and result["refine"]["added"] == 1 and result["refine"]["locked"] == 1
    # One run of the given strokes plus the added one, whatever the settings asked, already in "started".
    assert messages[0]["settings"]["strokes"] == 4 and messages[0]["settings"]["seeds"] == 1
    assert result["settings"]["strokes"] == 4 and result["settings"]["seeds"] == 1
    stages = [m["stage"] for m in messages if m["type"] == "status"]
    assert "saliency" in stages  # placing the added stroke needs the map


@pytest.mark.skipif("ladder" not in SketchSettings.__dataclass_fields__, reason="the ladder (issue 12) is not in yet")
def test_a_ladder_applies_to_the_refined_set(tiny_env: TinyModels) -> None:
    given = _ring(DISK_A, 3)
    settings = _tiny(strokes=16, ladder=(2, 4, 8))
    result = sketch(_two_disks(), settings, init_strokes=given, locked=[0], add=2)
    assert result.settings.strokes == 5 and result.settings.ladder == (2, 4, 5)
    assert _bits(result.strokes[0]) == _bits(given[0])  # the given order is kept, so index 0 is still stroke 0


# --- a refine of a ladder sketch (issue 14 item 2: the ladder applies to the refined set) ------------------------

SVG_NS = "{http://www.w3.org/2000/svg}"


def _level(count: int, body: str) -> str:
    return f'<g data-clipasso-strokes="{count}" inkscape:label="{count} strokes">{body}</g>'


def test_the_init_files_levels_are_counted_from_the_strokes_there_now(tmp_path: Path) -> None:
    line = "<path d='M 0 0 L 9 9'/>"
    body = (
        line  # before the first level group: it joins the first level
        + _level(2, line * 2)
        + line  # between level groups: it joins the level before, as the extension reads it
        + _level(4, line)  # was +2, one stroke deleted
        + _level(6, "")  # emptied: no level
        + _level(8, line * 3)
    )
    path = tmp_path / "ladder.svg"
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape">'
        f"<g>{body}</g></svg>",
        encoding="utf-8",
    )
    strokes, levels = read_init_file(path)
    assert len(strokes) == 8 and levels == (4, 5, 8)
    # One level group is one level; no level group, no ladder.
    path.write_text(_svg(line * 3 + _level(3, line)).replace("inkscape:label", "data-x"), encoding="utf-8")
    assert read_init_file(path) == (read_init_svg(path), (4,))
    path.write_text(_svg(line * 3), encoding="utf-8")
    assert read_init_file(path) == (read_init_svg(path), ())


@pytest.mark.parametrize(
    ("file_levels", "add", "asked", "ladder"),
    [
        ((2, 4, 6), 0, (), (2, 4, 6)),  # the file's ladder, recounted
        ((2, 4, 6), 3, (), (2, 4, 6, 9)),  # added strokes are one more level on top
        ((6,), 0, (), ()),  # one level group left: one level
        ((6,), 3, (), (6, 9)),  # ... and a second with added strokes, as the extension does
        ((), 3, (), ()),  # a plain file stays plain
        ((2, 4, 6), 3, (4, 16), (4, 9)),  # a ladder asked for wins, capped at the refined count
        ((), 0, (2, 4, 6), (2, 4, 6)),
        ((), 0, (8, 12), ()),  # every level at or above the count: one level, no ladder
    ],
)
def test_the_refined_sets_ladder(
    file_levels: tuple[int, ...], add: int, asked: tuple[int, ...], ladder: tuple[int, ...]
) -> None:
    plan = RefinePlan(strokes=ONE * 6, locked=(), add=add, levels=file_levels)
    settings = plan.settings(_tiny(strokes=max(asked, default=6), ladder=asked))
    assert settings.ladder == ladder and settings.strokes == 6 + add and settings.seeds == 1
    assert plan.settings(settings) == settings  # the CLI applies it, then sketch() again


def _groups(svg_text: str) -> list[tuple[str | None, str | None, list[str]]]:
    """(label, data-clipasso-strokes, path d's) of each level group of an SVG the engine wrote."""
    root = ET.fromstring(svg_text)
    label = "{http://www.inkscape.org/namespaces/inkscape}label"
    return [
        (g.get(label), g.get("data-clipasso-strokes"), [p.get("d", "") for p in g.iter(SVG_NS + "path")])
        for g in root.iter(SVG_NS + "g")
        if g.get("data-clipasso-strokes") is not None
    ]


@pytest.mark.parametrize(
    ("options", "levels"),
    [
        ([], [2, 3, 5, 7]),  # the file's ladder as edited, the added strokes one level more
        (["--ladder", "1,3,16"], [1, 3, 7]),  # asked for: capped at the new count, which is the top
        (["--ladder"], [4, 7]),  # the default 4, 8, 16, 32, capped the same way
    ],
)
def test_refining_a_ladder_sketch_after_deleting_and_adding_strokes(
    tiny_env: TinyModels, photo: Path, tmp_path: Path, options: list[str], levels: list[int]
) -> None:
    first = tmp_path / "first.svg"
    assert main(["sketch", str(photo), "-o", str(first), *TINY, "--ladder", "2,4,6", "-q"]) == 0
    ET.register_namespace("", "http://www.w3.org/2000/svg")
    ET.register_namespace("inkscape", "http://www.inkscape.org/namespaces/inkscape")
    tree = ET.parse(first)
    level_4 = next(g for g in tree.getroot().iter(SVG_NS + "g") if g.get("data-clipasso-strokes") == "4")
    level_4.remove(level_4[0])  # the artist deletes one of the strokes the 4-stroke level added
    edited = tmp_path / "edited.svg"
    tree.write(edited)
    assert read_init_file(edited)[1] == (2, 3, 5)
    second, facts = tmp_path / "second.svg", tmp_path / "second.json"
    args = ["sketch", str(photo), "-o", str(second), "--json", str(facts), *TINY, "--init", str(edited)]
    assert main([*args, "--lock", "0", "--add", "2", *options, "-q"]) == 0
    groups = _groups(second.read_text(encoding="utf-8"))
    assert [int(count or 0) for _, count, _ in groups] == levels
    blocks = list(zip([0, *levels[:-1]], levels, strict=True))
    assert [label for label, _, _ in groups] == [
        f"{end} strokes" if j == 0 else f"{end} strokes (+{end - start})" for j, (start, end) in enumerate(blocks)
    ]
    result = json.loads(facts.read_text())
    assert [level["strokes"] for level in result["ladder"]] == levels and len(result["strokes"]) == 7
    assert result["settings"]["ladder"] == levels and result["refine"]["locked_strokes"] == [0]
    # The strokes keep the given order: the locked stroke is still the first path, its data as written.
    assert groups[0][2][0] == _groups(first.read_text(encoding="utf-8"))[0][2][0]
    assert result["source_index"] == list(range(7))
    # Importance is ranked within each level's block, as for a new sketch, and given as ranks.
    for start, end in blocks:
        assert sorted(result["rank"][start:end]) == list(range(start + 1, end + 1)), result["rank"]


# --- the refine's width: the --init file's own ------------------------------------------------------------------


def _with_provenance(text: str | None) -> str:
    """An --init SVG of three strokes whose provenance metadata holds ``text`` (None: no metadata, as an editor's)."""
    metadata = "" if text is None else f'<metadata id="clipasso-provenance">{text}</metadata>'
    return _svg(f"<metadata id='rdf'>{{}}</metadata>{metadata}<path d='M 0 0 L 9 9 L 9 0 L 0 5'/>")


BAD_WIDTHS = {
    "no_metadata": None,
    "empty": "",
    "not_json": "width: 5",
    "json_array": '[{"settings": {"width": 5}}]',
    "json_number": "5",
    "settings_missing": '{"seed": 0, "width": 5}',
    "settings_list": '{"settings": [5]}',
    "settings_string": '{"settings": "{\\"width\\": 5}"}',
    "width_string": '{"settings": {"width": "5"}}',
    "width_bool": '{"settings": {"width": true}}',
    "width_list": '{"settings": {"width": [5]}}',
    "width_negative": '{"settings": {"width": -2}}',
    "width_zero": '{"settings": {"width": 0}}',
    "width_nan": '{"settings": {"width": NaN}}',
    "width_infinity": '{"settings": {"width": Infinity}}',
    "width_minus_infinity": '{"settings": {"width": -Infinity}}',
    "width_overflows_to_inf": '{"settings": {"width": 1e999}}',
    "width_over_the_limit": '{"settings": {"width": 10000.5}}',
    "width_int_too_large_for_a_float": '{"settings": {"width": 1' + "0" * 400 + "}}",
    "width_int_over_the_digit_limit": '{"settings": {"width": 1' + "0" * 5000 + "}}",
    "fraction_over_one": '{"settings": {"width_fraction": 1.5}}',
    "fraction_zero": '{"settings": {"width_fraction": 0}}',
    "both_null": '{"settings": {"width": null, "width_fraction": null}}',
    "nested_too_deep": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("case", sorted(BAD_WIDTHS))
def test_an_unusable_recorded_width_is_ignored(tmp_path: Path, case: str) -> None:
    """As the extension does: the strokes are still read, and the refine draws at the default width."""
    path = tmp_path / "init.svg"
    path.write_text(_with_provenance(BAD_WIDTHS[case]), encoding="utf-8")
    sketch_file = init_svg.read_init_sketch(path)
    assert (sketch_file.width, sketch_file.width_fraction) == (None, None)
    assert len(sketch_file.strokes) == 3
    plan = plan_from_options(str(path), None, None, None, None)
    assert plan is not None and plan.settings(_tiny()).width is None and plan.settings(_tiny()).width_fraction is None


@pytest.mark.parametrize(
    ("text", "width", "fraction"),
    [
        ('{"settings": {"width": 5.5, "width_fraction": null}}', 5.5, None),
        ('{"settings": {"width": 4}}', 4.0, None),  # a whole number is a width too
        ('{"settings": {"width": null, "width_fraction": 0.02}}', None, 0.02),
        ('{"settings": {"width": "x", "width_fraction": 0.02}}', None, 0.02),  # the extension's order and checks
        ('{"settings": {"width": 10000}}', 10000.0, None),  # the settings' limit itself
        ("{&quot;settings&quot;: {&quot;width&quot;: 2.5}}", 2.5, None),  # XML-escaped, as svg.py writes it
    ],
)
def test_the_recorded_width_is_read(tmp_path: Path, text: str, width: float | None, fraction: float | None) -> None:
    path = tmp_path / "init.svg"
    path.write_text(_with_provenance(text), encoding="utf-8")
    sketch_file = init_svg.read_init_sketch(path)
    assert (sketch_file.width, sketch_file.width_fraction) == (width, fraction)
    # What clipasso sketch writes reads back the same way.
    recorded = SketchSettings(width=width, width_fraction=fraction).to_dict()
    path.write_text(strokes_to_svg(ONE * 3, 3.0, (W, H), {"settings": recorded}), encoding="utf-8")
    assert init_svg.read_init_sketch(path).width == width and init_svg.read_init_sketch(path).width_fraction == fraction


@pytest.mark.parametrize(
    ("plan_width", "asked", "expected"),
    [
        ({"width": 5.5}, {}, (5.5, None)),  # none given: the file's
        ({"width_fraction": 0.02}, {}, (None, 0.02)),
        ({"width": 5.5}, {"width": 2.0}, (2.0, None)),  # given: it wins
        ({"width": 5.5}, {"width_fraction": 0.01}, (None, 0.01)),
        ({"width_fraction": 0.02}, {"width": 2.0}, (2.0, None)),
        ({}, {}, (None, None)),  # nothing recorded: the default
    ],
)
def test_the_refine_settings_take_the_files_width_unless_one_is_given(
    plan_width: dict[str, float], asked: dict[str, float], expected: tuple[float | None, float | None]
) -> None:
    plan = RefinePlan(strokes=ONE * 3, locked=(), add=0, **plan_width)
    settings = plan.settings(_tiny(**asked))
    assert (settings.width, settings.width_fraction) == expected
    assert plan.settings(settings) == settings  # the CLI applies it, then sketch() again


@pytest.mark.parametrize(
    ("first", "refine", "edit", "expected"),
    [
        (["--width", "5.5"], [], None, 5.5),  # the sketch's width
        (["--width", "5.5"], ["--width", "2"], None, 2.0),  # an explicit --width wins
        ([], [], None, 3 * W / 224),  # drawn at the default: refined at the default
        (["--width", "5.5"], [], ('"width":5.5', '"width":NaN'), 3 * W / 224),  # a hand-made NaN: ignored
    ],
)
def test_a_cli_refine_draws_at_the_width_of_the_init_sketch(
    tiny_env: TinyModels,
    photo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    first: list[str],
    refine: list[str],
    edit: tuple[str, str] | None,
    expected: float,
) -> None:
    """Before the fix a refine drew at the default width (3/224 of the longer side), whatever the sketch's."""
    sketch_path, refined = tmp_path / "first.svg", tmp_path / "refined.svg"
    assert main(["sketch", str(photo), "-o", str(sketch_path), *TINY, "--strokes", "3", *first, "-q"]) == 0
    if edit is not None:
        text = sketch_path.read_text(encoding="utf-8")
        assert edit[0] in text
        sketch_path.write_text(text.replace(edit[0], edit[1]), encoding="utf-8")
    widths: list[float] = []
    real = api.optimise_strokes

    def recording(*args: Any, **kwargs: Any) -> Any:
        widths.append(kwargs["width"])
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "optimise_strokes", recording)
    options = [*TINY, "--init", str(sketch_path), "--add", "1", *refine, "-q"]
    assert main(["sketch", str(photo), "-o", str(refined), *options]) == 0
    assert widths == [pytest.approx(expected * 224 / W)]  # canvas px: the image is W px on its longer side
    text = refined.read_text(encoding="utf-8")
    assert set(re.findall(r'stroke-width="([^"]+)"', text)) == {f"{expected:.3f}"}
    settings = json.loads(re.findall(r'<metadata id="clipasso-provenance">([^<]+)<', text)[0])["settings"]
    assert settings["width"] == (None if not first or edit else expected) and settings["width_fraction"] is None

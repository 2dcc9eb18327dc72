"""Refine the selected sketch (issue 14 item 1): reading an edited sketch group, and writing the result back in place.

``data/svg/edited.svg`` (``data/make_edited.py``) is a ladder sketch after moves, a reshape, a deletion, a lock,
recolouring, a drawn path and a polyline, inside a group moved off the image; ``replies/refine.jsonl`` is the real
engine's reply (tiny models) to the very request the extension sends for it with one added stroke.
"""

from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path
from typing import Any

import inkex
import pytest
from clipasso_refine import read_sketch, refine_request
from clipasso_sketch import Sketch
from conftest import DATA, FakeEngine, FakeEngineCase
from inkex.tester import ComparisonMixin, TestCase
from lxml import etree
from PIL import Image
from test_sketch import PLACEMENT_DOCS, recorded_strokes, run_sketch

EDITED = DATA / "svg" / "edited.svg"
REFINE = ("--mode=refine", "--id=clipasso-photo", "--add=1")


def load(path: Path | bytes = EDITED) -> inkex.SvgDocumentElement:
    return inkex.load_svg(str(path) if isinstance(path, Path) else path).getroot()


def reply(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / "replies" / f"{name}.jsonl").read_text().splitlines()]


def flat(value: Any) -> list[float]:
    """Every number in a nested list, in order (pytest.approx compares flat sequences only)."""
    return [v for item in value for v in flat(item)] if isinstance(value, list) else [value]


def ladder_strokes() -> list[Any]:
    return reply("ladder")[-1]["strokes"]


class TestRefineGolden(FakeEngineCase, ComparisonMixin, TestCase):
    """The edited sketch refined with one added stroke: written back in place (golden file)."""

    effect_class = Sketch
    compare_file = "svg/edited.svg"
    comparisons = (REFINE,)
    reply = "refine"


# ---- a ladder sketch with edited levels, hidden strokes (data/svg/edited_levels.svg) -----------------------------

LEVELS = DATA / "svg" / "edited_levels.svg"
REFINE_LEVELS = ("--mode=refine", "--id=clipasso-photo", "--add=2")
#: How the reply below moves every unlocked stroke (image px), and the two strokes it adds.
SHIFT = (1.5, -0.75)
ADDED = [[[5.0, 5.0], [10.0, 6.0], [15.0, 7.0], [20.0, 8.0]], [[40.0, 30.0], [42.0, 35.0], [44.0, 40.0], [46.0, 45.0]]]


def levels_reply(folder: Path, doc: Path = LEVELS, add: int = 2) -> Path:
    """A reply to the refine of ``doc`` in the real engine's form (replies/refine.jsonl's messages), with made-up
    numbers: every unlocked stroke moved by SHIFT, the locked ones given back exactly, ADDED appended."""
    svg = load(doc)
    request = refine_request(read_sketch(svg, [svg.getElementById("clipasso-photo")]), {"settings": {}}, add)
    strokes = [
        stroke if i in request["locked"] else [[x + SHIFT[0], y + SHIFT[1]] for x, y in stroke]
        for i, stroke in enumerate(request["init_strokes"])
    ] + ADDED[:add]
    started, *_, recorded = reply("refine")
    levels = request["settings"].get("ladder", [])
    result = dict(
        recorded,
        strokes=strokes,
        ladder=[{"strokes": k, "loss": 8.0 + k / 100} for k in levels],
        refine=dict(recorded["refine"], given=len(strokes) - add, locked=len(request["locked"]), added=add),
        rank=list(range(1, len(strokes) + 1)),
        importance=[0.1] * len(strokes),
        source_index=list(range(len(strokes))),
    )
    path = folder / "levels.jsonl"
    path.write_text(json.dumps(started) + "\n" + json.dumps(result) + "\n")
    return path


class TestRefineLevelsGolden(FakeEngineCase, ComparisonMixin, TestCase):
    """A ladder sketch whose levels were edited, refined with two added strokes (golden file)."""

    effect_class = Sketch
    compare_file = "svg/edited_levels.svg"
    comparisons = (REFINE_LEVELS,)

    def reply_file(self, folder: Path) -> Path:
        return levels_reply(folder)


def level_groups(group: inkex.Group) -> list[tuple[str, str]]:
    return [(g.get("inkscape:label"), g.get("data-clipasso-strokes")) for g in group if g.TAG == "g"]


def test_refining_edited_levels(fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ENGINE_REPLY", str(levels_reply(fake_engine.folder)))
    before = load(LEVELS)
    status, out = run_sketch(LEVELS, *REFINE_LEVELS)
    assert status == 0 and out
    (request,) = fake_engine.request_log()
    # Sent: the drawn path (before every level group: it joins the first level), strokes 0 and 1 (hidden, sent
    # all the same), the emptied level's nothing, the hidden level's stroke 4 (locked) and 5; the levels as now.
    assert len(request["init_strokes"]) == 5 and request["locked"] == [3]
    assert request["settings"]["ladder"] == [3, 5, 7] and request["settings"]["strokes"] == 7
    after = load(out)
    group = after.getElementById("clipasso-photo")
    # Every stroke stays where it was in the structure; the levels are recounted, the emptied one is gone.
    assert level_groups(group) == [("3 strokes", "3"), ("5 strokes (+2)", "5"), ("7 strokes (+2)", "7")]
    assert after.getElementById("clipasso-photo-level-4") is None
    assert [g.get("data-clipasso-loss") for g in group if g.TAG == "g"] == ["8.03", "8.05", "8.07"]
    assert group[0].get("id") == "path2" and group[0].get("d") != before.getElementById("path2").get("d")
    # Hidden strokes are refined and stay hidden; the locked one inside the hidden level is untouched.
    hidden_level = after.getElementById("clipasso-photo-level-6")
    assert hidden_level.style["display"] == "none" and hidden_level.get("data-clipasso-strokes") == "5"
    hidden = after.getElementById("clipasso-photo-stroke-1")
    assert hidden.style["visibility"] == "hidden" and hidden.get("d") != before.getElementById(hidden.get_id()).get("d")
    locked = "clipasso-photo-stroke-4"
    assert etree.tostring(after.getElementById(locked)) == etree.tostring(before.getElementById(locked))
    # The added strokes: a new top level after the sketch's highest stroke id (5).
    added = after.getElementById("clipasso-photo-level-7")
    assert added.getparent() is group and [p.get("id") for p in added] == [
        "clipasso-photo-stroke-6",
        "clipasso-photo-stroke-7",
    ]
    # Read again, the result is the reply's strokes in the same order, with the same levels: the next refine
    # starts where this one ended.
    sketch = read_sketch(after, [group])
    result = json.loads((fake_engine.folder / "levels.jsonl").read_text().splitlines()[-1])
    assert flat([s.points for s in sketch.strokes]) == pytest.approx(flat(result["strokes"]), abs=2e-3)
    assert sketch.levels == [3, 5, 7] and sketch.locked == [3]


def test_an_emptied_level_with_other_content_and_a_renamed_level(
    fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    svg = load(LEVELS)
    note = inkex.TextElement()
    note.set("id", "note")
    svg.getElementById("clipasso-photo-level-4").append(note)
    svg.getElementById("clipasso-photo-level-6").set("inkscape:label", "the details")
    doc = tmp_path / "doc.svg"
    doc.write_bytes(svg.tostring())
    monkeypatch.setenv("FAKE_ENGINE_REPLY", str(levels_reply(tmp_path, doc, add=0)))
    status, out = run_sketch(doc, "--mode=refine", "--id=clipasso-photo", "--add=0")
    assert status == 0
    after = load(out)
    group = after.getElementById("clipasso-photo")
    # The emptied level keeps the note as an ordinary group (no level marks, no count label); the renamed level
    # keeps its name and counts its strokes; no level is added.
    emptied = after.getElementById("clipasso-photo-level-4")
    assert [c.get("id") for c in emptied] == ["note"] and emptied.get("inkscape:label") is None
    assert emptied.get("data-clipasso-strokes") is None and emptied.get("data-clipasso-loss") is None
    assert level_groups(group) == [("3 strokes", "3"), (None, None), ("the details", "5")]
    assert fake_engine.request_log()[0]["settings"]["ladder"] == [3, 5]


def test_a_sketch_left_with_one_level_is_no_ladder_unless_strokes_are_added(
    fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As the engine reads an --init file: one level group is one level; added strokes make a second."""
    svg = load(LEVELS)
    for k in (0, 1):
        svg.getElementById(f"clipasso-photo-stroke-{k}").delete()
    svg.getElementById("path2").delete()
    doc = tmp_path / "doc.svg"
    doc.write_bytes(svg.tostring())
    for add, ladder in ((0, None), (1, [2, 3])):
        monkeypatch.setenv("FAKE_ENGINE_REPLY", str(levels_reply(tmp_path, doc, add=add)))
        assert run_sketch(doc, "--mode=refine", "--id=clipasso-photo", f"--add={add}")[0] == 0
        assert fake_engine.request_log()[-1]["settings"].get("ladder") == ladder


# ---- reading --------------------------------------------------------------------------------------------------


def test_reading_the_edited_group_golden() -> None:
    """The strokes as the user left them, in image px: compared with the committed reading, and by hand below."""
    svg = load()
    sketch = read_sketch(svg, [svg.getElementById("clipasso-photo")])
    fields = refine_request(sketch, {"settings": {"preset": "fast", "width_fraction": 0.05}}, 1)
    golden = json.loads((DATA / "refine_request.json").read_text())
    assert {k: fields[k] for k in golden if k != "init_strokes"} == {
        k: golden[k] for k in golden if k != "init_strokes"
    }
    assert flat(fields["init_strokes"]) == pytest.approx(flat(golden["init_strokes"]), abs=1e-9)


def test_reading_by_hand() -> None:
    svg = load()
    sketch = read_sketch(svg, [svg.getElementById("clipasso-photo")])
    got = [flat(s.points) for s in sketch.strokes]
    old = ladder_strokes()
    to_px = lambda x, y: [(x + 3 - 10) / 2, (y - 2 - 20) / 2]  # noqa: E731
    # The image maps px -> user as 2 units per px from (10, 20); the group is moved by (3, -2) user units.
    moved = lambda stroke, dx=0.0, dy=0.0: flat([[x + 1.5 + dx, y - 1 + dy] for x, y in stroke])  # noqa: E731
    # Stroke 0 moved by its own translate(6, 4) too: 3 and 2 more px.
    assert got[0] == pytest.approx(moved(old[0], 3, 2), abs=1e-3)
    # Stroke 1 reshaped to "M 40,60 C 45,50 55,50 60,60".
    assert got[1] == pytest.approx(flat([to_px(40, 60), to_px(45, 50), to_px(55, 50), to_px(60, 60)]))
    # Stroke 2 deleted; strokes 3 (locked), 4 and 5 where they were, with the group's move.
    for k, index in ((3, 2), (4, 3), (5, 4)):
        assert got[index] == pytest.approx(moved(old[k]), abs=1e-3)
    assert all(p != pytest.approx(moved(old[2]), abs=1e-2) for p in got)
    # The drawn path: its line segment a straight cubic (handles at its thirds), then its cubic.
    line = [to_px(30, 40), to_px(30 + 20 / 3, 40 + 10 / 3), to_px(30 + 40 / 3, 40 + 20 / 3), to_px(50, 50)]
    assert got[5] == pytest.approx(flat(line))
    assert got[6] == pytest.approx(flat([to_px(50, 50), to_px(60, 60), to_px(70, 60), to_px(80, 50)]))
    # The polyline drawn straight into the group; the text note is no stroke.
    polyline = [to_px(100, 100), to_px(100 + 10 / 3, 100 + 5 / 3), to_px(100 + 20 / 3, 100 + 10 / 3), to_px(110, 105)]
    assert got[7] == pytest.approx(flat(polyline))
    assert len(got) == 8
    assert sketch.locked == [2] and sketch.levels == [2, 3, 8]


@pytest.mark.parametrize("name", PLACEMENT_DOCS)
@pytest.mark.parametrize("target", ["group", "layer"])
def test_a_fresh_sketch_reads_back_as_the_engine_strokes(name: str, target: str, fake_engine: FakeEngine) -> None:
    """Inserting then reading is the identity in image px, for every placement (rotated, nested, viewBox, slice...)."""
    status, out = run_sketch(name, "--id=photo", f"--target={target}")
    assert status == 0
    svg = load(out)
    sketch = read_sketch(svg, [svg.getElementById("clipasso-photo-stroke-1")])  # a stroke clicked inside it
    assert sketch.group.get_id() == "clipasso-photo" and sketch.locked == [] and sketch.levels == []
    assert flat([s.points for s in sketch.strokes]) == pytest.approx(flat(recorded_strokes()), abs=2e-3)


def test_rotating_the_group_with_its_strokes_is_seen(fake_engine: FakeEngine) -> None:
    _, out = run_sketch("plain", "--id=photo")
    svg = load(out)
    group = svg.getElementById("clipasso-photo")
    group.set("transform", "rotate(90, 10, 20)")  # about the image's corner: px (x, y) -> (-y, x) in px
    sketch = read_sketch(svg, [group])
    want = [[[-y, x] for x, y in stroke] for stroke in recorded_strokes()]
    assert flat([s.points for s in sketch.strokes]) == pytest.approx(flat(want), abs=2e-3)


# ---- writing back ----------------------------------------------------------------------------------------------


def refine_edited(fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, *args: str) -> bytes:
    monkeypatch.setenv("FAKE_ENGINE_REPLY", str(DATA / "replies" / "refine.jsonl"))
    status, out = run_sketch(EDITED, *REFINE, *args)
    assert status == 0 and out
    return out


def test_request_is_the_edited_strokes(fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    refine_edited(fake_engine, monkeypatch, "--width=5", "--strokes=99", "--ladder=4,8", "--iterations=50")
    (request,) = fake_engine.request_log()
    golden = json.loads((DATA / "refine_request.json").read_text())
    assert flat(request["init_strokes"]) == pytest.approx(flat(golden["init_strokes"]), abs=1e-9)
    assert request["locked"] == [2] and request["add"] == 1
    settings = request["settings"]
    # The sketch's own width and levels (plus the added stroke's), the dialog's run settings; one run.
    assert settings["width_fraction"] == 0.0134 and settings["ladder"] == [2, 3, 8, 9]
    assert settings["strokes"] == 9 and settings["seeds"] == 1 and settings["iterations"] == 50
    # The recorded reply answers this very request (record_replies.edited_refine_request).
    result = reply("refine")[-1]
    assert result["refine"]["locked_strokes"] == [2] and len(result["strokes"]) == 9
    assert result["strokes"][2] == request["init_strokes"][2]  # the engine gives the locked stroke back bit-identical
    assert all(result["strokes"][i] != request["init_strokes"][i] for i in (0, 1, 3, 4, 5, 6, 7))


def test_written_back_in_place(fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    before = load()
    after = load(refine_edited(fake_engine, monkeypatch))
    result = reply("refine")[-1]
    old_group, group = before.getElementById("clipasso-photo"), after.getElementById("clipasso-photo")
    # The group: same place, id and attributes; the refine recorded beside the original provenance.
    assert group.getparent().index(group) == old_group.getparent().index(old_group)
    extra = {k: v for k, v in group.attrib.items() if k not in old_group.attrib}
    assert {k: v for k, v in group.attrib.items() if k in old_group.attrib} == dict(old_group.attrib)
    assert list(extra) == ["data-clipasso-refined"]
    assert json.loads(extra["data-clipasso-refined"])["added"] == 1
    # The locked stroke: the very same element, byte for byte.
    locked = "clipasso-photo-stroke-3"
    assert etree.tostring(after.getElementById(locked)) == etree.tostring(before.getElementById(locked))
    # Reading the result gives the engine's strokes, in order, the added one last.
    sketch = read_sketch(after, [group])
    assert flat([s.points for s in sketch.strokes]) == pytest.approx(flat(result["strokes"]), abs=2e-3)
    assert sketch.locked == [2]
    # Each remaining stroke keeps its element, id, transform and the user's style.
    for k in (0, 1, 4, 5):
        old, new = (
            before.getElementById(f"clipasso-photo-stroke-{k}"),
            after.getElementById(f"clipasso-photo-stroke-{k}"),
        )
        assert new is not None and new.get("style") == old.get("style") and new.get("transform") == old.get("transform")
        assert new.getparent().get("id") == old.getparent().get("id")
        assert new.get("d") != old.get("d")  # refined: the recorded run moved every unlocked stroke
    assert after.getElementById("clipasso-photo-stroke-4").style["stroke"] == "#0000ff"
    assert after.getElementById("clipasso-photo-stroke-2") is None  # deleted stays deleted
    # The drawn path: one path per stroke, its style kept, its path effect dropped (it would undo the refine).
    drawn, second = after.getElementById("path1"), after.getElementById("path1-1")
    assert drawn.get("style") == second.get("style") == before.getElementById("path1").get("style")
    for stale in ("sodipodi:nodetypes", "inkscape:path-effect", "inkscape:original-d"):
        assert drawn.get(stale) is None and second.get(stale) is None
    assert drawn.getnext() is second
    polyline = after.getElementById("polyline1")
    assert polyline.TAG == "path" and polyline.get("points") is None and polyline.style["stroke-width"] == "1"
    assert after.getElementById("note").text == "not a stroke"
    # Levels: counts follow the strokes now there; the added stroke is its own level.
    levels = [(g.get("inkscape:label"), g.get("data-clipasso-strokes")) for g in group if g.TAG == "g"]
    assert levels == [("2 strokes", "2"), ("3 strokes (+1)", "3"), ("8 strokes (+5)", "8"), ("9 strokes (+1)", "9")]
    added = after.getElementById("clipasso-photo-level-9")
    assert [p.get("id") for p in added] == ["clipasso-photo-stroke-6"]  # after the highest id the sketch had (5)


def test_refining_a_plain_sketch_appends_the_added_strokes(
    fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, once = run_sketch("plain", "--id=photo")
    first = tmp_path / "sketched.svg"
    first.write_bytes(once)
    result = dict(reply("basic")[-1])
    result["strokes"] = [*result["strokes"], [[1, 2], [3, 4], [5, 6], [7, 8]]]
    script = tmp_path / "reply.jsonl"
    script.write_text(json.dumps(reply("basic")[0]) + "\n" + json.dumps(result) + "\n")
    monkeypatch.setenv("FAKE_ENGINE_REPLY", str(script))
    status, out = run_sketch(first, "--mode=refine", "--id=clipasso-photo", "--add=1")
    assert status == 0
    group = load(out).getElementById("clipasso-photo")
    assert [p.get("id") for p in group] == [f"clipasso-photo-stroke-{k}" for k in range(4)]
    assert [p.TAG for p in group] == ["path"] * 4
    request = fake_engine.request_log()[-1]
    assert "ladder" not in request["settings"] and request["locked"] == []


# ---- refusals: one sentence, the document unchanged, no engine started -----------------------------------------


def edited_with(tmp_path: Path, change: Any) -> Path:
    svg = load()
    change(svg)
    path = tmp_path / "doc.svg"
    path.write_bytes(svg.tostring())
    return path


def _lock_all(svg: inkex.SvgDocumentElement) -> None:
    for element in svg.getElementById("clipasso-photo").iter():
        element.set("sodipodi:insensitive", "true")


def _strip_strokes(svg: inkex.SvgDocumentElement) -> None:
    for element in list(svg.getElementById("clipasso-photo").iter()):
        if element.TAG in ("path", "polyline"):
            element.delete()


def _second_sketch(svg: inkex.SvgDocumentElement) -> None:
    second = copy.deepcopy(svg.getElementById("clipasso-photo"))
    second.set("id", "second")
    svg.getElementById("layer1").append(second)


def _replace_image(svg: inkex.SvgDocumentElement) -> None:
    """The image element kept, its picture replaced by one of another size (128×96, not the sketch's 64×48)."""
    picture = io.BytesIO()
    Image.new("RGB", (128, 96)).save(picture, "PNG")
    data = base64.b64encode(picture.getvalue()).decode()
    svg.getElementById("photo").set("xlink:href", f"data:image/png;base64,{data}")


CASES = {
    "nothing selected": (None, [], "No sketch is selected"),
    "a plain group": (None, ["--id=layer1"], "'layer1' is not a sketch made by CLIPasso Sketch"),
    "the picture replaced": (_replace_image, [], "'photo' is now 128×96 pixels, not the 64×48"),
    "an image": (None, ["--id=photo"], "'photo' is not a sketch made by CLIPasso Sketch"),
    "the image gone": (lambda svg: svg.getElementById("photo").delete(), [], "'photo' that the sketch"),
    "no provenance": (
        lambda svg: svg.getElementById("clipasso-photo").attrib.pop("data-clipasso-image"),
        [],
        "does not say which image",
    ),
    "bad size": (
        lambda svg: svg.getElementById("clipasso-photo").set("data-clipasso-image-size", "64 x"),
        [],
        "does not say which image",
    ),
    "no strokes": (_strip_strokes, [], "has no strokes left"),
    "all locked": (_lock_all, ["--add=0"], "Every stroke of the sketch is locked"),
    "add negative": (None, ["--add=-1"], "New strokes to add must be from 0 to 4088"),
    "add huge": (None, ["--add=5000"], "New strokes to add must be from 0 to 4088"),
    "far away": (
        lambda svg: svg.getElementById("path1").set("transform", "translate(1e12, 0)"),
        [],
        "'path1' lies far outside",
    ),
    "squashed stroke": (
        lambda svg: svg.getElementById("path1").set("transform", "scale(0)"),
        [],
        "'path1' is squashed flat",
    ),
    "squashed image": (
        lambda svg: svg.getElementById("photo").set("transform", "scale(0, 1)"),
        [],
        "'photo' is squashed flat",
    ),
    "two sketches": (_second_sketch, ["--id=second"], "2 sketches are selected"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refusals(case: str, fake_engine: FakeEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    change, args, expected = CASES[case]
    doc = edited_with(tmp_path, change) if change else EDITED
    ids = [] if case == "nothing selected" else ["--id=clipasso-photo"]
    if args and args[0].startswith("--id"):
        ids = args if case in ("an image", "a plain group") else [*ids, *args]
        args = []
    status, out = run_sketch(doc, "--mode=refine", *ids, *args)
    err = capsys.readouterr().err
    assert status != 0 and out == b"", err
    assert expected in err and err.strip().count("\n") == 0 and "Traceback" not in err
    assert not fake_engine.started_pids()


@pytest.mark.parametrize("name", ["cancelled", "bad_settings"])
def test_engine_refusal_or_cancel_leaves_the_document(
    name: str, fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ENGINE_REPLY", str(DATA / "replies" / f"{name}.jsonl"))
    status, out = run_sketch(EDITED, *REFINE)
    assert out == b"" and (status == 0) == (name == "cancelled")


def test_a_short_reply_is_a_bug_not_a_half_written_group(
    fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = dict(reply("refine")[-1], strokes=reply("refine")[-1]["strokes"][:3])
    script = fake_engine.folder / "short.jsonl"
    script.write_text(json.dumps(reply("refine")[0]) + "\n" + json.dumps(result) + "\n")
    monkeypatch.setenv("FAKE_ENGINE_REPLY", str(script))
    status, out = run_sketch(EDITED, *REFINE)
    assert status != 0 and out == b"" and "failed unexpectedly" in capsys.readouterr().err

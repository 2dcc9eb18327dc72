"""The abstraction ladder in the extension (issue 12 item 4): the option, the group per level, the preview's levels.

Against the fake engine replaying ``replies/ladder.jsonl``, recorded from the real engine (levels 2, 4, 6).
"""

from __future__ import annotations

import json
from typing import Any

import inkex
import pytest
from clipasso_place import ladder_levels, placement, stroke_d
from clipasso_progress import ladder_of, level_color, level_text
from clipasso_refine import parse_ladder
from clipasso_sketch import Sketch
from conftest import DATA, FakeEngine, FakeEngineCase
from inkex.tester import ComparisonMixin, TestCase
from test_sketch import run_sketch


def recorded(reply: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / "replies" / f"{reply}.jsonl").read_text().splitlines()]


class TestLadderGolden(FakeEngineCase, ComparisonMixin, TestCase):
    """The inserted ladder: one outer group with the provenance, one sub-group per level."""

    effect_class = Sketch
    compare_file = "svg/plain.svg"
    comparisons = (("--id=photo", "--strokes=6", "--ladder=2,4"),)
    reply = "ladder"


def test_recording_is_a_real_ladder() -> None:
    """The fixture says what the tests assume: a real-engine result with levels 2, 4, 6 and progress per level."""
    lines = recorded("ladder")
    result = lines[-1]
    assert result["type"] == "result" and [level["strokes"] for level in result["ladder"]] == [2, 4, 6]
    assert len(result["strokes"]) == 6 and lines[0]["settings"]["ladder"] == [2, 4, 6]
    assert any(len(m.get("level_losses", [])) == 3 for m in lines if m["type"] == "progress")


def test_one_group_per_level_each_holding_the_strokes_it_adds(
    fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ENGINE_REPLY", str(DATA / "replies" / "ladder.jsonl"))
    status, out = run_sketch("plain", "--id=photo", "--strokes=6", "--ladder=2, 4")
    assert status == 0
    (request,) = fake_engine.request_log()
    assert request["settings"]["ladder"] == [2, 4] and request["settings"]["strokes"] == 6
    svg = inkex.load_svg(out).getroot()
    outer = svg.getElementById("clipasso-photo")
    image = svg.getElementById("photo")
    assert outer.getparent().index(outer) == image.getparent().index(image) + 1
    assert outer.get("data-clipasso-settings") and outer.get("data-clipasso-image") == "photo"
    levels = list(outer)
    assert [g.TAG for g in levels] == ["g"] * 3
    assert [g.get("inkscape:label") for g in levels] == ["2 strokes", "4 strokes (+2)", "6 strokes (+2)"]
    assert [g.get("data-clipasso-strokes") for g in levels] == ["2", "4", "6"]
    losses = [level["loss"] for level in recorded("ladder")[-1]["ladder"]]
    assert [float(g.get("data-clipasso-loss")) for g in levels] == pytest.approx(losses, rel=1e-5)
    assert all(g.get("data-clipasso-settings") is None for g in levels)  # the provenance once, on the outer group
    # Level k's group holds strokes k_prev..k of the engine's order: hiding the upper groups shows a lower level.
    strokes = recorded("ladder")[-1]["strokes"]
    to_user = placement(svg, image, (64, 48)).pixels_to_user
    for g, (start, end) in zip(levels, [(0, 2), (2, 4), (4, 6)], strict=False):
        assert [p.get("id") for p in g] == [f"clipasso-photo-stroke-{k}" for k in range(start, end)]
        assert [p.get("d") for p in g] == [stroke_d(to_user, s) for s in strokes[start:end]]
        assert "display" not in (g.get("style") or "")  # every level visible


def test_no_ladder_is_one_flat_group(fake_engine: FakeEngine) -> None:
    status, out = run_sketch("plain", "--id=photo", "--ladder=")
    assert status == 0
    (request,) = fake_engine.request_log()
    assert "ladder" not in request["settings"]
    group = inkex.load_svg(out).getroot().getElementById("clipasso-photo")
    assert [child.TAG for child in group] == ["path"] * 3


@pytest.mark.parametrize(
    ("text", "levels"),
    [("", ()), ("  ", ()), ("4,8,16", (4, 8, 16)), (" 4 8;16, ", (4, 8, 16)), ("+4,8", (4, 8)), ("0", (0,))],
)
def test_parse_ladder(text: str, levels: tuple[int, ...]) -> None:
    assert parse_ladder(text) == levels  # order, range and repeats are the engine's to judge (one sentence)


@pytest.mark.parametrize("text", ["a", "4.5", "-4", "1e3", "4,x", "9" * 5000, "4/8", "NaN", "inf"])
def test_parse_ladder_refuses_what_is_not_stroke_counts(text: str) -> None:
    with pytest.raises(inkex.AbortExtension) as caught:
        parse_ladder(text)
    message = str(caught.value)
    assert "not a list of stroke counts" in message and "4,8,16" in message and len(message) < 300


def test_bad_levels_get_the_engine_sentence(
    fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_ENGINE_REPLY", str(DATA / "replies" / "bad_ladder.jsonl"))
    status, out = run_sketch("plain", "--id=photo", "--strokes=6", "--ladder=4,2")
    err = capsys.readouterr().err
    assert status != 0 and out == b""
    assert err.strip() == recorded("bad_ladder")[-1]["message"]


def test_unreadable_ladder_text_starts_no_engine(fake_engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run_sketch("plain", "--id=photo", "--ladder=four")
    assert status != 0 and out == b"" and "not a list of stroke counts" in capsys.readouterr().err
    assert not fake_engine.started_pids()


def _result(count: int, ladder: Any) -> dict[str, Any]:
    return {"strokes": [[[0, 0]] * 4] * count, "ladder": ladder}


@pytest.mark.parametrize(
    ("count", "ladder", "levels"),
    [
        (6, [{"strokes": 2}, {"strokes": 4}, {"strokes": 6}], [2, 4, 6]),
        (3, [{"strokes": 2}, {"strokes": 4}, {"strokes": 6}], [2, 3]),  # stopped early with 3: 2, then all 3
        (6, [], []),
        (6, None, []),
        (6, "2,4", []),
        (6, [{"strokes": 4}, {"strokes": 2}], []),
        (6, [{"strokes": 2}, {"strokes": 2}], []),
        (6, [{"strokes": True}], []),
        (6, [{"strokes": 0}, {"strokes": 6}], []),
        (6, [{"strokes": "2"}, {"strokes": 6}], []),
        (6, [{"strokes": 6}], []),  # one level is no ladder
        (6, [{"strokes": 2}, {"strokes": 10**9}], [2, 6]),
    ],
)
def test_ladder_levels_from_any_reply(count: int, ladder: Any, levels: list[int]) -> None:
    assert ladder_levels(_result(count, ladder)) == levels


def test_stopped_ladder_keeps_the_levels_so_far(fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A result with fewer strokes than its top level (Stop during a ladder run) keeps the levels it reached."""
    result = dict(recorded("ladder")[-1], strokes=recorded("ladder")[-1]["strokes"][:5], stopped_early=True)
    reply = fake_engine.folder / "stopped.jsonl"
    reply.write_text(json.dumps(recorded("ladder")[0]) + "\n" + json.dumps(result) + "\n")
    monkeypatch.setenv("FAKE_ENGINE_REPLY", str(reply))
    status, out = run_sketch("plain", "--id=photo", "--strokes=6", "--ladder=2,4")
    assert status == 0
    outer = inkex.load_svg(out).getroot().getElementById("clipasso-photo")
    assert [(g.get("inkscape:label"), len(g)) for g in outer] == [
        ("2 strokes", 2),
        ("4 strokes (+2)", 2),
        ("5 strokes (+1)", 1),
    ]
    assert outer.get("data-clipasso-stopped-early") == "true"


def test_preview_colours_and_losses_by_level() -> None:
    started = recorded("ladder")[0]
    levels = ladder_of(started)
    assert levels == [2, 4, 6]
    colour = (1.0, 0.0, 0.0, 1.0)
    alphas = [level_color(colour, levels, i)[3] for i in range(6)]
    assert alphas[0] == alphas[1] == 1.0 and alphas[2] == alphas[3] < 1.0 and alphas[4] == alphas[5] < alphas[2] > 0
    assert level_color(colour, [], 3) == colour and level_color(colour, [6], 3) == colour
    assert level_text(levels, [0.8123, None, 0.5]) == "2: 0.812 · 4: — · 6: 0.500"
    for bad in ({}, {"settings": None}, {"settings": {"ladder": "2,4"}}, {"settings": {"ladder": [2, True]}}):
        assert ladder_of(bad) == []

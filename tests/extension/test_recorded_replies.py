"""The fake engine's replies are the real engine's: re-record them now and compare with the committed files.

Engine-side (imports torch through the tiny models); the extension tests that replay the files need no torch.
Lines are compared by structure: message types in order (progress and preview lines by their first one: their
number depends on timing), field names, and the JSON type of every value (numbers differ from run to run).
A protocol change in the engine fails here; then re-run ``python tests/extension/record_replies.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from record_replies import REPLIES, record
from tiny_models import TinyModels


def shape(value: Any) -> Any:
    """The JSON structure of ``value``: names and types, not values (an int and a float are both numbers)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return ["list", sorted({json.dumps(shape(v), sort_keys=True) for v in value})]
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def outline(lines: list[dict[str, Any]]) -> list[Any]:
    """One entry per line; directives kept as is; progress and preview lines only the first of each type (how
    many come, interleaved how, depends on timing), the later ones checked to carry the same field names."""
    out: list[Any] = []
    first: dict[str, dict[str, Any]] = {}
    for line in lines:
        kind = line.get("type", "")
        if kind in first:
            assert sorted(line) == sorted(first[kind]), (line, first[kind])
            continue
        if kind in ("progress", "preview"):
            first[kind] = line
        out.append(line if "fake" in line else (kind, line.get("code"), shape(line)))
    return out


def committed() -> dict[str, list[dict[str, Any]]]:
    return {
        path.stem: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for path in sorted(REPLIES.glob("*.jsonl"))
    }


def test_recorded_replies_match_the_engine(tiny_models: TinyModels) -> None:
    fresh = record(tiny_models.env(), Path(tiny_models.model_config).parent)
    saved = committed()
    assert sorted(fresh) == sorted(saved), "re-run tests/extension/record_replies.py"
    for name in fresh:
        assert outline(fresh[name]) == outline(saved[name]), f"{name}: re-run tests/extension/record_replies.py"
    # The recording says what it should: a real sketch with previews, and the engine's own error sentences.
    basic = [m["type"] for m in saved["basic"]]
    assert basic[0] == "started" and basic[-1] == "result" and "progress" in basic and "preview" in basic
    assert {m.get("code") for name in ("weights_missing", "weights_file_missing") for m in saved[name]} == {
        None,
        "weights_missing",
    }
    assert saved["cancelled"][-1]["code"] == "cancelled" and saved["bad_request"][-1]["code"] == "bad_request"


def test_outline_tells_a_renamed_or_retyped_field() -> None:
    line = {"protocol": 1, "type": "progress", "iteration": 2, "loss": 0.5}
    assert outline([line]) == outline([dict(line, iteration=3, loss=0.25)])
    assert outline([line]) != outline([dict(line, loss=None)])
    renamed = {k if k != "loss" else "cost": v for k, v in line.items()}
    assert outline([line]) != outline([renamed])
    assert outline([line]) != outline([dict(line, iteration="2")])
    assert outline([line, dict(line, iteration=3)]) == outline([line])  # how many progress lines: timing
    with pytest.raises(AssertionError):
        outline([line, renamed])

"""Strict JSON: no output ever holds NaN or Infinity, the literals Python's json writes but JSON forbids."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from clipasso_engine.errors import OutputError
from clipasso_engine.strict_json import finite_or_null, json_dumps_strict

NON_FINITE = [float("inf"), float("-inf"), float("nan"), np.float32("nan"), np.float64("inf"), np.float16("-inf")]


def test_finite_values_serialise_as_json_dumps_does() -> None:
    facts = {"loss": 0.25, "seed": 3, "ok": True, "none": None, "strokes": [[[1.5, -2.0]]], "pair": (1, 2.5)}
    assert json_dumps_strict(facts) == json.dumps(facts)
    assert json_dumps_strict(facts, indent=2, sort_keys=True) == json.dumps(facts, indent=2, sort_keys=True)
    assert (
        json_dumps_strict({"big": 1e308, "tiny": 5e-324, "int": 10**30})
        == '{"big": 1e+308, "tiny": 5e-324, "int": ' + str(10**30) + "}"
    )


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
@pytest.mark.parametrize(
    ("make", "location"),
    [
        (lambda v: {"settings": {"lr": v}}, r"settings\.lr"),
        (lambda v: {"settings": {"geometric_weights": [0.0, v]}}, r"settings\.geometric_weights\[1\]"),
        (lambda v: {"strokes": [[[0.0, 1.0], [2.0, v]]]}, r"strokes\[0\]\[1\]\[1\]"),
        (lambda v: {"loss": v}, "loss"),
        (lambda v: [1.0, (2.0, v)], r"\[1\]\[1\]"),
        (lambda v: v, "the value"),
    ],
    ids=["setting", "setting-list", "coordinate", "loss", "top-list", "bare"],
)
def test_non_finite_is_refused_naming_where(make: object, location: str, value: float) -> None:
    with pytest.raises(
        OutputError, match=rf"^Cannot write the output: {location} is (-?inf|nan), which JSON cannot hold"
    ) as caught:
        json_dumps_strict(make(value))  # type: ignore[operator]
    message = str(caught.value)
    assert message.endswith(".") and "\n" not in message and ". " not in message
    assert ("finite value" in message) == location.startswith("settings")  # a setting names its fix; else a bug


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_nulls_keep_serves_behaviour(value: float) -> None:
    # serve writes null for a loss that is not a number yet, rather than ending the run.
    text = json_dumps_strict({"loss": value, "eta_s": [1.0, value], "iteration": 3}, nulls=True)
    assert json.loads(text) == {"loss": None, "eta_s": [1.0, None], "iteration": 3}
    assert "NaN" not in text and "Infinity" not in text


def test_finite_or_null_copies_and_leaves_other_values() -> None:
    values: list[object] = [float("nan"), 1.0, "nan", True]
    original = {"a": values, "b": (float("inf"),), "c": {"d": 2}}
    assert finite_or_null(original) == {"a": [None, 1.0, "nan", True], "b": [None], "c": {"d": 2}}
    assert isinstance(values[0], float) and math.isnan(values[0])  # the input is not modified


def test_what_names_the_output_and_long_keys_are_shortened() -> None:
    with pytest.raises(OutputError, match=r"^Cannot write out\.json: ") as caught:
        json_dumps_strict({"k" * 5000: float("nan")}, what="out.json")
    assert len(str(caught.value)) < 300  # a key from user input is not echoed whole


def test_a_non_finite_from_default_is_refused_too() -> None:
    class Odd:
        pass

    with pytest.raises(OutputError, match="not finite"):
        json_dumps_strict({"x": Odd()}, default=lambda obj: float("inf"))
    assert json_dumps_strict({"x": Odd()}, default=lambda obj: "odd") == '{"x": "odd"}'


def test_other_json_errors_stay_bugs() -> None:
    loop: list[object] = []
    loop.append(loop)
    for nulls in (False, True):  # a circular structure is a programming error, not an OutputError for the user
        with pytest.raises((ValueError, RecursionError)):
            json_dumps_strict({"x": loop}, nulls=nulls)

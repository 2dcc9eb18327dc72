"""JSON that every reader accepts: no ``NaN`` or ``Infinity``, which Python's ``json`` writes by default.

``json_dumps_strict`` refuses a non-finite number with one ``OutputError`` sentence that says where it is (for the
CLI's ``--json`` file and the SVG's provenance); ``nulls=True`` writes ``null`` in its place instead (for protocol
lines, where a loss that is not a number yet must not end the run).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from .errors import OutputError

#: Longest key or value quoted in an error message; keys can come from user input.
_ECHO_CHARS = 60


def json_dumps_strict(
    obj: object,
    *,
    nulls: bool = False,
    what: str = "the output",
    indent: int | None = None,
    sort_keys: bool = False,
    separators: tuple[str, str] | None = None,
    ensure_ascii: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """``json.dumps(obj, allow_nan=False, ...)``, with a non-finite float refused or (``nulls``) written as null.

    Floats are found in nested dicts, lists and tuples, including numpy scalars (``np.float32``). ``what`` names the
    output in the error, e.g. ``"the JSON file out.json"``. Raises ``OutputError`` for a non-finite number, and for
    one that ``default`` returns, which the walk cannot see beforehand.
    """
    if not nulls:
        found = _first_non_finite(obj, "")
        if found is not None:
            location, value = found
            raise OutputError(
                f"Cannot write {what}: {location or 'the value'} is {value}, which JSON cannot hold; {_fix(location)}."
            )
    try:
        return json.dumps(
            finite_or_null(obj) if nulls else obj,
            allow_nan=False,
            indent=indent,
            sort_keys=sort_keys,
            separators=separators,
            ensure_ascii=ensure_ascii,
            default=default,
        )
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise  # a circular reference is a bug, not bad output
        raise OutputError(f"Cannot write {what}: a value holds a number that is not finite; {_fix('')}.") from exc


def finite_or_null(obj: object) -> object:
    """A copy of ``obj`` (dicts, lists, tuples; tuples become lists) with every non-finite float replaced by None."""
    if isinstance(obj, Mapping):
        return {key: finite_or_null(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(value) for value in obj]
    if _is_float(obj) and not math.isfinite(obj):
        return None
    return obj


def _first_non_finite(obj: object, location: str) -> tuple[str, str] | None:
    """(``settings.lr`` or ``strokes[2][0][1]``, ``inf``/``-inf``/``nan``) of the first non-finite float, or None."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            found = _first_non_finite(value, f"{location}.{_short(key)}" if location else _short(key))
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            found = _first_non_finite(value, f"{location}[{index}]")
            if found:
                return found
    elif _is_float(obj) and not math.isfinite(obj):
        return location, str(float(obj))
    return None


def _is_float(obj: object) -> TypeGuard[numbers.Real]:
    # Integers (bool included) are always finite; numpy registers its float32/float16 as numbers.Real.
    return isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral)


def _fix(location: str) -> str:
    if location.startswith("settings"):
        return "give that setting a finite value"
    return "the run produced a number that is not finite, which is a bug; please report it with the command you ran"


def _short(key: object) -> str:
    text = str(key)
    return text if len(text) <= _ECHO_CHARS else text[: _ECHO_CHARS - 1] + "…"


__all__ = ["finite_or_null", "json_dumps_strict"]

"""SVG path data (the ``d`` attribute) read into absolute cubic Bézier subpaths, and flattened to polylines.

The grammar is SVG 1.1/2 §9.3: every command (``M L H V C S Q T A Z``, upper case absolute, lower case relative),
implicit repetition of the last command, numbers such as ``1e-3``, ``-.5.5`` (two numbers) and ``1.2.3`` (1.2
and .3), arc flags written without separators (``a1 1 0 00 1 1``). Every segment becomes one or more cubics:
lines and closing segments as straight cubics with their control points at the thirds, quadratics by exact
degree elevation, arcs through the endpoint-to-centre conversion of the SVG implementation notes (F.6.5, radii
scaled up when too small, F.6.6) split into pieces of at most 90°, each the usual ``4/3·tan(δ/4)`` cubic
(radial error about 2.7e-4 of the radius, 0.03 px on a 100 px radius).

Hostile input is refused with one ``PathDataError`` sentence: anything not in the grammar (``nan``, ``inf``), a
number that overflows (``1e400``), data that does not start with a moveto, and more than ``MAX_SEGMENTS`` cubics.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .errors import PathDataError, shorten

#: Most cubic segments one path may become: a traced outline has thousands, 100 000 is a hostile or broken file.
MAX_SEGMENTS = 100_000
#: Most polyline points ``flatten`` produces for one subpath (about 32 MB of float64).
MAX_POINTS = 2_000_000

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SEPARATORS = re.compile(r"[\s,]*")
_WHITESPACE = re.compile(r"\s*")
_COMMANDS = "MmLlHhVvCcSsQqTtAaZz"
#: Numbers each command takes per repetition (arc: rx ry rotation large-arc-flag sweep-flag x y).
_ARITY = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}


@dataclass(frozen=True)
class Subpath:
    """One subpath: ``segments`` (K, 4, 2) float64 absolute cubic control points, K >= 0; ``closed``: ended with Z."""

    segments: np.ndarray
    closed: bool


def _fail(d: str, what: str) -> PathDataError:
    return PathDataError(
        f"The path data {shorten(d, 60)!r} cannot be read: {what}; write SVG path data such as 'M 0 0 L 10 0 L 0 10 Z'."
    )


class _Reader:
    """A cursor over the path string that reads numbers, flags and command letters."""

    def __init__(self, d: str) -> None:
        self.d = d
        self.pos = 0

    def skip(self, commas: bool = True) -> None:
        match = (_SEPARATORS if commas else _WHITESPACE).match(self.d, self.pos)
        self.pos = match.end() if match else self.pos

    def at_end(self) -> bool:
        return self.pos >= len(self.d)

    def starts_number(self) -> bool:
        return _NUMBER.match(self.d, self.pos) is not None

    def number(self) -> float:
        match = _NUMBER.match(self.d, self.pos)
        if match is None:
            raise _fail(self.d, f"a number was expected at character {self.pos + 1}")
        value = float(match.group())
        if not math.isfinite(value):
            raise _fail(self.d, f"the number {match.group()[:30]!r} is too large")
        self.pos = match.end()
        return value

    def flag(self) -> float:
        if self.pos < len(self.d) and self.d[self.pos] in "01":
            self.pos += 1
            return float(self.d[self.pos - 1])
        raise _fail(self.d, f"an arc flag (0 or 1) was expected at character {self.pos + 1}")


def _line(p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    return np.stack([p0, p0 + (p1 - p0) / 3.0, p0 + 2.0 * (p1 - p0) / 3.0, p1])


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    return math.atan2(u[0] * v[1] - u[1] * v[0], u[0] * v[0] + u[1] * v[1])


def arc_to_cubics(
    p0: np.ndarray, rx: float, ry: float, rotation_deg: float, large: bool, sweep: bool, p1: np.ndarray
) -> list[np.ndarray]:
    """The elliptical arc from ``p0`` to ``p1`` (SVG ``A``) as cubics of at most 90° each (SVG notes F.6.5-F.6.6).

    Equal endpoints give no segment; a zero radius gives a straight line; radii too small to reach are scaled up.
    """
    if np.array_equal(p0, p1):
        return []
    # Computed in units of the largest of the radii and the half chord, so squares stay far from the float range.
    hx, hy = (float(v) for v in (p0 - p1) / 2.0)
    unit_length = max(abs(rx), abs(ry), abs(hx), abs(hy))
    rx, ry, hx, hy = abs(rx) / unit_length, abs(ry) / unit_length, hx / unit_length, hy / unit_length
    if rx == 0.0 or ry == 0.0:
        return [_line(p0, p1)]
    phi = math.radians(rotation_deg % 360.0)
    cos, sin = math.cos(phi), math.sin(phi)
    x1, y1 = cos * hx + sin * hy, -sin * hx + cos * hy  # F.6.5.1: p0 in the ellipse's own axes
    reach = math.hypot(x1 / rx, y1 / ry)  # F.6.6.2's sqrt(Λ); hypot does not overflow where squares would
    if reach >= 1.0:  # no ellipse of these radii reaches: scale it up until one just does, centred on the chord
        rx, ry, coefficient = rx * reach, ry * reach, 0.0
    else:
        numerator = (rx * ry) ** 2 - (rx * y1) ** 2 - (ry * x1) ** 2
        denominator = (rx * y1) ** 2 + (ry * x1) ** 2
        coefficient = math.sqrt(max(0.0, numerator / denominator)) * (-1.0 if large == sweep else 1.0)
    cx1, cy1 = coefficient * rx * y1 / ry, -coefficient * ry * x1 / rx  # F.6.5.2
    start = _angle(np.array([1.0, 0.0]), np.array([(x1 - cx1) / rx, (y1 - cy1) / ry]))  # F.6.5.5-6
    delta = _angle(np.array([(x1 - cx1) / rx, (y1 - cy1) / ry]), np.array([(-x1 - cx1) / rx, (-y1 - cy1) / ry]))
    if not sweep and delta > 0:
        delta -= 2.0 * math.pi
    elif sweep and delta < 0:
        delta += 2.0 * math.pi
    rx, ry, cx1, cy1 = rx * unit_length, ry * unit_length, cx1 * unit_length, cy1 * unit_length
    centre = np.array([cos * cx1 - sin * cy1, sin * cx1 + cos * cy1]) + (p0 + p1) / 2.0  # F.6.5.3
    pieces = max(1, math.ceil(abs(delta) / (math.pi / 2.0) - 1e-9))
    step = delta / pieces
    k = 4.0 / 3.0 * math.tan(step / 4.0)  # the control arm of a cubic approximating a unit-circle arc of `step`
    axes = np.array([[cos * rx, -sin * ry], [sin * rx, cos * ry]])  # unit circle -> ellipse
    cubics = []
    for i in range(pieces):
        a, b = start + i * step, start + (i + 1) * step
        unit = np.array(
            [
                [math.cos(a), math.sin(a)],
                [math.cos(a) - k * math.sin(a), math.sin(a) + k * math.cos(a)],
                [math.cos(b) + k * math.sin(b), math.sin(b) - k * math.cos(b)],
                [math.cos(b), math.sin(b)],
            ]
        )
        cubics.append(unit @ axes.T + centre)
    cubics[0][0], cubics[-1][3] = p0, p1  # exact endpoints: no drift into the next segment
    return cubics


def parse_path_data(d: str) -> list[Subpath]:
    """Every subpath of the SVG path data ``d``, in order, as absolute cubics; ``PathDataError`` when unreadable."""
    if not isinstance(d, str):
        raise PathDataError(f"Path data must be a string such as 'M 0 0 L 10 0 Z', not {type(d).__name__}.")
    # Relative moves can add up past the float range: the result is checked once, at the end, without warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        subpaths = _parse(d)
    for subpath in subpaths:
        if not np.isfinite(subpath.segments).all():
            raise _fail(d, "its coordinates add up to numbers too large to represent")
    return subpaths


#: A cubic as four complex control points (x + iy): Python's complex arithmetic is several times faster than
#: numpy on two-element arrays, which matters at ``MAX_SEGMENTS``.
_Cubic = tuple[complex, complex, complex, complex]


def _straight(p0: complex, p1: complex) -> _Cubic:
    return (p0, p0 + (p1 - p0) / 3.0, p0 + 2.0 * (p1 - p0) / 3.0, p1)


def _parse(d: str) -> list[Subpath]:
    reader = _Reader(d)
    reader.skip(commas=False)
    if reader.at_end():
        raise _fail(d, "it is empty")
    subpaths: list[Subpath] = []
    segments: list[_Cubic] = []
    total = 0
    current = start = 0j
    last_cubic_control: complex | None = None  # for S: the previous C/S second control point
    last_quad_control: complex | None = None  # for T: the previous Q/T control point
    command = ""
    open_subpath = False

    def finish(closed: bool) -> None:
        nonlocal segments
        points = np.array(segments, dtype=np.complex128).reshape(-1, 4)
        subpaths.append(Subpath(segments=np.stack([points.real, points.imag], axis=-1), closed=closed))
        segments = []

    while True:
        reader.skip()  # a comma may separate repetitions of a command: "L 1 2, 3 4"
        if reader.at_end():
            break
        letter = d[reader.pos]
        if letter in _COMMANDS:
            command = letter
            reader.pos += 1
        elif not command:
            raise _fail(d, "it must start with a moveto (M or m)")
        elif command in "Zz" or not reader.starts_number():
            raise _fail(d, f"{letter!r} at character {reader.pos + 1} is not a path command")
        elif command == "M":
            command = "L"  # SVG: numbers after a moveto's first pair are implicit linetos
        elif command == "m":
            command = "l"
        if not subpaths and not open_subpath and command not in "Mm":
            raise _fail(d, "it must start with a moveto (M or m)")
        upper = command.upper()
        values: list[float] = []
        for i in range(_ARITY[upper]):
            reader.skip()
            values.append(reader.flag() if upper == "A" and i in (3, 4) else reader.number())
        origin = current if command.islower() else 0j
        pairs = [origin + complex(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
        cubic_control: complex | None = None
        quad_control: complex | None = None
        if upper == "M":
            if open_subpath:
                finish(closed=False)
            current = start = pairs[0]
            open_subpath = True
            last_cubic_control = last_quad_control = None
            continue
        open_subpath = True  # a command right after Z starts the next subpath at the same point (SVG §9.3.3)
        if upper == "Z":
            if current != start:
                segments.append(_straight(current, start))
                total += 1
            finish(closed=True)
            current, open_subpath = start, False
            last_cubic_control = last_quad_control = None
            continue
        if upper == "L":
            target = pairs[0]
            segments.append(_straight(current, target))
        elif upper == "H":
            target = complex(values[0] + origin.real, current.imag)
            segments.append(_straight(current, target))
        elif upper == "V":
            target = complex(current.real, values[0] + origin.imag)
            segments.append(_straight(current, target))
        elif upper == "C":
            target = pairs[2]
            segments.append((current, pairs[0], pairs[1], target))
            cubic_control = pairs[1]
        elif upper == "S":
            target = pairs[1]
            first = current if last_cubic_control is None else 2.0 * current - last_cubic_control
            segments.append((current, first, pairs[0], target))
            cubic_control = pairs[0]
        elif upper in "QT":
            if upper == "Q":
                q, target = pairs[0], pairs[1]
            else:
                q = current if last_quad_control is None else 2.0 * current - last_quad_control
                target = pairs[0]
            # Exact degree elevation: the cubic's controls lie 2/3 of the way from each end to the quadratic's.
            segments.append((current, current + 2.0 * (q - current) / 3.0, target + 2.0 * (q - target) / 3.0, target))
            quad_control = q
        else:  # A
            target = origin + complex(values[5], values[6])
            try:
                arcs = arc_to_cubics(
                    np.array([current.real, current.imag]),
                    values[0],
                    values[1],
                    values[2],
                    bool(values[3]),
                    bool(values[4]),
                    np.array([target.real, target.imag]),
                )
            except (OverflowError, ZeroDivisionError, ValueError) as exc:  # radii or coordinates beyond the float range
                raise _fail(d, "an arc's numbers are too large or too small to compute") from exc
            segments.extend(tuple(complex(x, y) for x, y in arc) for arc in arcs)  # type: ignore[misc]
            total += len(arcs) - 1
        total += 1
        current = target
        last_cubic_control, last_quad_control = cubic_control, quad_control
        if total > MAX_SEGMENTS:
            raise PathDataError(
                f"The path data has more than {MAX_SEGMENTS:,} segments; simplify the shape (Path > Simplify) first."
            )
    if open_subpath:
        finish(closed=False)
    return subpaths


def flatten(subpath: Subpath, tolerance: float = 0.1) -> np.ndarray:
    """The subpath as a (P, 2) polyline whose distance to the true curve is at most ``tolerance`` (in its units).

    Each cubic is cut into n equal parameter steps with n from Wang's formula, n = ⌈√(3·2/8 · M / tolerance)⌉,
    M the largest second difference ‖P_i − 2P_{i+1} + P_{i+2}‖ of its control points: a bound on the chord's
    distance to the curve that holds for any cubic (an upper bound, so straight cubics give one step). The
    polyline starts at the first segment's start; a subpath with no segment gives (0, 2).
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a positive finite number, got {tolerance!r}")
    segments = subpath.segments
    if len(segments) == 0:
        return np.zeros((0, 2))
    second = segments[:, :2] - 2.0 * segments[:, 1:3] + segments[:, 2:]  # (K, 2, 2)
    largest = np.linalg.norm(second, axis=-1).max(axis=-1)
    steps = np.maximum(1, np.ceil(np.sqrt(0.75 * largest / tolerance))).astype(np.int64)
    if int(steps.sum()) + 1 > MAX_POINTS:
        raise PathDataError(
            f"The path is too large to draw within {tolerance} px ({int(steps.sum()):,} points); "
            "scale it to the image's size or simplify it."
        )
    owner = np.repeat(np.arange(len(segments)), steps)
    first = np.concatenate([[0], np.cumsum(steps)[:-1]])
    t = ((np.arange(len(owner)) - first[owner] + 1) / steps[owner])[:, None]
    p = segments[owner]
    s = 1.0 - t
    points = s**3 * p[:, 0] + 3 * s * s * t * p[:, 1] + 3 * s * t * t * p[:, 2] + t**3 * p[:, 3]
    return np.concatenate([segments[:1, 0], points])


__all__ = ["MAX_SEGMENTS", "Subpath", "arc_to_cubics", "flatten", "parse_path_data"]

"""SVG path data: every command against hand-computed control points, the number grammar, hostile input, flattening."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from clipasso_engine.errors import PathDataError
from clipasso_engine.path_data import MAX_SEGMENTS, Subpath, flatten, parse_path_data

K = 4.0 / 3.0 * math.tan(math.pi / 8.0)  # control arm of a quarter-circle cubic on the unit circle


def cubics(d: str) -> list[list[list[float]]]:
    """All segments of the single subpath of ``d``."""
    (subpath,) = parse_path_data(d)
    return subpath.segments.tolist()


def line(p0: tuple[float, float], p1: tuple[float, float]) -> list[list[float]]:
    a, b = np.array(p0, float), np.array(p1, float)
    return np.stack([a, a + (b - a) / 3, a + 2 * (b - a) / 3, b]).tolist()


def assert_segments(d: str, expected: list[list[list[float]]]) -> None:
    np.testing.assert_allclose(np.array(cubics(d)), np.array(expected), atol=1e-12)


# --- each command ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", ["M 1 2 L 4 8", "m 1 2 l 3 6", "M1,2L4,8", "M 1 2 4 8", "m1 2 3 6"])
def test_lines_are_straight_cubics_at_the_thirds(d: str) -> None:
    assert_segments(d, [[[1, 2], [2, 4], [3, 6], [4, 8]]])


def test_horizontal_and_vertical_lines() -> None:
    corners = [(1, 1), (4, 1), (4, 7), (1, 7), (1, 1)]
    expected = [line(a, b) for a, b in itertools.pairwise(corners)]
    assert_segments("M 1 1 H 4 V 7 h -3 v -6", expected)
    assert_segments("M1 1H4V7H1V1", expected)


@pytest.mark.parametrize("d", ["M 1 1 C 2 3 4 5 6 7", "M 1 1 c 1 2 3 4 5 6"])
def test_cubic(d: str) -> None:
    assert_segments(d, [[[1, 1], [2, 3], [4, 5], [6, 7]]])


@pytest.mark.parametrize("d", ["M 0 0 C 0 1 2 1 2 0 S 4 -1 4 0", "M 0 0 c 0 1 2 1 2 0 s 2 -1 2 0"])
def test_smooth_cubic_reflects_the_previous_control_point(d: str) -> None:
    assert_segments(d, [[[0, 0], [0, 1], [2, 1], [2, 0]], [[2, 0], [2, -1], [4, -1], [4, 0]]])


def test_smooth_cubic_without_a_previous_cubic_starts_at_the_current_point() -> None:
    assert_segments("M 0 0 S 1 1 2 0", [[[0, 0], [0, 0], [1, 1], [2, 0]]])
    assert_segments("M 0 0 L 1 0 S 2 1 3 0", [line((0, 0), (1, 0)), [[1, 0], [1, 0], [2, 1], [3, 0]]])
    # After a quadratic, S does not reflect the quadratic's control point.
    assert_segments(
        "M 0 0 Q 1 1 2 0 S 3 1 4 0",
        [[[0, 0], [2 / 3, 2 / 3], [4 / 3, 2 / 3], [2, 0]], [[2, 0], [2, 0], [3, 1], [4, 0]]],
    )


@pytest.mark.parametrize("d", ["M 0 0 Q 3 3 6 0", "M 0 0 q 3 3 6 0"])
def test_quadratic_is_elevated_exactly(d: str) -> None:
    assert_segments(d, [[[0, 0], [2, 2], [4, 2], [6, 0]]])


def test_elevated_quadratic_is_the_same_curve() -> None:
    (subpath,) = parse_path_data("M 1 5 Q 7 -3 9 4")
    t = np.linspace(0, 1, 11)[:, None]
    p0, q, p2 = np.array([1, 5.0]), np.array([7, -3.0]), np.array([9, 4.0])
    quadratic = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * q + t**2 * p2
    c = subpath.segments[0]
    cubic = (1 - t) ** 3 * c[0] + 3 * (1 - t) ** 2 * t * c[1] + 3 * (1 - t) * t**2 * c[2] + t**3 * c[3]
    np.testing.assert_allclose(cubic, quadratic, atol=1e-12)


@pytest.mark.parametrize("d", ["M 0 0 Q 3 3 6 0 T 12 0", "M 0 0 q 3 3 6 0 t 6 0", "M0 0Q3 3 6 0 9-3 12 0"])
def test_smooth_quadratic_reflects_the_previous_control_point(d: str) -> None:
    # T's control point is (9, -3): c1 = 6 + 2/3·(3, -3), c2 = 12 + 2/3·(-3, -3); the last one is an implicit
    # repeated Q with that control point written out.
    assert_segments(d, [[[0, 0], [2, 2], [4, 2], [6, 0]], [[6, 0], [8, -2], [10, -2], [12, 0]]])


def test_smooth_quadratic_without_a_previous_quadratic_is_straight() -> None:
    assert_segments("M 0 0 T 3 0", [[[0, 0], [0, 0], [1, 0], [3, 0]]])


@pytest.mark.parametrize("d", ["M 0 0 A 5 5 0 0 1 10 0", "M 0 0 a 5 5 0 0 1 10 0", "M 0 0 A 1 1 0 0 1 10 0"])
def test_semicircle_arc(d: str) -> None:
    # Centre (5, 0), radius 5 (the third one's radii are too small and scale up to 5), sweep 1 goes over y < 0
    # (clockwise on screen): two quarter circles.
    assert_segments(
        d,
        [[[0, 0], [0, -5 * K], [5 - 5 * K, -5], [5, -5]], [[5, -5], [5 + 5 * K, -5], [10, -5 * K], [10, 0]]],
    )


def test_arc_flags_without_separators() -> None:
    np.testing.assert_allclose(cubics("M0 0a5 5 0 1010 0"), cubics("M 0 0 a 5 5 0 1 0 10 0"))
    # sweep 0 is the mirror image: below the chord.
    assert_segments(
        "M0 0a5 5 0 1010 0",
        [[[0, 0], [0, 5 * K], [5 - 5 * K, 5], [5, 5]], [[5, 5], [5 + 5 * K, 5], [10, 5 * K], [10, 0]]],
    )


def test_large_arc_takes_three_quarters() -> None:
    # Circles of radius 5 through (0, 0) and (5, 5) are centred at (5, 0) or (0, 5); large + sweep gives the
    # 270° arc around (5, 0): through (5, -5) and (10, 0).
    segments = np.array(cubics("M 0 0 A 5 5 0 1 1 5 5"))
    assert segments.shape == (3, 4, 2)
    np.testing.assert_allclose(segments[:, 3], [[5, -5], [10, 0], [5, 5]], atol=1e-12)
    np.testing.assert_allclose(segments[0, 1], [0, -5 * K], atol=1e-12)
    points = flatten(parse_path_data("M 0 0 A 5 5 0 1 1 5 5")[0], 0.01)
    np.testing.assert_allclose(np.hypot(points[:, 0] - 5, points[:, 1]), 5, atol=5 * 3e-4)


def test_rotated_ellipse_arc() -> None:
    # rx 10 along the rotated x axis (pointing down), ry 5: the chord from (0, 0) to (0, 20) is the major axis,
    # the centre (0, 10), and sweep 1 passes through (5, 10).
    segments = np.array(cubics("M 0 0 A 10 5 90 0 1 0 20"))
    np.testing.assert_allclose(segments[:, 3], [[5, 10], [0, 20]], atol=1e-12)
    np.testing.assert_allclose(segments[0, 1], [5 * K, 0], atol=1e-12)
    points = flatten(parse_path_data("M 0 0 A 10 5 90 0 1 0 20")[0], 0.01)
    np.testing.assert_allclose((points[:, 0] / 5) ** 2 + ((points[:, 1] - 10) / 10) ** 2, 1, atol=2e-3)


def test_degenerate_arcs() -> None:
    assert_segments("M 0 0 A 0 5 0 0 1 6 0", [line((0, 0), (6, 0))])  # a zero radius is a line
    assert_segments("M 1 1 A 5 5 0 0 1 1 1 L 4 1", [line((1, 1), (4, 1))])  # equal endpoints: no segment
    assert_segments("M 0 0 A -5 -5 0 0 1 10 0", cubics("M 0 0 A 5 5 0 0 1 10 0"))  # radii are taken absolute


def test_closepath_adds_the_closing_segment_only_when_needed() -> None:
    (triangle,) = parse_path_data("M0 0 L 3 0 L 0 3 Z")
    assert triangle.closed and len(triangle.segments) == 3
    np.testing.assert_allclose(triangle.segments[2], line((0, 3), (0, 0)))
    (already,) = parse_path_data("M0 0 L 3 0 L 0 0 z")
    assert already.closed and len(already.segments) == 2
    (open_path,) = parse_path_data("M0 0 L 3 0 L 0 3")
    assert not open_path.closed and len(open_path.segments) == 2


def test_subpaths_and_what_follows_a_closepath() -> None:
    first, second = parse_path_data("M0 0 L1 0 M 5 5 L 6 5")
    assert not first.closed and not second.closed
    np.testing.assert_allclose(second.segments, [line((5, 5), (6, 5))])
    # A command right after Z starts the next subpath at the same initial point.
    _, after = parse_path_data("M 0 0 L 3 0 Z L 0 3")
    np.testing.assert_allclose(after.segments, [line((0, 0), (0, 3))])
    # A relative moveto after Z is relative to the closed subpath's start.
    _, moved = parse_path_data("M 1 1 L 3 1 z m 1 1 l 1 0")
    np.testing.assert_allclose(moved.segments, [line((2, 2), (3, 2))])
    # A lone moveto is a subpath without segments.
    (lone,) = parse_path_data("M 4 4")
    assert lone.segments.shape == (0, 4, 2) and not lone.closed


def test_number_grammar() -> None:
    assert_segments("M-.5.5 1.2.3", [line((-0.5, 0.5), (1.2, 0.3))])
    assert_segments("M1e-3,2E+1L0 0", [line((0.001, 20), (0, 0))])
    assert_segments("M+1-2l-1+2", [line((1, -2), (0, 0))])
    assert_segments("\n\tM 1 , 2\r\n L 3,4 ,5 6 ", [line((1, 2), (3, 4)), line((3, 4), (5, 6))])


def test_returns_subpaths_of_float64_arrays() -> None:
    (subpath,) = parse_path_data("M 0 0 L 1 1")
    assert isinstance(subpath, Subpath) and subpath.segments.dtype == np.float64


# --- hostile input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "words"),
    [
        ("", "it is empty"),
        ("   \n", "it is empty"),
        ("garbage", "must start with a moveto"),
        ("L 0 0 L 1 1", "must start with a moveto"),
        ("10 10", "must start with a moveto"),
        ("M 0 0 L nan 0", "a number was expected at character 9"),
        ("M 0 0 L inf 1", "a number was expected"),
        ("M 1e400 0", "'1e400' is too large"),
        ("M 1e308 0 l 1e308 0", "too large to represent"),
        ("M 0 0 L 1", "a number was expected"),
        ("M 0 0 Z 1 1", "'1' at character 9 is not a path command"),
        ("M 0 0 L 1 1 X 2 2", "'X' at character 13 is not a path command"),
        ("M 0 0 A 1 1 0 2 1 5 5", "an arc flag (0 or 1) was expected"),
        ("M 0 0 A 1e-320 1e-320 0 0 1 1 0", "too large or too small"),
    ],
)
def test_unreadable_path_data_is_one_sentence(d: str, words: str) -> None:
    with pytest.raises(PathDataError) as caught:
        parse_path_data(d)
    message = str(caught.value)
    assert words in message
    assert message.endswith("write SVG path data such as 'M 0 0 L 10 0 L 0 10 Z'.")
    assert message.count(". ") == 0 and "\n" not in message


def test_long_bad_input_is_echoed_short() -> None:
    with pytest.raises(PathDataError) as caught:
        parse_path_data("M 0 0 " + "L 1 1 " * 10_000 + "?")
    assert len(str(caught.value)) < 250


def test_wrong_type() -> None:
    with pytest.raises(PathDataError, match="must be a string"):
        parse_path_data(b"M 0 0 L 1 1")  # type: ignore[arg-type]


def test_too_many_segments() -> None:
    parse_path_data("M 0 0 " + "l 1 1 " * MAX_SEGMENTS)  # the limit itself is fine
    with pytest.raises(PathDataError, match=r"more than 100,000 segments; simplify the shape"):
        parse_path_data("M 0 0 " + "l 1 1 " * (MAX_SEGMENTS + 1))
    with pytest.raises(PathDataError, match="segments"):  # arcs count their cubics
        parse_path_data("M 0 0 " + "a 1 1 0 1 1 0 1 " * (MAX_SEGMENTS // 3 + 1))


def test_huge_arcs_stay_finite() -> None:
    (subpath,) = parse_path_data("M0 0 A 1e300 1e300 0 0 1 1e300 0")
    assert np.isfinite(subpath.segments).all()
    (tiny,) = parse_path_data("M0 0 A 1e-300 1e-300 0 0 1 1 0")  # scaled up to the half circle on the chord
    np.testing.assert_allclose(tiny.segments[0, 3], [0.5, -0.5], atol=1e-12)


# --- flattening --------------------------------------------------------------------------------------------------


def distance_to_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Each point's distance to the nearest segment of ``polyline``."""
    a, b = polyline[:-1], polyline[1:]
    ab = b - a
    t = np.clip(((points[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-300), 0, 1)
    nearest = a + t[..., None] * ab
    return np.linalg.norm(points[:, None] - nearest, axis=-1).min(axis=1)


@pytest.mark.parametrize("tolerance", [1.0, 0.1, 0.01])
def test_flatten_stays_within_tolerance(tolerance: float) -> None:
    (subpath,) = parse_path_data("M 10 80 C 40 10 65 10 95 80 S 150 150 180 80 Q 250 0 300 300 A 60 40 20 1 0 10 80 Z")
    polyline = flatten(subpath, tolerance)
    t = np.linspace(0, 1, 400)[:, None]
    curve = np.concatenate(
        [
            (1 - t) ** 3 * c[0] + 3 * (1 - t) ** 2 * t * c[1] + 3 * (1 - t) * t**2 * c[2] + t**3 * c[3]
            for c in subpath.segments
        ]
    )
    error = distance_to_polyline(curve, polyline).max()
    assert error <= tolerance
    assert error > tolerance / 20  # not absurdly finer than asked (Wang's bound is within a small factor)
    np.testing.assert_allclose(polyline[0], polyline[-1])  # closed: ends where it starts


def test_flatten_straight_and_empty() -> None:
    (straight,) = parse_path_data("M 0 0 L 100 50")
    np.testing.assert_allclose(flatten(straight), [[0, 0], [100, 50]])
    assert flatten(parse_path_data("M 3 3")[0]).shape == (0, 2)


@pytest.mark.parametrize("tolerance", [0.0, -1.0, math.nan, math.inf])
def test_flatten_rejects_a_bad_tolerance(tolerance: float) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        flatten(parse_path_data("M 0 0 L 1 1")[0], tolerance)


def test_flatten_refuses_absurd_detail() -> None:
    (huge,) = parse_path_data("M 0 0 C 1e12 1e12 -1e12 1e12 0 1")
    with pytest.raises(PathDataError, match="too large to draw"):
        flatten(huge, 0.1)

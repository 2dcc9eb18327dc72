"""Stroke initialisation: sampling follows the map without repeating a pixel; the random walk; determinism."""

from __future__ import annotations

import pytest
import torch

from clipasso_engine.strokes import initial_strokes, sample_start_points


def two_regions(high: float = 0.75) -> torch.Tensor:
    """1000 pixels sharing ``high`` of the mass (rows 0-9), 1000 sharing the rest (rows 100-109), zeros elsewhere."""
    probabilities = torch.zeros(224, 224)
    probabilities[0:10, 0:100] = high / 1000
    probabilities[100:110, 0:100] = (1 - high) / 1000
    return probabilities


def pixels(points: torch.Tensor) -> set[tuple[int, int]]:
    """(row, col) of start points, which sit on their pixel's top-left corner."""
    assert torch.equal(points, points.round())
    return {(int(y), int(x)) for x, y in points.long().tolist()}


def test_start_points_are_pixel_corners_in_x_y_order() -> None:
    # Spec §3.5: pixel (row 3, column 7) starts its stroke at (x, y) = (7, 3), not at the centre (7.5, 3.5).
    probabilities = torch.zeros(224, 224)
    probabilities[3, 7] = 1
    points = sample_start_points(probabilities, 1, torch.Generator().manual_seed(0))
    assert points.tolist() == [[7.0, 3.0]]
    strokes = initial_strokes(probabilities, 1, seed=0)
    assert strokes[0, 0].tolist() == [7.0, 3.0]


def test_sampling_never_repeats_a_pixel_and_stays_on_the_map() -> None:
    probabilities = torch.zeros(224, 224)
    probabilities[40:55, 60:80] = torch.rand(15, 20, generator=torch.Generator().manual_seed(1)) + 0.01
    probabilities /= probabilities.sum()
    points = sample_start_points(probabilities, 300, torch.Generator().manual_seed(2))  # every positive pixel
    chosen = pixels(points)
    assert len(chosen) == 300
    assert all(40 <= row < 55 and 60 <= col < 80 for row, col in chosen)


def test_sampling_follows_the_map() -> None:
    probabilities = two_regions(0.75)
    high = 0
    total = 0
    for seed in range(100):
        points = sample_start_points(probabilities, 40, torch.Generator().manual_seed(seed))
        assert len(pixels(points)) == 40
        high += int((points[:, 1] < 10).sum())
        total += 40
        assert ((points[:, 1] < 10) | ((points[:, 1] >= 100) & (points[:, 1] < 110))).all()
    assert high / total == pytest.approx(0.75, abs=0.03)


def test_a_dominant_pixel_is_drawn_first() -> None:
    probabilities = torch.full((224, 224), 1e-9)
    probabilities[100, 50] = 1
    for seed in range(5):
        points = sample_start_points(probabilities, 3, torch.Generator().manual_seed(seed))
        assert points[0].tolist() == [50.0, 100.0]


def test_too_few_positive_pixels_fall_back_without_repeats() -> None:
    probabilities = torch.zeros(224, 224)
    positive = [(5, 5), (5, 6), (100, 100), (200, 10), (0, 223)]
    for row, col in positive:
        probabilities[row, col] = 0.2
    points = sample_start_points(probabilities, 12, torch.Generator().manual_seed(3))
    chosen = pixels(points)
    assert len(chosen) == 12
    assert pixels(points[:5]) == set(positive)  # the positive pixels come first


def test_sampling_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="between 1 and 16"):
        sample_start_points(torch.ones(4, 4) / 16, 17, torch.Generator())


def test_initial_strokes_shape_walk_and_determinism() -> None:
    probabilities = two_regions()
    strokes = initial_strokes(probabilities, 64, seed=7)
    assert strokes.shape == (64, 4, 2) and strokes.dtype == torch.float32
    steps = strokes[:, 1:] - strokes[:, :-1]
    limit = 0.025 * 224  # ±5.6 px per axis
    assert steps.abs().max() <= limit + 1e-5
    assert steps.max() > 0.8 * limit and steps.min() < -0.8 * limit  # uniform over the whole range
    assert torch.equal(strokes, initial_strokes(probabilities, 64, seed=7))
    assert not torch.equal(strokes, initial_strokes(probabilities, 64, seed=1000))
    # The start points are the seed's first draw.
    starts = sample_start_points(probabilities, 64, torch.Generator().manual_seed(7))
    assert torch.equal(strokes[:, 0], starts)


def test_initial_strokes_options() -> None:
    probabilities = two_regions()
    strokes = initial_strokes(
        probabilities, 8, seed=0, step=0.1, canvas=100, control_points=3, device=torch.device("cpu")
    )
    assert strokes.shape == (8, 3, 2)
    assert (strokes[:, 1:] - strokes[:, :-1]).abs().max() <= 10 + 1e-5
    with pytest.raises(ValueError, match="control_points"):
        initial_strokes(probabilities, 8, seed=0, control_points=0)


def test_each_function_draws_from_its_own_generator_and_leaves_the_global_rng_alone() -> None:
    probabilities = two_regions()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = initial_strokes(probabilities, 16, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(1000)  # consuming the global stream in between changes nothing
    assert torch.equal(initial_strokes(probabilities, 16, seed=5), first)

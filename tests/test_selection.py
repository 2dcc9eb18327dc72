"""Selection of the kept points and the early-stop rule (spec §6), on scripted loss sequences."""

from __future__ import annotations

import math

import torch

from clipasso_engine.selection import SeedSelection

DELTA = 1e-5


def points_of(step: int, seeds: int = 1) -> torch.Tensor:
    """(S, 1, 4, 2) points that name the evaluation they were scored at (and the seed)."""
    return torch.stack([torch.full((1, 4, 2), float(step * 10 + s)) for s in range(seeds)])


def replay(losses: list[float], delta: float = DELTA) -> tuple[SeedSelection, int | None]:
    """Feed one seed's evaluation losses in order; return the state and the index of the stopping evaluation."""
    selection = SeedSelection(points_of(-1), delta)
    stopped_at = None
    for step, loss in enumerate(losses):
        selection.record(torch.tensor([loss]), points_of(step))
        if stopped_at is None and bool(selection.stopped[0]):
            stopped_at = step
    return selection, stopped_at


def test_steady_improvement_never_stops_and_keeps_the_last() -> None:
    selection, stopped_at = replay([5.0, 4.0, 3.0, 2.0, 1.0])
    assert stopped_at is None
    assert float(selection.best_loss[0]) == 1.0
    assert torch.equal(selection.best_points, points_of(4))


def test_best_is_the_lowest_evaluation_not_the_last() -> None:
    selection, stopped_at = replay([3.0, 1.0, 2.0, 4.0, 1.5])
    assert stopped_at is None
    assert float(selection.best_loss[0]) == 1.0
    assert torch.equal(selection.best_points, points_of(1))  # exactly the points scored at evaluation 1
    assert [float(v) for v in selection.best_so_far] == [3.0, 1.0, 1.0, 1.0, 1.0]  # a running minimum


def test_stops_at_the_second_flat_evaluation_in_a_row() -> None:
    _, stopped_at = replay([3.0, 2.0, 2.0 + 4e-6, 2.0 - 3e-6, 1.0])
    assert stopped_at == 3


def test_flat_evaluations_need_not_be_consecutive_a_worse_one_in_between_changes_nothing() -> None:
    # Flat (sets the flag), worse by more than delta (neither clears nor counts), flat again: stop.
    selection, stopped_at = replay([2.0, 2.0 + 5e-6, 2.5, 2.0 - 5e-6, 0.5])
    assert stopped_at == 3
    assert float(selection.best_loss[0]) == 2.0  # within delta is not a new best; the 0.5 came after the stop
    assert torch.equal(selection.best_points, points_of(0))


def test_two_flat_evaluations_far_apart_with_worse_ones_between() -> None:
    _, stopped_at = replay([2.0, 2.0, 3.0, 2.9, 4.0, 2.0 + 8e-6, 1.0])
    assert stopped_at == 5


def test_a_new_best_between_flat_evaluations_clears_the_flag() -> None:
    _, stopped_at = replay([2.0, 2.0, 1.0, 1.0 + 1e-6, 3.0, 1.0, 0.5])
    assert stopped_at == 5  # the flat at 1 (evaluation 1) was cleared by the new best at evaluation 2


def test_compared_with_the_best_not_with_the_previous_evaluation() -> None:
    # Consecutive evaluations equal to each other but worse than the best: a rule on the previous evaluation would
    # stop here; the method's rule does not, because none is within delta of the best.
    selection, stopped_at = replay([1.0, 3.0, 3.0, 3.0, 3.0])
    assert stopped_at is None
    assert not bool(selection.flat[0])


def test_an_improvement_within_delta_is_not_a_new_best() -> None:
    selection, _ = replay([2.0, 2.0 - 0.5e-5])
    assert float(selection.best_loss[0]) == 2.0 and torch.equal(selection.best_points, points_of(0))
    assert bool(selection.flat[0])


def test_zero_delta_keeps_the_strictly_lowest_and_never_stops() -> None:
    selection, stopped_at = replay([2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0], delta=0.0)
    assert stopped_at is None
    assert float(selection.best_loss[0]) == 1.0 and torch.equal(selection.best_points, points_of(3))


def test_non_finite_evaluations_are_never_kept_and_never_count() -> None:
    selection, stopped_at = replay([2.0, math.nan, math.inf, 2.0, 1.0])
    assert stopped_at is None  # NaN and inf neither set nor met the flat flag: only evaluation 3 was flat
    assert float(selection.best_loss[0]) == 1.0 and torch.equal(selection.best_points, points_of(4))


def test_seeds_are_independent_and_a_stopped_seed_is_frozen() -> None:
    selection = SeedSelection(points_of(-1, seeds=2), DELTA)
    script = [(3.0, 5.0), (3.0, 4.0), (3.0, 3.0), (0.1, 2.0)]  # seed 0 stops at evaluation 2
    for step, losses in enumerate(script):
        selection.record(torch.tensor(losses), points_of(step, seeds=2))
    assert selection.stopped.tolist() == [True, False]
    assert selection.best_loss.tolist() == [3.0, 2.0]  # seed 0 ignored the 0.1 that came after its stop
    assert torch.equal(selection.best_points[0], points_of(0, seeds=2)[0])
    assert torch.equal(selection.best_points[1], points_of(3, seeds=2)[1])
    assert int(selection.leader()) == 1
    assert torch.equal(selection.leader_points(), points_of(3, seeds=2)[1])
    assert [float(v) for v in selection.best_so_far] == [3.0, 3.0, 3.0, 2.0]


def test_before_any_evaluation_the_start_points_are_kept() -> None:
    start = points_of(-1, seeds=3)
    selection = SeedSelection(start, DELTA)
    assert torch.equal(selection.best_points, start) and selection.best_points is not start
    assert torch.isinf(selection.best_loss).all() and not selection.best_so_far

"""Stroke importance (issue 12): the written order's tail is what costs least to delete; blocks stay in place."""

from __future__ import annotations

import pytest
import torch
from test_optimize import scene, target_image
from tiny_models import TinyModels

import clipasso_engine.importance as importance
from clipasso_engine.augment import draw_augmentations
from clipasso_engine.config import SketchSettings
from clipasso_engine.errors import Cancelled
from clipasso_engine.importance import rank_strokes
from clipasso_engine.loss_network import LossNetwork, load_loss_network
from clipasso_engine.normalize import clip_normalize
from clipasso_engine.optimize import RunControl, batch_losses, optimise_strokes

CPU = torch.device("cpu")
SETTINGS = SketchSettings(iterations=40, seeds=1, augmentations=2, early_stop_delta=0.0, precision="fp32")


@pytest.fixture(scope="module")
def network(tiny_models: TinyModels) -> LossNetwork:
    return load_loss_network(tiny_models.settings(), CPU)


def _losses(network: LossNetwork, sketches: list[torch.Tensor], target: torch.Tensor) -> list[float]:
    """Clean-pair loss of each sketch (each (m, 4, 2), m ≥ 1)."""
    with torch.no_grad():
        clean_target = network(clip_normalize(target[None]))
        empty = torch.zeros(0, 224, 224, 2)
        return [
            float(batch_losses(s[None], target, clean_target, network, empty, SETTINGS, 3.0)[1][0]) for s in sketches
        ]


def _optimised(network: LossNetwork, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A short real run: ``count`` strokes fitted to a rendered 12-stroke target."""
    truth = scene(seed, strokes=12)
    target = target_image(truth)
    start = scene(seed + 50, strokes=count)[None]
    plan = draw_augmentations(seed, SETTINGS.iterations, SETTINGS.augmentations)
    result = optimise_strokes(start, target, network, SETTINGS.replace(strokes=count), plan, width=3.0)
    return result.points, target


@pytest.mark.parametrize("method", ["greedy", "leave-one-out"])
@pytest.mark.parametrize("seed", [1, 2])
def test_deleting_the_last_k_costs_less_than_deleting_k_random_strokes(
    network: LossNetwork, monkeypatch: pytest.MonkeyPatch, method: str, seed: int
) -> None:
    """For every k, the loss after deleting the written order's last k strokes is below the mean over 24 random
    deletions of k strokes."""
    if method == "leave-one-out":
        monkeypatch.setattr(importance, "GREEDY_LIMIT", 0)
    count = 8
    points, target = _optimised(network, count, seed)
    ranking = rank_strokes(points, target, network, SETTINGS, width=3.0)
    assert ranking.method == method and sorted(ranking.order) == list(range(count))
    ordered = points[ranking.order]
    generator = torch.Generator().manual_seed(seed)
    for k in range(1, count):
        kept = _losses(network, [ordered[: count - k]], target)[0]
        subsets = [torch.randperm(count, generator=generator)[: count - k] for _ in range(24)]
        random = _losses(network, [points[s] for s in subsets], target)
        assert kept < sum(random) / len(random), (k, kept, sum(random) / len(random))


def test_greedy_importances_are_the_marginal_rises_of_the_written_order(network: LossNetwork) -> None:
    """The first k importances sum to the blank sketch's loss minus the loss of the first k strokes."""
    points, target = _optimised(network, 6, 3)
    ranking = rank_strokes(points, target, network, SETTINGS, width=3.0)
    ordered = points[ranking.order]
    losses = _losses(network, [ordered[:k] for k in range(1, 7)], target)
    with torch.no_grad():
        blank = _blank_loss(network, target)
    for k in range(1, 7):
        assert sum(ranking.importance[:k]) == pytest.approx(blank - losses[k - 1], rel=1e-4, abs=1e-5)
    # Greedy removes the cheapest stroke first, so the last written stroke is the one whose removal costs least.
    rises = [
        a - losses[-1] for a in _losses(network, [points[[j for j in range(6) if j != i]] for i in range(6)], target)
    ]
    assert ranking.order[-1] == min(range(6), key=rises.__getitem__)


def _blank_loss(network: LossNetwork, target: torch.Tensor) -> float:
    from clipasso_engine.losses import clip_pair_losses

    blank = network(clip_normalize(torch.ones(1, 3, 224, 224)))
    return float(clip_pair_losses(blank, network(clip_normalize(target[None])))[0])


def test_a_ladder_is_ranked_within_each_level_block(network: LossNetwork) -> None:
    points, target = _optimised(network, 7, 4)
    ranking = rank_strokes(points, target, network, SETTINGS, width=3.0, levels=(2, 3, 7))
    assert sorted(ranking.order[:2]) == [0, 1] and ranking.order[2] == 2 and sorted(ranking.order[3:]) == [3, 4, 5, 6]
    # Each block's greedy order is the same as ranking that block alone with the lower strokes always present.
    alone = rank_strokes(points[:3], target, network, SETTINGS, width=3.0, levels=(2, 3))
    assert alone.order == ranking.order[:3]
    assert alone.importance == pytest.approx(ranking.importance[:3], rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="top level"):
        rank_strokes(points, target, network, SETTINGS, width=3.0, levels=(2, 5))


def test_cancel_ends_the_ranking(network: LossNetwork) -> None:
    control = RunControl()
    control.cancel()
    with pytest.raises(Cancelled):
        rank_strokes(scene(1, strokes=4), target_image(scene(2)), network, SETTINGS, width=3.0, control=control)


def test_a_single_stroke_has_the_whole_loss_drop_as_its_importance(network: LossNetwork) -> None:
    target = target_image(scene(5))
    stroke = scene(5, strokes=1)
    ranking = rank_strokes(stroke, target, network, SETTINGS, width=3.0)
    with torch.no_grad():
        expected = _blank_loss(network, target) - _losses(network, [stroke], target)[0]
    assert ranking.order == [0] and ranking.importance == pytest.approx([expected], rel=1e-4, abs=1e-6)

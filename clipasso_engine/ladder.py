"""The abstraction ladder: one run whose every prefix of strokes is itself a sketch (issue 12).

With levels k_1 < … < k_L = N, the run optimises N strokes so that the first k_j are the k_j-stroke sketch.

Objective (chosen by measurement, see MEASURED below): each iteration's batch is the plain method's for the top level
(1 clean + A augmented pairs, mean over them), plus the clean pair of ONE lower level's prefix, the levels taken in
turn (round robin: iteration t trains level ``t mod (L − 1)``), added with weight 1. The prefix rides in the same
network batch, so a ladder costs one extra sketch row per seed and iteration: (1 + A + 1)/(1 + A) of the network
work at most, whatever the number of levels. Every ``eval_every`` iterations the batch holds every lower level's
clean pair (only the round-robin one joins the objective) so that all levels are scored at once.

Selection: the score of a seed's points is the MEAN of its levels' clean losses. Every level is part of the output
and the artist chooses among them afterwards, so none should be traded away for another; the mean (not the sum)
keeps the score on the scale of one clean loss, so spec §6's early stop (absolute δ = 1e-5, ``SeedSelection``)
means what it means without a ladder. The kept points are exactly the scored ones, as without a ladder.

MEASURED (``python benchmarks/ladder_measure.py quality --iterations 300 --targets 3``; test models, rendered
32-stroke targets, levels 4/8/16/32, 1 seed, 4 augmentations; each cell the level's clean loss over an independent
k-stroke run's from the same first k starts, 1.0 = as good, mean of 3 targets; per-target spread about ±0.1):

    objective                                      4      8      16     32     targets  cost
    round robin, 1 lower clean pair (shipped)      1.14   1.21   1.25   1.25   3        1.26x paper, 1.24x fast
    every lower level's clean pair (a)             1.14   1.29   1.30   1.40   2        +3 rows/seed: 8/5, 6/3 *
    round robin, weighted x(L-1) (c')              1.12   1.24   1.24   1.40   1        as shipped
    nested dropout, one level per iteration (b)    1.07   1.10   1.09   1.57   2        about 1x *
    (* not timed: network rows per seed and iteration against the plain run's 1 + A)

None is within the 10 % the issue aims for: on these test models a nested sketch pays 10-25 % at every level (and the
ladder's low prefixes are not even reliably better than a plain run's first k strokes: tests/test_ladder.py). We
ship the round robin: it is the only one whose worst level stays near 1.25 (nested dropout starves the top level:
its own strokes train only when it is drawn), within the 1.5x cost bound where (a) is not. Cost
(``python benchmarks/ladder_measure.py cost``, plain and ladder alternated in one process, 32 strokes, 1 thread):
plain 0.198 s/it, ladder 0.250 s/it (1.26x) for the paper shape, 0.044 / 0.055 (1.24x) for the fast shape. Not
measured: full-size RN101 (no GPU here, and the shared CPU was too loaded), nor real CLIP weights, whose loss is far
better behaved than the random test models', so these ratios are a pessimistic proxy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .selection import SeedSelection


class LadderObjective:
    """Which prefixes join each iteration's batch, how their losses join the objective, and each level's loss.

    Without a ladder, ``levels`` is just ``(N,)``: no prefixes, and the objective is exactly the plain method's.
    """

    def __init__(self, levels: tuple[int, ...], eval_every: int) -> None:
        if not levels or list(levels) != sorted(set(levels)) or levels[0] < 1:
            raise ValueError(f"ladder levels must be increasing positive stroke counts, got {levels}")
        self.levels = levels
        self.lower = levels[:-1]
        self.eval_every = eval_every

    def trained(self, iteration: int) -> int | None:
        """The lower level whose prefix joins the objective at ``iteration`` (round robin), or None."""
        return self.lower[iteration % len(self.lower)] if self.lower else None

    def prefixes(self, iteration: int) -> tuple[int, ...]:
        """The prefix sizes rendered into this iteration's batch: every lower level when it is scored."""
        if iteration % self.eval_every == 0:
            return self.lower
        trained = self.trained(iteration)
        return () if trained is None else (trained,)

    def combine(self, iteration: int, per_seed: Tensor, clean: Tensor, prefix_clean: Tensor) -> tuple[Tensor, Tensor]:
        """(objective (S,), levels (S, L) or (S, 0)): the per-seed loss to minimise, and every level's clean loss
        when all were in the batch (at a scored iteration), else an empty (S, 0)."""
        prefixes = self.prefixes(iteration)
        trained = self.trained(iteration)
        objective = per_seed
        if trained is not None:
            objective = per_seed + prefix_clean[:, prefixes.index(trained)]
        if len(prefixes) == len(self.lower):
            return objective, torch.cat([prefix_clean, clean[:, None]], dim=1)
        return objective, clean.new_zeros(clean.shape[0], 0)


class LevelSelection(SeedSelection):
    """:class:`SeedSelection` on the ladder's score (the mean of the levels' clean losses), keeping each level's
    clean loss of the kept points too."""

    def __init__(self, points: Tensor, early_stop_delta: float, levels: int) -> None:
        super().__init__(points, early_stop_delta)
        self.best_levels = torch.full((points.shape[0], levels), float("inf"), device=points.device)

    def record_levels(self, levels: Tensor, points: Tensor) -> None:
        """One evaluation: ``levels`` (S, L) are the clean losses of each level of ``points`` (S, N, 4, 2)."""
        levels = levels.detach().to(self.best_levels.dtype)
        previous = self.best_loss
        # With one level the mean is that loss itself, bit for bit: a plain run scores exactly as without a ladder.
        self.record(levels[:, 0] if levels.shape[1] == 1 else levels.mean(dim=1), points)
        # A new best lowers best_loss by more than δ ≥ 0; nothing else changes it.
        self.best_levels = torch.where((self.best_loss < previous)[:, None], levels, self.best_levels)


def block_bounds(levels: tuple[int, ...]) -> list[tuple[int, int]]:
    """[(start, end)] of the strokes each level adds: level j's block is strokes ``start:end``."""
    return list(zip((0, *levels[:-1]), levels, strict=True))


__all__ = ["LadderObjective", "LevelSelection", "block_bounds"]

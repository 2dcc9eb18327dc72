"""A refine's abstraction ladder: levels trained as prefixes of a fixed stroke order (issue 12).

A new sketch's ladder is cut from the plain run's importance order (``ladder_cut.py``), which measured better at
every level. A refine keeps its given order, since its lock indices and the artist's per-stroke styles refer to it, so
its levels k_1 < … < k_L = N are made by the objective here: the run optimises N strokes so that the first k_j are
the k_j-stroke sketch. ``optimise_strokes`` runs it whenever ``settings.ladder`` reaches it; ``block_bounds`` and
``LevelSelection`` serve both kinds.

Objective: each iteration's batch is the plain method's for the top level (1 clean + A augmented pairs, mean over
them), plus prefix pairs within a row budget:
- every ``eval_every``-th iteration is scored: every lower level's clean pair joins the batch, trained (their mean,
  weight 1 in all) and recorded, so that all levels are scored on the same points;
- the other iterations add at most ONE pair of ONE lower level, weight 1: the levels take turns, and each level's
  pair cycles through its clean pair and the iteration's A augmentations (the same warps and target features as the
  top level's, so no extra target pass), so over 1 + A turns a level sees what the method's 1 + A pairs show it;
- the budget (``EXTRA_ROW_SHARE``): the extra network rows average at most 2/5 of the plain run's 1 + A per
  iteration, 1.4x the rows, so the unscored iterations that add a pair are spread evenly at ``rate``: all of them
  for paper (A = 4) and fast (A = 2) with up to 3 lower levels, 5 of 9 for draft (A = 1). With many levels the scored
  rows alone can exceed the budget (draft: 8 lower levels or more), and then no other iteration adds a pair.

Selection: the score of a seed's points is the MEAN of its levels' clean losses. Every level is part of the output
and the artist chooses among them afterwards, so none should be traded away for another; the mean (not the sum)
keeps the score on the scale of one clean loss, so spec §6's early stop (absolute δ = 1e-5, ``SeedSelection``)
means what it means without a ladder. The kept points are exactly the scored ones, as without a ladder.

MEASURED (``python benchmarks/ladder_measure.py quality --iterations 300 --targets 4 --first-target 0|4
--variants …`` as two processes, and ``--shape draft --iterations 150`` for draft's shape; test models, rendered
32-stroke targets, levels 4/8/16/32, 1 seed; each cell the level's clean loss over an independent k-stroke run's
from the same first k starts, same plan, settings and iterations, 1.0 = as good; the mean over the targets, ± the
per-target standard deviation):

    paper shape (4 augmentations), 8 targets             4           8           16          32
    this objective ("prefix")                            1.09±.04    1.19±.14    1.18±.09    1.14±.13
                                      image error        1.00        1.04        1.08        1.17
    a pair at every iteration, the trained one beside    1.10±.08    1.21±.10    1.21±.09    1.17±.14
    the scored ones ("aug", before the row budget)
    the same, turns in proportion to the level's size    1.13±.08    1.21±.11    1.20±.13    1.15±.05
    the lower pairs at weight 2 (4 targets)              1.10        1.16        1.27        1.26
    every level every iteration from its latest          1.14        1.15        1.28        1.40
    gradient, weight 1/(L-1) (3 targets)
    draft shape (1 augmentation from 16), 8 targets
    this objective (a pair at 5 of 9 unscored)           1.03±.04    1.06±.04    1.11±.06    1.02±.05
    a pair at every iteration ("aug", 1.65x the rows)    1.01±.03    1.01±.05    1.05±.07    0.97±.09
    a new sketch's cut ladder, for comparison            0.92±.05    0.88±.04    0.91±.07    1.00

Earlier, on 4 targets or fewer (``--variants previous,topselect,w0.5,two,two-aug,progressive,all,dropout``): one
lower level's clean pair in turn 1.15/1.21/1.26/1.18; the same with selection on the top level alone 1.15/1.22/
1.26/1.17; lower pair weighted 0.5 1.15/1.23/1.27/1.15; two pairs per iteration 1.09/1.10/1.19/1.20 (for 1.67x
fast's rows); progressive (levels added over the first half) 1.08/1.05/1.20/1.33; every lower level's clean pair in
every batch 1.14/1.29/1.30/1.40; nested dropout (one level drawn per iteration) 1.07/1.10/1.09/1.57.
The measure's own noise (an independent run with another augmentation plan): 1.01±.11/1.01±.02/0.99±.07/1.00±.07.

Reading: against the pair at every iteration that it replaces, the row budget changes nothing measurable where it
keeps every pair (paper shape: −0.01 to −0.03 at each level, standard errors 0.02-0.04) and costs draft 0.02-0.06
(standard errors 0.01-0.03) where it drops 4 of 9. No trained objective came within 10 % at every level; the top
level's deficit is the price of the nesting itself, its first strokes serving the lower levels too. That is why a new
sketch's ladder is cut instead.

Cost (``python benchmarks/ladder_measure.py cost --rn101 --shapes fast,draft``: full-size RN101, random weights,
32 strokes, fp32, 1 thread, plain and ladder alternated, medians of 3): fast's shape 1.29x, draft's 1.30x (before
the budget draft measured 1.48-1.61x in ``clipasso bench --ladder``). ``clipasso bench --ladder`` times a new
sketch's cut ladder.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor

from .objective import Prefix
from .selection import SeedSelection

#: The ladder's network rows beyond a plain run's, averaged over the run, as a share of the plain run's 1 + A rows
#: per iteration: 1.4x the rows, under issue 12's 1.5x bound with room for the renderer's share and the noise.
EXTRA_ROW_SHARE = Fraction(2, 5)


class LadderObjective:
    """Which prefix pairs join each iteration's batch, how their losses join the objective, and each level's loss.

    Without a ladder, ``levels`` is just ``(N,)``: no prefixes, and the objective is exactly the plain method's.
    """

    def __init__(self, levels: tuple[int, ...], eval_every: int, augmentations: int = 0) -> None:
        if not levels or list(levels) != sorted(set(levels)) or levels[0] < 1:
            raise ValueError(f"ladder levels must be increasing positive stroke counts, got {levels}")
        if eval_every < 1:
            raise ValueError(f"eval_every must be at least 1, got {eval_every}")
        self.levels = levels
        self.lower = levels[:-1]
        self.eval_every = eval_every
        self.augmentations = augmentations
        # A scored iteration spends L - 1 rows (every lower level's clean pair); the budget's rest goes to the other
        # iterations, one pair each at most, at this share of them (exact fractions: fast's 1.0 must not round down).
        budget = EXTRA_ROW_SHARE * (1 + augmentations) - Fraction(len(self.lower), eval_every)
        others = 1 - Fraction(1, eval_every)
        self.rate = min(Fraction(1), max(Fraction(0), budget / others)) if self.lower and others else Fraction(0)

    def scored(self, iteration: int) -> bool:
        return iteration % self.eval_every == 0

    def trained(self, iteration: int) -> Prefix | None:
        """The one pair (k, a) that joins the objective at an iteration that is not scored, or None (no lower
        levels, a scored iteration, or one the row budget skips).

        The unscored iterations that train a pair are spread evenly at ``rate``; the n-th of them trains level
        ``lower[n mod (L − 1)]`` (round robin) with pair ``(n div (L − 1)) mod (1 + A) − 1`` (−1 its clean pair, else
        the iteration's augmentation a), so each level meets its clean pair and every augmentation in turn."""
        if not self.lower or self.scored(iteration):
            return None
        unscored = iteration - iteration // self.eval_every - 1  # how many unscored iterations came before this one
        turn = math.floor(unscored * self.rate)
        if math.floor((unscored + 1) * self.rate) == turn:
            return None
        rotation, level = divmod(turn, len(self.lower))
        return self.lower[level], rotation % (1 + self.augmentations) - 1

    def prefixes(self, iteration: int) -> tuple[Prefix, ...]:
        """The prefix pairs rendered into this iteration's batch: every lower level's clean pair when it is scored
        (scored and trained both), else the trained pair if any."""
        if self.scored(iteration):
            return tuple((k, -1) for k in self.lower)
        trained = self.trained(iteration)
        return () if trained is None else (trained,)

    def combine(self, iteration: int, per_seed: Tensor, clean: Tensor, prefix_losses: Tensor) -> tuple[Tensor, Tensor]:
        """(objective (S,), levels (S, L) or (S, 0)): the per-seed loss to minimise (the top level's mean over its
        1 + A pairs plus the lower levels' weight 1: the trained pair's loss, or at a scored iteration the mean of
        every lower level's clean loss), and every level's clean loss at a scored iteration, else an empty (S, 0)."""
        if not self.scored(iteration):
            objective = per_seed + prefix_losses[:, 0] if prefix_losses.shape[1] else per_seed
            return objective, clean.new_zeros(clean.shape[0], 0)
        if not self.lower:
            return per_seed, clean[:, None]
        return per_seed + prefix_losses.mean(dim=1), torch.cat([prefix_losses, clean[:, None]], dim=1)


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

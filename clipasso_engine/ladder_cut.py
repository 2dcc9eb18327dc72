"""A new sketch's abstraction ladder, cut from the importance order of one plain run (issue 12).

The run optimises the top level's N strokes with the plain method's objective and keeps its points as the plain
method does. Afterwards the greedy importance order ranks all N strokes (``importance.py``: backward elimination,
each step removing the stroke the others miss least), and level k is the first k strokes of that order. So each
level is nested in the next by construction, the top level is exactly the plain sketch, and a lower level is the
best k strokes greedy finds among N optimised ones, not k strokes pulled between serving alone and serving in the
larger sketches. It costs what a plain sketch costs, which ranks its strokes the same way, plus one clean pass per
level and the live estimate below.

A refine keeps its given order (its lock indices and the artist's per-stroke styles refer to it), so a refined
ladder's levels are trained as prefixes instead (``ladder.LadderObjective``).

MEASURED (``python benchmarks/ladder_measure.py quality --iterations 300 --targets 8 --greedy --variants ""``, and
``--shape draft --iterations 150`` for draft's shape; test models, rendered 32-stroke targets, levels 4/8/16/32, 1
seed; each cell the level's clean loss / image error over an independent k-stroke run's from the same first k
starts, same plan, settings and iterations, 1.0 = as good; mean of 8 targets, ± the per-target standard deviation):

    ladder, paper shape (4 augmentations)                   4           8           16          32
    cut in the greedy order (shipped)                       0.95±.08    0.95±.10    0.87±.11    1.00
                                             image error    0.95        0.95        0.92        1.00
    cut in leave-one-out order (blocks above GREEDY_LIMIT)  0.98±.10    0.98±.11    0.90±.11    1.00
    trained prefixes (a refine's; ladder.py)                1.09±.04    1.19±.14    1.18±.09    1.14±.13
                                             image error    1.00        1.04        1.08        1.17
    first k strokes of the plain run, optimiser's order     1.15        1.25        1.26        1.00   (4 targets)
    an independent run, another augmentation plan           1.01±.11    1.01±.02    0.99±.07    1.00±.07 (4 targets)
    draft shape (1 augmentation from 16, 150 iterations)
    cut in the greedy order (shipped)                       0.92±.05    0.88±.04    0.91±.07    1.00
    trained prefixes                                        1.03±.04    1.06±.04    1.11±.06    1.02±.05

Every level is within the issue's 10 % of an independent sketch of its stroke count, and better than one on average:
choosing k of N optimised strokes beats optimising k from k starts. ``ladder.py`` lists the trained objectives tried
(every one 1.07-1.57 at some level).

During the run the levels exist only as an estimate, so that progress can show them: every ``ESTIMATE_EVERY``
iterations, and at the last, the current best strokes are ranked leave-one-out (N + 1 clean passes without
gradients, against the greedy ranking's N(N + 1)/2), and a progress report carries each level's loss in that order
and the strokes in that order, so the preview shows the levels as they stand. The written levels are the greedy
ranking's of the kept points.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .config import SketchSettings
from .importance import rank_strokes
from .objective import FeatureNetwork
from .optimize import Progress, RunControl
from .precision import autocast_context, resolve_precision

#: Iterations between two live estimates of the levels (each N + 1 + L clean passes, no gradients).
ESTIMATE_EVERY = 50


class LiveLevels:
    """Wraps a progress callback of a cut ladder's run: each report gets the levels' estimated losses and the best
    strokes in the estimated order (canvas px, as ``optimise_strokes`` reports them)."""

    def __init__(
        self,
        callback: Callable[[Progress], None],
        levels: Sequence[int],
        target: Tensor,
        network: FeatureNetwork,
        settings: SketchSettings,
        *,
        width: float,
        autocast: contextlib.AbstractContextManager[object] | None = None,
        control: RunControl | None = None,
        every: int = ESTIMATE_EVERY,
    ) -> None:
        self.callback, self.levels, self.every = callback, tuple(levels), every
        self.target, self.network, self.settings = target, network, settings
        self.width, self.autocast, self.control = width, autocast, control
        self.order: list[int] = []
        self.losses: list[float] = []
        self.estimated_at = -every  # the first report estimates

    def __call__(self, progress: Progress) -> None:
        # The last report too, so that the run's final progress estimates the levels of its final strokes.
        if progress.iteration - self.estimated_at >= self.every or progress.iteration >= progress.iterations:
            points = progress.best_points()
            common: dict[str, Any] = {"width": self.width, "autocast": self.autocast, "control": self.control}
            ranking = rank_strokes(points, self.target, self.network, self.settings, greedy_limit=0, cuts=self.levels,
                                   **common)  # fmt: skip
            self.order, self.losses = ranking.order, ranking.cut_losses
            self.estimated_at = progress.iteration
        order, best_points = self.order, progress.best_points
        self.callback(
            dataclasses.replace(
                progress, best_points=lambda: best_points()[order], level_losses=list(self.losses), levels=self.levels
            )
        )


def cut_run(
    settings: SketchSettings,
    callback: Callable[[Progress], None] | None,
    target: Tensor,
    network: FeatureNetwork,
    *,
    width: float,
    device: torch.device,
    control: RunControl | None = None,
) -> tuple[SketchSettings, Callable[[Progress], None] | None]:
    """What ``optimise_strokes`` runs for a new sketch with a ladder (``sketch()``, and the bench timing it): the
    plain run, and ``callback`` with the levels estimated live. Without a ladder, both as they are."""
    if not settings.ladder:
        return settings, callback
    if callback is not None:
        autocast = autocast_context(device, resolve_precision(device, settings.precision))
        callback = LiveLevels(callback, settings.ladder, target, network, settings, width=width, autocast=autocast,
                              control=control)  # fmt: skip
    return settings.replace(ladder=()), callback


__all__ = ["ESTIMATE_EVERY", "LiveLevels", "cut_run"]

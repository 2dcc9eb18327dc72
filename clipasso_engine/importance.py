"""Stroke importance: the order in which a sketch's strokes are written, most to least important (issue 12).

A stroke's importance is how much the clean-pair loss (the method's evaluation loss, spec §6) rises when it is
removed. We rank by greedy backward elimination: from the full set, remove the stroke whose removal raises the loss
least, again and again; the last one left is the most important. The importance written for a stroke is the rise
when it is removed from the strokes ranked at or above it, so the first k importances sum to the loss of no strokes
minus the loss of the first k: deleting the written order's last strokes is what greedy keeps cheapest.
Leave-one-out (every stroke removed once from the full set, one batched pass) scores each stroke against all the
others, which hides strokes that only matter together or that duplicate each other; greedy costs n(n + 1)/2 clean
passes for n strokes instead of n, so blocks above ``GREEDY_LIMIT`` strokes fall back to leave-one-out.

MEASURED (``python benchmarks/ladder_measure.py importance --strokes 16,32 --iterations 50``; test models, one
seed, 4 augmentations, CPU): the mean clean loss after deleting the written order's last k strokes, over every k,
is lower with greedy (16 strokes: 8.231 against leave-one-out's 8.247; 32: 6.837 against 6.977), and greedy costs
1.2 s at 16 strokes (about 7 iterations of that run; leave-one-out 0.09 s, 1 iteration) and 4.0 s at 32 (43
iterations; leave-one-out 0.15 s). We use greedy up to ``GREEDY_LIMIT`` = 32 strokes per block: at most about 2 % of
a paper run and 15 % of a fast one; a refined ladder's blocks are smaller still (4/4/8/16: 192 passes, not 528).

A new sketch's ladder is cut from this order over all its strokes (``ladder_cut.py``: level k is the first k). A
refined ladder keeps its given order, so there each level's block (the strokes it adds) is ranked on its own, with
the lower levels' strokes always present: level k's strokes stay the first k, and within each block the most
important comes first.
All passes are without gradients, in batches of ``CHUNK`` sketches, under the run's precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .config import CANVAS, SketchSettings
from .errors import Cancelled
from .ladder import block_bounds
from .losses import clip_pair_losses
from .objective import FeatureNetwork, pair_features
from .optimize import RunControl
from .render import render

#: Largest block ranked greedily (528 clean passes at 32); larger blocks are ranked leave-one-out.
GREEDY_LIMIT = 32
#: Sketches per network pass (bounds the memory of a pass).
CHUNK = 16


@dataclass(frozen=True)
class StrokeRanking:
    order: list[int]  # the written order: indices into the optimiser's strokes, most important first per block
    importance: list[float]  # in the written order: the loss rise when the stroke is removed (see the module)
    method: str  # "greedy" or "leave-one-out" (the largest block's)
    cut_losses: list[float] = field(default_factory=list)  # per ``cuts`` count k: the clean loss of the first k


class _Scorer:
    """Clean-pair losses of sketches made of chosen subsets of the strokes, in chunks, without gradients."""

    def __init__(
        self,
        points: Tensor,
        clean_target: Mapping[str, Tensor],
        network: FeatureNetwork,
        settings: SketchSettings,
        width: float,
        autocast: contextlib.AbstractContextManager[object],
        control: RunControl,
    ) -> None:
        self.points, self.clean_target, self.network = points, clean_target, network
        self.settings, self.width, self.autocast, self.control = settings, width, autocast, control

    def losses(self, subsets: Tensor) -> Tensor:
        """(B,) losses of the sketches ``subsets`` (B, m) of stroke indices (m may be 0: a blank sketch)."""
        out = []
        for chunk in subsets.split(CHUNK):
            if self.control.cancelled:
                raise Cancelled("The sketch was cancelled.")
            if chunk.shape[1]:
                grey = render(self.points[chunk], (CANVAS, CANVAS), stroke_width=self.width)
            else:
                grey = self.points.new_ones(chunk.shape[0], CANVAS, CANVAS)
            features = pair_features(self.network, grey[:, None].expand(-1, 3, -1, -1), self.autocast)
            out.append(
                clip_pair_losses(
                    features,
                    self.clean_target,
                    self.settings.geometric_layers,
                    self.settings.geometric_weights,
                    self.settings.semantic_weight,
                ).float()
            )
        return torch.cat(out)


def _without_each(base: list[int], current: list[int], device: torch.device) -> Tensor:
    """(n, len(base) + n − 1): for each stroke of ``current``, the base and the rest of ``current``."""
    rows = [base + current[:i] + current[i + 1 :] for i in range(len(current))]
    return torch.tensor(rows, dtype=torch.long, device=device).reshape(len(current), len(base) + len(current) - 1)


def _rank_block(scorer: _Scorer, base: list[int], block: list[int], greedy: bool) -> tuple[list[int], list[float]]:
    """One block's strokes, most important first, and their importances, with ``base`` always present."""
    device = scorer.points.device
    full = float(scorer.losses(torch.tensor([base + block], dtype=torch.long, device=device))[0])
    if not greedy:
        rises = (scorer.losses(_without_each(base, block, device)) - full).tolist()
        ranked = sorted(range(len(block)), key=lambda i: -rises[i])  # stable: ties keep the optimiser's order
        return [block[i] for i in ranked], [rises[i] for i in ranked]
    current, removed, rises_out = list(block), [], []
    loss = full
    while len(current) > 1:
        without = scorer.losses(_without_each(base, current, device)).tolist()
        least = min(range(len(current)), key=without.__getitem__)
        removed.append(current.pop(least))
        rises_out.append(without[least] - loss)
        loss = without[least]
    blank = float(scorer.losses(torch.tensor([base], dtype=torch.long, device=device).reshape(1, len(base)))[0])
    removed.append(current[0])
    rises_out.append(blank - loss)
    return removed[::-1], rises_out[::-1]


def rank_strokes(
    points: Tensor,
    target: Tensor,
    network: FeatureNetwork,
    settings: SketchSettings,
    *,
    width: float,
    autocast: contextlib.AbstractContextManager[object] | None = None,
    control: RunControl | None = None,
    levels: Sequence[int] = (),
    greedy_limit: int | None = None,
    cuts: Sequence[int] = (),
) -> StrokeRanking:
    """Rank (N, 4, 2) canvas strokes against ``target`` (3, 224, 224); ``levels``: blocks ranked one by one (a
    refined ladder's, whose order is kept), else one block; blocks above ``greedy_limit`` strokes (default
    ``GREEDY_LIMIT``) leave-one-out. ``cuts``: stroke counts k whose first k strokes in the order are scored too
    (a cut ladder's levels, ``ladder_cut.py``)."""
    limit = GREEDY_LIMIT if greedy_limit is None else greedy_limit
    autocast = autocast or contextlib.nullcontext()
    count = points.shape[0]
    bounds = block_bounds(tuple(levels) or (count,))
    if bounds[-1][1] != count:
        raise ValueError(f"the ladder's top level {bounds[-1][1]} must be the {count} strokes")
    order: list[int] = []
    importance: list[float] = []
    with torch.no_grad():
        clean_target = pair_features(network, target[None], autocast)
        scorer = _Scorer(points.detach(), clean_target, network, settings, width, autocast, control or RunControl())
        for start, end in bounds:
            ranked, rises = _rank_block(scorer, list(range(start)), list(range(start, end)), end - start <= limit)
            order += ranked
            importance += rises
        index = torch.tensor(order, dtype=torch.long, device=points.device)
        cut_losses = [float(scorer.losses(index[None, :k])[0]) for k in cuts]
    largest = max(end - start for start, end in bounds)
    return StrokeRanking(order, importance, "greedy" if largest <= limit else "leave-one-out", cut_losses)


__all__ = ["CHUNK", "GREEDY_LIMIT", "StrokeRanking", "rank_strokes"]

"""Which points to keep and when to stop: the selection state of S batched seeds (spec §6).

At each evaluation, for every seed, Δ = eval − best:
- Δ < −δ: a new best (its loss and exactly the scored points are kept) and the "flat" flag is cleared;
- |Δ| ≤ δ: the seed stops if the flag is already set, else the flag is set;
- Δ > δ: nothing (it neither clears the flag nor counts).
So a seed stops at the second evaluation within δ of its best with no new best in between; the two need not be
consecutive. δ = 0 turns early stopping off (the best is then simply the lowest evaluation loss).

Everything stays on the device as tensors: recording an evaluation never synchronises with the host.
"""

from __future__ import annotations

import torch
from torch import Tensor


class SeedSelection:
    """The best evaluation loss and scored points of each seed, the running minimum over seeds, and early stop."""

    def __init__(self, points: Tensor, early_stop_delta: float) -> None:
        """points: (S, N, 4, 2), the starting points (kept as "best" until the first evaluation)."""
        seeds = points.shape[0]
        self.delta = float(early_stop_delta)
        self.best_loss = torch.full((seeds,), float("inf"), device=points.device)
        self.best_points = points.detach().clone()
        self.flat = torch.zeros(seeds, dtype=torch.bool, device=points.device)  # one evaluation within δ already
        self.stopped = torch.zeros(seeds, dtype=torch.bool, device=points.device)  # met the early-stop rule
        self.best_so_far: list[Tensor] = []  # 0-dim: lowest best loss over seeds after each evaluation

    def record(self, losses: Tensor, points: Tensor) -> None:
        """One evaluation: ``losses`` (S,) are the evaluation losses of ``points`` (S, N, 4, 2). No host sync.

        A seed that has stopped is frozen: later evaluations change nothing for it.
        """
        losses = losses.detach().to(self.best_loss.dtype)
        live = ~self.stopped
        change = losses - self.best_loss
        better = live & (change < -self.delta)
        self.best_loss = torch.where(better, losses, self.best_loss)
        self.best_points = torch.where(better[:, None, None, None], points.detach(), self.best_points)
        if self.delta > 0:
            within = live & (change.abs() <= self.delta)
            self.stopped = self.stopped | (within & self.flat)
            self.flat = (self.flat & ~better) | within
        self.best_so_far.append(self.best_loss.min())

    def leader(self) -> Tensor:
        """Index (0-dim, on the device) of the seed with the lowest best loss so far."""
        return torch.argmin(self.best_loss)

    def leader_points(self) -> Tensor:
        """(N, 4, 2): a copy of the leading seed's best points (synchronises: for progress reports)."""
        return self.best_points[int(self.leader())].detach().clone()

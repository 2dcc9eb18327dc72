"""What a sketch returns: :class:`SketchResult` (strokes in the input image's pixel frame, and what produced them),
and :class:`SketchProgress`, the progress report in the same frame."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import SketchSettings
from .optimize import Progress
from .svg import strokes_to_svg
from .version import __version__

StatusCallback = Callable[[str, str], None]
#: ``on_setup(done, total)``: the set-up passes before the first iteration (the target and a pooled preset's
#: augmented targets, which take tens of seconds on a CPU).
SetupCallback = Callable[[int, int], None]


@dataclass
class SketchProgress(Progress):
    """A progress report in the input image's frame: ``best_points()`` in image px, plus ``width`` in image px."""

    width: float = 0.0


ProgressCallback = Callable[[SketchProgress], None]


@dataclass(frozen=True)
class SketchResult:
    """A finished sketch, in the input image's pixel frame."""

    strokes: list[list[list[float]]]  # N × 4 × [x, y], image px
    width: float  # stroke width, image px
    image_size: tuple[int, int]  # (W, H) after EXIF orientation
    seed: int  # the base seed: with settings.seeds it reproduces every run (seeding.py)
    winning_run: int  # which of the settings.seeds runs won, from 0
    loss: float  # its best evaluation loss
    seed_losses: list[float]  # best evaluation loss of each run
    iterations_run: int
    stopped_early: bool
    device: str
    precision: str  # the loss network's precision as run (what settings.precision "auto" chose)
    settings: SketchSettings
    timings: dict[str, float] = field(default_factory=dict)
    engine_version: str = __version__
    refine: dict[str, Any] | None = None  # a refine's counts (refine.RefinePlan.provenance); None: a new sketch
    # A new sketch is written most to least important (importance.py; a ladder is cut from that order), a refine
    # in its given order. Per written stroke: the loss rise when it is removed, and its rank (1 = most important).
    importance: list[float] = field(default_factory=list)
    rank: list[int] = field(default_factory=list)
    source_index: list[int] = field(default_factory=list)  # per written stroke: its index in the previews' order
    level_losses: list[float] = field(default_factory=list)  # per settings.ladder level: its clean loss

    def ladder(self) -> list[dict[str, Any]]:
        """``[{"strokes": k, "loss": l}, ...]`` per ladder level, lowest first; [] without a ladder."""
        return [{"strokes": k, "loss": v} for k, v in zip(self.settings.ladder, self.level_losses, strict=True)]

    def provenance(self) -> dict[str, Any]:
        """What produced these strokes: stamped into the SVG and the JSON output."""
        return {
            "generator": "clipasso-engine",
            "engine_version": self.engine_version,
            # What reproduces these strokes on the same device: the base seed and the seed count, given back.
            "seed": self.seed,
            "seeds": self.settings.seeds,
            "winning_run": self.winning_run,
            "loss": self.loss,
            "iterations_run": self.iterations_run,
            "stopped_early": self.stopped_early,
            "device": self.device,
            "precision": self.precision,
            "settings": self.settings.to_dict(),
            **({"refine": self.refine} if self.refine is not None else {}),
        }

    def to_svg(self, color: str = "#000000") -> str:
        return strokes_to_svg(
            self.strokes,
            self.width,
            self.image_size,
            self.provenance(),
            color=color,
            importance=self.importance,
            rank=self.rank,
            ladder=self.ladder(),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready facts; field names match the protocol's ``result`` message (docs/protocol.md)."""
        out = self.provenance()
        out.update(
            strokes=self.strokes,
            width=self.width,
            image_size=list(self.image_size),
            seed_losses=self.seed_losses,
            timings=self.timings,
            importance=self.importance,
            rank=self.rank,
            source_index=self.source_index,
            ladder=self.ladder(),
        )
        return out

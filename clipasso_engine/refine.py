"""Edit, then refine: one optimisation run that starts from given strokes, keeps the locked ones, adds new ones.

The given strokes (``init_strokes``, image px: what ``clipasso sketch`` wrote, as the artist left it) are mapped to
the canvas with the same ``PreparedImage`` mapping the output uses and optimised in ONE run (one seed). Locked
strokes are constants: rendered and counted in the loss, never moved (``optimise_strokes(locked=...)``), and the
result gives back the very numbers it was given for them, not a round trip through the canvas. ``add`` new strokes
start where the sketch leaves the saliency map least covered (``strokes.uncovered_probabilities``), drawn like a
new sketch's strokes. The result lists the given strokes first, in their order (stroke i is the given stroke i,
moved unless locked), then the added ones.

A ladder (``RefinePlan.settings``) is a set of prefixes of that order. Asked for (``--ladder``, the settings'
``ladder``), its levels below the refined count are kept and the refined count is the top level: ``--ladder 4,16``
on a refine to 9 strokes gives the levels 4 and 9. Not asked for, the ``--init`` file's own level groups are the
ladder, recounted as the artist left them (``init_svg.read_init_file``), and added strokes are one more level on
top; its levels are trained as prefixes (``ladder.py``; a new sketch's ladder is cut from the importance order
instead, ``ladder_cut.py``). Importance is ranked within each level's block, but given as ``rank`` and
``importance`` only: the strokes are not reordered, since the lock indices and the artist's per-stroke styles refer
to the order.

The width: a refine from an ``--init`` file draws at the width that file's provenance records
(``init_svg.read_init_sketch``), as the extension does, so the refined strokes look like the ones the artist
edited; a width given (``--width``, the settings' ``width`` or ``width_fraction``) wins.

Validation is cheap and needs no torch, so the CLI and the protocol refuse bad input before any model loads;
every problem is one ``InitStrokesError`` sentence (code ``bad_init``, exit status 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .errors import InitStrokesError, shorten
from .init_svg import MAX_STROKES, Strokes, read_init_sketch

if TYPE_CHECKING:
    import torch

    from .config import SketchSettings
    from .image_io import PreparedImage

#: Largest |coordinate| of a given stroke, in image px: far beyond any image (the pixel limit allows a
#: 89-megapixel strip), yet safely inside float32 once mapped to the canvas.
MAX_COORDINATE = 1e7


@dataclass(frozen=True)
class RefinePlan:
    """Validated refine input: ``strokes`` N × 4 × [x, y] floats (image px), ``locked`` sorted distinct indices;
    ``levels``: where the ``--init`` file's ladder levels end, the last at N (() without level groups);
    ``width`` (image px) or ``width_fraction``: what the ``--init`` file was drawn with (None: not recorded)."""

    strokes: Strokes
    locked: tuple[int, ...]
    add: int
    levels: tuple[int, ...] = ()
    width: float | None = None
    width_fraction: float | None = None

    @property
    def total(self) -> int:
        return len(self.strokes) + self.add

    def settings(self, settings: SketchSettings) -> SketchSettings:
        """The run's settings: one seed, and as many strokes as given plus added (what the provenance records).

        A ladder asked for keeps its levels below that count, else the file's levels (and the given count, when
        strokes are added) are the ladder; the refined set is the top level. Without a width in ``settings``, the
        file's width. Applying it twice changes nothing.
        """
        changes: dict[str, Any] = {"strokes": self.total, "seeds": 1}
        if settings.width is None and settings.width_fraction is None:  # none given: the sketch's own
            changes.update(width=self.width, width_fraction=self.width_fraction)
        ladder = settings.ladder or self.levels
        if ladder:
            changes["ladder"] = tuple(level for level in ladder if level < self.total)  # the top is appended
        return settings.replace(**changes)

    def locked_mask(self, device: torch.device) -> torch.Tensor:
        """(N + add,) bool, True for the locked strokes: what ``optimise_strokes`` keeps constant."""
        import torch

        mask = torch.zeros(self.total, dtype=torch.bool)
        mask[list(self.locked)] = True
        return mask.to(device)

    def provenance(self, start_loss: float) -> dict[str, Any]:
        """What the result says about the refine (``SketchResult.refine``); its strokes keep the given order."""
        return {
            "given": len(self.strokes),
            "locked": len(self.locked),
            "locked_strokes": list(self.locked),
            "added": self.add,
            "start_loss": start_loss,  # the evaluation loss of the starting strokes (given plus placed)
        }


def plan_refine(init_strokes: object, locked: object = None, add: object = None) -> RefinePlan | None:
    """Validate a refine request (Python API, protocol or CLI); None when none was asked for.

    ``init_strokes``: N × 4 × [x, y] numbers (image px); ``locked``: stroke indices from 0 (repeats are accepted and
    count once); ``add``: how many strokes to add. Raises ``InitStrokesError`` (one sentence) for anything unusable.
    """
    if init_strokes is None:
        if locked or add:  # [] and 0 ask for nothing
            field = "locked strokes" if locked else "added strokes"
            raise InitStrokesError(
                f"{field.capitalize()} need strokes to refine; give the sketch to start from (--init, init_strokes)."
            )
        return None
    strokes = _strokes(init_strokes)
    count = _count(add)
    if len(strokes) + count > MAX_STROKES:
        raise InitStrokesError(
            f"{len(strokes)} given strokes plus {count} added make more than {MAX_STROKES}, the limit of a sketch; "
            "add fewer."
        )
    indices = _indices(locked, len(strokes))
    if len(indices) == len(strokes) and count == 0:
        raise InitStrokesError(
            "Every stroke is locked and none is added, so there is nothing to optimise; unlock a stroke or add some "
            "(--add, add)."
        )
    return RefinePlan(strokes=strokes, locked=indices, add=count)


def plan_from_options(
    init: str | None, lock: str | None, add: int | None, strokes: int | None, seeds: int | None
) -> RefinePlan | None:
    """The CLI's ``--init``, ``--lock`` and ``--add`` (with any explicit ``--strokes`` and ``--seeds``) as a plan,
    with the ``--init`` file's ladder levels and recorded width."""
    if init is not None and strokes is not None:
        raise InitStrokesError(
            "--strokes cannot be given with --init: a refine has the --init file's strokes; add more with --add."
        )
    if init is not None and seeds not in (None, 1):
        raise InitStrokesError("A refine is one run from the --init strokes; drop --seeds.")
    locked = None if lock is None else parse_lock_list(lock)
    if init is None:
        return plan_refine(None, locked, add)
    sketch = read_init_sketch(init)
    plan = plan_refine(sketch.strokes, locked, add)
    assert plan is not None  # strokes were given
    return replace(plan, levels=sketch.levels, width=sketch.width, width_fraction=sketch.width_fraction)


def parse_lock_list(text: str) -> list[int]:
    """``--lock 0,3``: stroke indices separated by commas (spaces allowed; an empty text locks nothing)."""
    parts = [part.strip() for part in text.split(",")]
    if parts == [""]:
        return []
    values = []
    for part in parts:
        if not part.lstrip("+-").isdigit() or not part.isascii():
            raise InitStrokesError(
                f"--lock takes stroke indices separated by commas, such as 0,3; {shorten(part, 30)!r} is not a whole "
                "number."
            )
        values.append(int(part))
    return values


def _strokes(value: object) -> Strokes:
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):  # a NumPy array or a tensor
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise InitStrokesError(
            f"The strokes to refine must be a list of strokes, each 4 [x, y] points, not {type(value).__name__}."
        )
    if not value:
        raise InitStrokesError("The strokes to refine are an empty list; give at least one stroke.")
    if len(value) > MAX_STROKES:
        raise InitStrokesError(
            f"{len(value)} strokes to refine are more than {MAX_STROKES}, the limit of a sketch; give fewer."
        )
    return [_stroke(stroke, i) for i, stroke in enumerate(value)]


def _stroke(stroke: object, index: int) -> list[list[float]]:
    points = stroke if isinstance(stroke, (list, tuple)) and len(stroke) == 4 else []
    if not points or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points):
        raise InitStrokesError(
            f"Stroke {index} to refine is not 4 control points [x, y] (a cubic Bézier); give [[x0, y0], ..., [x3, y3]]."
        )
    out = []
    for point in points:
        xy = []
        for value in point:
            number = _finite(value)
            if number is None:
                raise InitStrokesError(
                    f"Stroke {index} to refine has the coordinate {shorten(repr(value), 40)}, not a finite number "
                    f"within ±{MAX_COORDINATE:g} px; fix or delete that stroke."
                )
            xy.append(number)
        out.append(xy)
    return out


def _finite(value: object) -> float | None:
    """``value`` as a float when it is a finite number in range (never a bool), else None. Floats stay as given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and abs(number) <= MAX_COORDINATE else None


def _count(add: object) -> int:
    if add is None:
        return 0
    if isinstance(add, bool) or not isinstance(add, int) or add < 0:
        raise InitStrokesError(
            f"The number of strokes to add must be a whole number, 0 or more, not {shorten(repr(add), 40)}."
        )
    return add


def _indices(locked: object, count: int) -> tuple[int, ...]:
    if locked is None:
        return ()
    if not isinstance(locked, (list, tuple, set, frozenset)):
        raise InitStrokesError(f"The locked strokes must be a list of stroke indices, not {type(locked).__name__}.")
    for index in locked:
        if isinstance(index, bool) or not isinstance(index, int):
            raise InitStrokesError(
                f"Locked stroke {shorten(repr(index), 40)} is not a stroke index; give whole numbers from 0."
            )
        if not 0 <= index < count:
            raise InitStrokesError(
                f"Locked stroke {shorten(repr(index), 40)} does not exist: the sketch to refine has {count} "
                f"stroke{'s' if count != 1 else ''}, numbered 0 to {count - 1}."
            )
    return tuple(sorted(set(locked)))


# --- the run's side (needs torch) ---------------------------------------------------------------------------


def start_points(
    plan: RefinePlan,
    prepared: PreparedImage,
    probabilities: torch.Tensor | None,
    *,
    width: float,
    settings: SketchSettings,
    device: torch.device,
) -> torch.Tensor:
    """(1, N + add, 4, 2) canvas px on ``device``: the given strokes mapped to the canvas, then the added ones.

    ``probabilities``: the saliency map (224, 224), needed only when strokes are added; ``width`` in canvas px.
    """
    import torch

    from .seeding import initialisation_seed
    from .strokes import initial_strokes, uncovered_probabilities

    given = prepared.image_to_canvas(torch.tensor(plan.strokes, dtype=torch.float64)).to(torch.float32)
    parts = [given]
    if plan.add:
        if probabilities is None:
            raise ValueError("adding strokes needs the saliency probabilities")
        where = uncovered_probabilities(probabilities, given, width=width)
        seed = initialisation_seed(settings.seed, 0)
        parts.append(
            initial_strokes(where, plan.add, seed, step=settings.random_walk_step, canvas=prepared.canvas).cpu()
        )
    return torch.cat(parts).unsqueeze(0).to(device)


def result_strokes(plan: RefinePlan, points: torch.Tensor, prepared: PreparedImage) -> Strokes:
    """The optimised (N + add, 4, 2) canvas points in image px, with the locked strokes' given numbers exactly."""
    import torch

    mapped = prepared.canvas_to_image(points.detach().to("cpu", torch.float64)).tolist()
    out = [[[float(x), float(y)] for x, y in stroke] for stroke in mapped]
    for index in plan.locked:
        out[index] = [list(point) for point in plan.strokes[index]]
    return out


def needs_saliency(plan: RefinePlan | None) -> bool:
    """Whether the run computes the saliency map: a new sketch does, a refine only to place added strokes."""
    return plan is None or plan.add > 0


def describe(plan: RefinePlan) -> str:
    """A few words for the CLI's summary line."""
    return f"refined {len(plan.strokes)} given, {len(plan.locked)} locked, {plan.add} added"


__all__ = ["MAX_COORDINATE", "RefinePlan", "parse_lock_list", "plan_refine", "result_strokes", "start_points"]

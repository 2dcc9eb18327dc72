"""Every setting of a sketch run, with its default, in one place.

The defaults are the method's (``shared/spec/clipasso_method.md``); presets are named overrides of them.
The Inkscape ``.inx`` is the only other place that repeats a default, and a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import SettingsError

#: Side of the square canvas the strokes are optimised on (the CLIP input size).
CANVAS = 224


@dataclass(frozen=True)
class SketchSettings:
    """All knobs of one sketch. Field comments give the source of each default."""

    # --- strokes -------------------------------------------------------------------------------------------
    strokes: int = 16  # N cubic Béziers: the abstraction level (paper: 4/8/16/32)
    ladder: tuple[int, ...] = ()  # abstraction ladder: every level's count is a prefix sketch (ladder.py); the top
    # level is strokes (a lower top gets strokes appended); () draws one sketch of strokes
    width: float | None = None  # visible width in *output* pixels; None: 3/224 of the padded square's side
    width_fraction: float | None = None  # or: the width as a fraction of the image's longer side (the extension's)
    # --- optimisation --------------------------------------------------------------------------------------
    iterations: int = 2000  # Adam steps (paper: ~2000 to converge, recognisable by 100-300)
    seeds: int = 3  # independent runs; the one with the lowest evaluation loss is kept
    seed: int = 0  # base seed: every random stream (each run's start, the augmentations) is derived from it
    lr: float = 1.0  # Adam learning rate on pixel coordinates, default betas, no schedule
    eval_every: int = 10  # score the clean pair every this many iterations; keep the best scored points
    early_stop_delta: float = 1e-5  # stop at the 2nd evaluation within this of the best, no new best between (0: never)
    # --- augmentation --------------------------------------------------------------------------------------
    augmentations: int = 4  # augmented (sketch, target) pairs per iteration, beside the clean pair
    perspective_distortion: float = 0.5  # RandomPerspective distortion_scale, p = 1, black fill
    crop_size: int = 200  # fixed-size crop at a random position, resized back to the canvas
    augmentation_pool: int = 0  # 0: fresh augmentations every iteration (the method); K: cycle through K drawn
    # steps whose target features are computed once (saves the target forward pass each iteration)
    # --- loss ----------------------------------------------------------------------------------------------
    geometric_layers: tuple[str, ...] = ("layer2", "layer3")  # ResNet stages by module name
    geometric_weights: tuple[float, ...] = (1.0, 1.0)  # MSE weight per stage
    semantic_weight: float = 0.1  # weight of 1 - cos(embeddings)
    # --- initialisation ------------------------------------------------------------------------------------
    saliency: str = "clip"  # "clip" (ViT attention average) or "dino" (timm DINO ViT-S/8 CLS attention)
    softmax_temperature: float = 0.3  # tau of the softmax over the saliency map's positive entries
    random_walk_step: float = 0.025  # each further control point moves U(-s, s)·canvas per axis
    detail_weight: float = 4.0  # inside detail shapes a pixel is this many times as likely a start as outside (ours)
    # --- models (open_clip architecture names; weights are a pretrained tag or a local file) ---------------
    loss_model: str = "RN101"
    loss_weights: str = "openai"
    saliency_model: str = "ViT-B-32-quickgelu"  # OpenAI's ViT-B/32 uses QuickGELU
    saliency_weights: str = "openai"
    model_config: str | None = None  # extra open_clip config: a JSON file or a folder of them
    # --- execution -----------------------------------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (bf16/fp16 where the device has it, else fp32: precision.py) | fp32 | bf16 | fp16
    # Name of the preset these settings started from (provenance). Not a constructor argument: a preset is applied
    # only by name, through preset_settings(), so the recorded name cannot disagree with the values it stands for.
    preset: str = field(default="paper", init=False)

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            _check_type(spec.name, str(spec.type), getattr(self, spec.name))
        _check_positive_int("strokes", self.strokes, upper=4096)
        _check_ladder(self)
        _check_positive_int("iterations", self.iterations, upper=1_000_000)
        _check_positive_int("seeds", self.seeds, upper=64)
        _check_positive_int("eval_every", self.eval_every, upper=1_000_000)
        _check_int_range("augmentations", self.augmentations, 0, 64)
        _check_int_range("augmentation_pool", self.augmentation_pool, 0, 10_000)
        _check_int_range("seed", self.seed, 0, 2**31 - 1)
        _check_int_range("crop_size", self.crop_size, 1, CANVAS)
        # Every float is checked for finiteness and range up front: a NaN or an infinity would otherwise surface as a
        # traceback after the whole run, or be written into the output as the non-JSON literal NaN/Infinity.
        if self.width is not None:
            _check_float_range("width", self.width, 0, 10_000, "pixels", low_open=True)
        if self.width_fraction is not None:
            _check_float_range("width_fraction", self.width_fraction, 0, 1, low_open=True)
        if self.width is not None and self.width_fraction is not None:
            raise SettingsError("Give the stroke width either in pixels (width) or as width_fraction, not both.")
        _check_float_range("lr", self.lr, 0, 1000, low_open=True)
        _check_float_range("softmax_temperature", self.softmax_temperature, 0, 100, low_open=True)
        _check_float_range("perspective_distortion", self.perspective_distortion, 0, 1)
        _check_float_range("random_walk_step", self.random_walk_step, 0, 1)
        _check_float_range("detail_weight", self.detail_weight, 1, 1000)
        _check_float_range("early_stop_delta", self.early_stop_delta, 0, 1000)
        _check_float_range("semantic_weight", self.semantic_weight, 0, 1000)
        for weight in self.geometric_weights:
            _check_float_range("each of geometric_weights", weight, 0, 1000)
        if not 1 <= len(self.geometric_layers) <= 8:
            raise SettingsError(f"geometric_layers must name 1 to 8 stages, got {len(self.geometric_layers)}.")
        if len(self.geometric_layers) != len(self.geometric_weights):
            raise SettingsError("geometric_layers and geometric_weights must have the same length.")
        if self.saliency not in ("clip", "dino"):
            raise SettingsError(f"saliency must be 'clip' or 'dino', got {_shown(self.saliency)}.")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise SettingsError(f"precision must be auto, fp32, bf16 or fp16, got {_shown(self.precision)}.")
        if self.preset not in PRESETS:
            raise SettingsError(f"Unknown preset {_shown(self.preset)}. Choose one of: {', '.join(PRESETS)}.")

    def replace(self, **changes: Any) -> SketchSettings:
        """A copy with some fields changed (validated again); it keeps the preset name these settings started from."""
        if "preset" in changes:
            raise SettingsError("A preset is applied by name with preset_settings(name), not changed on settings.")
        copy = dataclasses.replace(self, **changes)
        object.__setattr__(copy, "preset", self.preset)
        return copy

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (tuples become lists), for provenance and the protocol."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        device_type: str = "cpu",
        overlay: Callable[[SketchSettings], SketchSettings] | None = None,
    ) -> SketchSettings:
        """Settings from a JSON object: its ``preset`` first (``auto`` chosen for ``device_type``), then ``overlay``
        (the environment's model settings, which explicit keys beat), then the object's other keys on top."""
        data = dict(data)
        base = preset_settings(choose_preset(data.pop("preset", "paper"), device_type))
        if overlay is not None:
            base = overlay(base)
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(
                f"Unknown setting(s): {_listed(unknown)}. Valid settings: {', '.join(sorted(known))}, preset."
            )
        for key in ("ladder", "geometric_layers", "geometric_weights"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        return base.replace(**data)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: Annotation (as written above) -> check of a value and the words for the error message.
_TYPE_CHECKS: dict[str, tuple[Any, str]] = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "float": (_is_number, "a number"),
    "float | None": (lambda v: v is None or _is_number(v), "a number or null"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "str | None": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "tuple[str, ...]": (lambda v: isinstance(v, tuple) and all(isinstance(x, str) for x in v), "a list of names"),
    "tuple[float, ...]": (lambda v: isinstance(v, tuple) and all(_is_number(x) for x in v), "a list of numbers"),
    "tuple[int, ...]": (
        lambda v: isinstance(v, tuple) and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
        "a list of whole numbers",
    ),
}


def _check_type(name: str, annotation: str, value: object) -> None:
    # Settings also arrive as JSON (the protocol): a wrong type must be a clear SettingsError, not a TypeError later.
    check, words = _TYPE_CHECKS[annotation]
    if not check(value):
        raise SettingsError(f"{name} must be {words}, got {_shown(value)}.")


#: Most levels of an abstraction ladder (1, 2, 4, … 4096 is 13): each is a group in the SVG and a batch row.
MAX_LADDER_LEVELS = 32
#: What ``--ladder`` alone asks for, capped at the stroke count.
DEFAULT_LADDER = (4, 8, 16, 32)


def _check_ladder(settings: SketchSettings) -> None:
    """Levels in 1..4096, strictly increasing, at most strokes; a top below strokes gets strokes appended."""
    levels = settings.ladder
    if len(levels) > MAX_LADDER_LEVELS:
        raise SettingsError(
            f"A ladder has at most {MAX_LADDER_LEVELS} levels, got {len(levels)}; give a few stroke counts such as "
            "4,8,16,32."
        )
    for level in levels:
        _check_int_range("each ladder level", level, 1, 4096)
    for lower, upper in itertools.pairwise(levels):
        if lower == upper:
            raise SettingsError(
                f"The ladder repeats the level {lower}; give each stroke count once, in increasing order, such as "
                "4,8,16,32."
            )
        if lower > upper:
            raise SettingsError(
                f"The ladder's levels must increase, such as 4,8,16,32, but {lower} comes before {upper}."
            )
    if levels and levels[-1] > settings.strokes:
        raise SettingsError(
            f"The ladder's top level {levels[-1]} is more than the {settings.strokes} strokes; set strokes to at "
            f"least {levels[-1]} or drop the higher levels."
        )
    if levels and levels[-1] < settings.strokes:
        object.__setattr__(settings, "ladder", (*levels, settings.strokes))


def _check_positive_int(name: str, value: object, *, upper: int) -> None:
    _check_int_range(name, value, 1, upper)


def _check_int_range(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SettingsError(f"{name} must be a whole number from {low} to {high}, got {_shown(value)}.")


def _check_float_range(
    name: str, value: float, low: float, high: float, unit: str = "", *, low_open: bool = False
) -> None:
    """A finite number in [low, high] (or (low, high]); an int too large for a float counts as not finite."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    inside = (low < number if low_open else low <= number) and number <= high
    if not (math.isfinite(number) and inside):
        bound = "greater than" if low_open else "at least"
        units = f" {unit}" if unit else ""
        raise SettingsError(
            f"{name} must be a finite number {bound} {low:g} and at most {high:g}{units}, got {_shown(value)}."
        )


#: Longest echo of a user's value in a message: a 50 MB string must not become a 50 MB error line.
_ECHO_CHARS = 60


def _shown(value: object) -> str:
    """``repr(value)``, shortened to a readable length (a huge int is shortened too, never converted)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**_ECHO_CHARS else "a number too large"
    return text if len(text) <= _ECHO_CHARS else text[: _ECHO_CHARS - 1] + "…"


def _listed(names: list[str], most: int = 5) -> str:
    """A few names, shortened, and how many more: three million unknown keys still make one short sentence."""
    shown = ", ".join(_shown(n).strip("'") for n in names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


#: Named overrides of the defaults. ``paper`` is exactly the method; the others trade quality for time, and
#: README.md documents each with measured numbers.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # For CPU users: one seed, two augmented pairs from a pool of 32 pre-drawn steps (target features computed
    # once), 300 iterations (the paper: recognisable by 100-300). Measured with `clipasso bench` (README "Presets").
    "fast": {"iterations": 300, "seeds": 1, "augmentations": 2, "augmentation_pool": 32},
    # A first look within a minute on a CPU: one seed, one augmented pair from a pool of 16, 150 iterations. Chosen by
    # benchmarks/draft_convergence.py: at the same cost (300 image passes), 150 × (1 + 1) left less pixel error than
    # 100 × (1 + 2) (mean of three test scenes: 0.48 vs 0.57 of the start in fp32, 0.48 vs 0.54 in bf16). Listed
    # last: the error messages list the presets in this order.
    "draft": {"iterations": 150, "seeds": 1, "augmentations": 1, "augmentation_pool": 16},
}


#: Not a preset of its own: the name that picks ``paper`` on a GPU and ``fast`` on a CPU (paper takes hours there).
AUTO_PRESET = "auto"
#: What a user may ask for: the presets and ``auto``.
PRESET_CHOICES = (AUTO_PRESET, *PRESETS)


def choose_preset(name: object, device_type: str) -> str:
    """The preset a requested name stands for on a device of ``device_type`` (``cpu``, ``cuda``, ``mps``)."""
    if name == AUTO_PRESET:
        return "paper" if device_type in ("cuda", "mps") else "fast"
    if not isinstance(name, str) or name not in PRESETS:
        raise SettingsError(f"Unknown preset {_shown(name)}. Choose one of: {', '.join(PRESET_CHOICES)}.")
    return name


def preset_settings(name: str) -> SketchSettings:
    """The settings of a named preset: the one way a preset is applied."""
    settings = SketchSettings(**PRESETS[choose_preset(name, "cpu")])
    object.__setattr__(settings, "preset", name)
    return settings

"""Every setting of a sketch run, with its default, in one place.

The defaults are the method's (``shared/spec/clipasso_method.md``); presets are named overrides of them.
The Inkscape ``.inx`` is the only other place that repeats a default, and a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import SettingsError

#: Side of the square canvas the strokes are optimised on (the CLIP input size).
CANVAS = 224


@dataclass(frozen=True)
class SketchSettings:
    """All knobs of one sketch. Field comments give the source of each default."""

    # --- strokes -------------------------------------------------------------------------------------------
    strokes: int = 16  # N cubic Béziers: the abstraction level (paper: 4/8/16/32)
    width: float | None = None  # visible width in *output* pixels; None: 3/224 of the padded square's side
    width_fraction: float | None = None  # or: the width as a fraction of the image's longer side (the extension's)
    # --- optimisation --------------------------------------------------------------------------------------
    iterations: int = 2000  # Adam steps (paper: ~2000 to converge, recognisable by 100-300)
    seeds: int = 3  # independent runs; the one with the lowest evaluation loss is kept
    seed: int = 0  # base seed: run k uses seed + 1000·k, as the reference does (0, 1000, 2000)
    lr: float = 1.0  # Adam learning rate on pixel coordinates, default betas, no schedule
    eval_every: int = 10  # score the clean pair every this many iterations; keep the best scored points
    early_stop_delta: float = 1e-5  # stop when two evaluations in a row change by at most this (0: never)
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
    # --- models (open_clip architecture names; weights are a pretrained tag or a local file) ---------------
    loss_model: str = "RN101"
    loss_weights: str = "openai"
    saliency_model: str = "ViT-B-32-quickgelu"  # OpenAI's ViT-B/32 uses QuickGELU
    saliency_weights: str = "openai"
    model_config: str | None = None  # extra open_clip config: a JSON file or a folder of them
    # --- execution -----------------------------------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (bf16/fp16 autocast on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    preset: str = "paper"  # name of the preset these settings started from (provenance only)

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            _check_type(spec.name, str(spec.type), getattr(self, spec.name))
        _check_positive_int("strokes", self.strokes, upper=4096)
        _check_positive_int("iterations", self.iterations, upper=1_000_000)
        _check_positive_int("seeds", self.seeds, upper=64)
        _check_positive_int("eval_every", self.eval_every, upper=1_000_000)
        if not 0 <= self.augmentations <= 64:
            raise SettingsError(f"augmentations must be between 0 and 64, got {self.augmentations}.")
        if self.width is not None and not self.width > 0:
            raise SettingsError(f"width must be a positive number of pixels, got {self.width}.")
        if self.width_fraction is not None and not 0 < self.width_fraction <= 1:
            raise SettingsError(f"width_fraction must be between 0 and 1, got {self.width_fraction}.")
        if self.width is not None and self.width_fraction is not None:
            raise SettingsError("Give the stroke width either in pixels (width) or as width_fraction, not both.")
        if self.saliency not in ("clip", "dino"):
            raise SettingsError(f"saliency must be 'clip' or 'dino', got {self.saliency!r}.")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise SettingsError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}.")
        if len(self.geometric_layers) != len(self.geometric_weights):
            raise SettingsError("geometric_layers and geometric_weights must have the same length.")
        if not 0 <= self.augmentation_pool <= 10_000:
            raise SettingsError(f"augmentation_pool must be between 0 and 10000, got {self.augmentation_pool}.")
        if not 0 <= self.seed < 2**31:
            raise SettingsError(f"seed must be a whole number from 0 to {2**31 - 1}, got {self.seed}.")
        for name in ("lr", "softmax_temperature"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be a positive number, got {getattr(self, name)}.")
        if not 0 <= self.perspective_distortion <= 1:
            raise SettingsError(f"perspective_distortion must be between 0 and 1, got {self.perspective_distortion}.")
        if not 0 <= self.random_walk_step <= 1:
            raise SettingsError(f"random_walk_step must be between 0 and 1, got {self.random_walk_step}.")
        if not self.early_stop_delta >= 0:
            raise SettingsError(f"early_stop_delta must be zero or positive, got {self.early_stop_delta}.")
        if not 0 < self.crop_size <= CANVAS:
            raise SettingsError(f"crop_size must be between 1 and {CANVAS}, got {self.crop_size}.")

    @property
    def run_seeds(self) -> list[int]:
        """The seed of each independent run (reference: 0, 1000, 2000)."""
        return [self.seed + 1000 * k for k in range(self.seeds)]

    def replace(self, **changes: Any) -> SketchSettings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (tuples become lists), for provenance and the protocol."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SketchSettings:
        """Settings from a JSON object: a ``preset`` first, then its other keys on top."""
        data = dict(data)
        base = preset_settings(str(data.pop("preset", "paper")))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            valid = ", ".join(sorted(known))
            raise SettingsError(f"Unknown setting(s): {', '.join(unknown)}. Valid settings: {valid}.")
        for key in ("geometric_layers", "geometric_weights"):
            if key in data and data[key] is not None:
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
}


def _check_type(name: str, annotation: str, value: object) -> None:
    # Settings also arrive as JSON (the protocol): a wrong type must be a clear SettingsError, not a TypeError later.
    check, words = _TYPE_CHECKS[annotation]
    if not check(value):
        raise SettingsError(f"{name} must be {words}, got {value!r}.")


def _check_positive_int(name: str, value: object, *, upper: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= upper:
        raise SettingsError(f"{name} must be a whole number from 1 to {upper}, got {value!r}.")


#: Named overrides of the defaults. ``paper`` is exactly the method; the others trade quality for time, and
#: README.md documents each with measured numbers.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # For CPU users: one seed, two augmented pairs from a pool of 32 pre-drawn steps (target features computed
    # once), 300 iterations (the paper: recognisable by 100-300). Measured with `clipasso bench` (README "Presets").
    "fast": {"iterations": 300, "seeds": 1, "augmentations": 2, "augmentation_pool": 32},
}


def preset_settings(name: str) -> SketchSettings:
    """The settings of a named preset."""
    if name not in PRESETS:
        raise SettingsError(f"Unknown preset {name!r}. Choose one of: {', '.join(PRESETS)}.")
    return SketchSettings(preset=name, **PRESETS[name])

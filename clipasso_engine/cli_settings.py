"""The ``clipasso`` options that are sketch settings, and how they stack: preset, environment, explicit options."""

from __future__ import annotations

import argparse
import re

from .config import (
    AUTO_PRESET,
    DEFAULT_LADDER,
    MAX_LADDER_LEVELS,
    PRESET_CHOICES,
    SketchSettings,
    choose_preset,
    preset_settings,
)
from .errors import SettingsError

#: CLI option -> SketchSettings field, for the options that map one to one.
_SETTING_OPTIONS = {
    "strokes": "strokes",
    "iterations": "iterations",
    "seeds": "seeds",
    "seed": "seed",
    "width": "width",
    "device": "device",
    "precision": "precision",
    "saliency": "saliency",
    "loss_model": "loss_model",
    "loss_weights": "loss_weights",
    "saliency_model": "saliency_model",
    "saliency_weights": "saliency_weights",
    "model_config": "model_config",
    "augmentations": "augmentations",
    "early_stop": "early_stop_delta",
    "detail_weight": "detail_weight",
}


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    defaults = SketchSettings()
    group = parser.add_argument_group("sketch settings (defaults: the chosen preset's)")
    group.add_argument(
        "--preset",
        choices=PRESET_CHOICES,
        default=AUTO_PRESET,
        help="named settings; auto (default): paper on a GPU, fast on a CPU, where paper takes hours",
    )
    group.add_argument(
        "--strokes", type=int, help=f"number of strokes, the abstraction level (default {defaults.strokes})"
    )
    group.add_argument(
        "--ladder",
        nargs="?",
        const=DEFAULT_LADDER,
        metavar="LEVELS",
        help="also keep the sketches of fewer strokes, each the first strokes of the next, e.g. 4,8,16,32 "
        "(alone: 4,8,16,32 up to --strokes); without --strokes, the top level is the stroke count",
    )
    group.add_argument("--iterations", type=int, help=f"optimisation steps (paper: {defaults.iterations})")
    group.add_argument("--seeds", type=int, help=f"independent runs, the best is kept (paper: {defaults.seeds})")
    group.add_argument("--seed", type=int, help="base seed: same input, settings and seed give the same strokes")
    group.add_argument("--width", type=float, help="stroke width in output pixels (default: 3/224 of the longer side)")
    group.add_argument("--augmentations", type=int, help="augmented pairs per iteration (paper: 4)")
    group.add_argument(
        "--early-stop",
        type=float,
        metavar="DELTA",
        help="stop at the second evaluation within DELTA of the best with no new best between (default 1e-5; 0: never)",
    )
    group.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="loss-network precision")
    group.add_argument("--saliency", choices=["clip", "dino"], help="saliency backend (default: clip)")
    group.add_argument(
        "--detail-weight",
        type=float,
        help=f"inside --detail-svg shapes a pixel is this many times as likely a stroke start (default "
        f"{defaults.detail_weight:g}, 1 to 1000)",
    )
    models = parser.add_argument_group("models (also from CLIPASSO_* environment variables)")
    models.add_argument("--loss-model", help="open_clip ResNet architecture (default RN101)")
    models.add_argument("--loss-weights", help="pretrained tag (default openai) or a local checkpoint file")
    models.add_argument("--saliency-model", help="open_clip ViT architecture (default ViT-B-32-quickgelu)")
    models.add_argument("--saliency-weights", help="pretrained tag (default openai) or a local checkpoint file")
    models.add_argument("--model-config", help="extra open_clip model config: a JSON file or a folder of them")


def settings_from_args(
    args: argparse.Namespace, device_type: str = "cpu", *, environment: bool = True
) -> SketchSettings:
    """The preset (``auto`` chosen for ``device_type``), then the environment, then explicit options on top.

    ``environment=False`` skips the ``CLIPASSO_*`` overlay, which needs the heavy imports: the CLI validates the
    options that way first, so that a typo fails at once rather than after torch has loaded.
    """
    settings = preset_settings(choose_preset(args.preset, device_type))
    if environment:
        from .environment import settings_from_env

        settings = settings_from_env(settings)
    explicit = {field: getattr(args, option) for option, field in _SETTING_OPTIONS.items()}
    explicit.update(ladder_settings(getattr(args, "ladder", None), args.strokes, settings.strokes))
    return settings.replace(**{k: v for k, v in explicit.items() if v is not None})


def ladder_settings(
    option: str | tuple[int, ...] | None, strokes: int | None, preset_strokes: int
) -> dict[str, object]:
    """``--ladder`` as settings: the levels, and the stroke count (the levels' top when ``--strokes`` is not given)."""
    if option is None:
        return {}
    if isinstance(option, tuple):  # --ladder alone: the default levels, up to the stroke count
        top = preset_strokes if strokes is None else strokes
        return {"ladder": (*(level for level in option if level < top), top)}
    levels = parse_ladder(option)
    return {"ladder": levels, "strokes": levels[-1] if strokes is None else strokes}


def parse_ladder(text: str) -> tuple[int, ...]:
    """``4,8,16,32`` -> (4, 8, 16, 32); the order and ranges are checked by the settings."""
    parts = text.split(",") if text.strip() else []
    if not parts:
        raise SettingsError("--ladder needs stroke counts separated by commas, such as 4,8,16,32, or nothing after it.")
    if len(parts) > MAX_LADDER_LEVELS:
        raise SettingsError(
            f"A ladder has at most {MAX_LADDER_LEVELS} levels, got {len(parts)}; give a few stroke counts such as "
            "4,8,16,32."
        )
    for part in parts:
        if not re.fullmatch(r"[0-9]{1,9}", part.strip()):
            shown = part.strip() if len(part.strip()) <= 20 else part.strip()[:19] + "…"
            raise SettingsError(
                f"--ladder takes whole numbers separated by commas, such as 4,8,16,32; {shown!r} is not one."
            )
    return tuple(int(part) for part in parts)


def resolved_settings(args: argparse.Namespace) -> SketchSettings:
    """The settings a run uses: validated cheaply first, then ``auto`` resolved on the device the run will use."""
    cheap = settings_from_args(args, environment=False)
    if args.preset != AUTO_PRESET:
        return settings_from_args(args)
    from .environment import resolve_device

    return settings_from_args(args, resolve_device(cheap.device).type)

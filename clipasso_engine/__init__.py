"""CLIPasso object sketching in pure PyTorch: ``sketch(image) -> SketchResult``.

The public surface is listed in ``__all__``; modules are one per pipeline stage (see README.md). Names are
imported on first use, so ``clipasso --version`` or a rejected protocol request does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .api import SketchProgress, SketchResult, sketch
    from .config import PRESETS, SketchSettings, preset_settings
    from .errors import (
        BadRequest,
        Cancelled,
        ClipassoError,
        DeviceError,
        InputImageError,
        MaskError,
        ModelConfigError,
        OutOfMemory,
        OutputError,
        SettingsError,
        WeightsMissingError,
    )
    from .model_cache import release_models
    from .optimize import Progress, RunControl
    from .render import render

_EXPORTS = {
    "sketch": "api",
    "SketchResult": "api",
    "SketchProgress": "api",
    "PRESETS": "config",
    "SketchSettings": "config",
    "preset_settings": "config",
    "BadRequest": "errors",
    "Cancelled": "errors",
    "ClipassoError": "errors",
    "DeviceError": "errors",
    "InputImageError": "errors",
    "MaskError": "errors",
    "ModelConfigError": "errors",
    "OutOfMemory": "errors",
    "OutputError": "errors",
    "SettingsError": "errors",
    "WeightsMissingError": "errors",
    "release_models": "model_cache",
    "Progress": "optimize",
    "RunControl": "optimize",
    "render": "render",
}

__all__ = [
    "PRESETS",
    "BadRequest",
    "Cancelled",
    "ClipassoError",
    "DeviceError",
    "InputImageError",
    "MaskError",
    "ModelConfigError",
    "OutOfMemory",
    "OutputError",
    "Progress",
    "RunControl",
    "SettingsError",
    "SketchProgress",
    "SketchResult",
    "SketchSettings",
    "WeightsMissingError",
    "__version__",
    "preset_settings",
    "release_models",
    "render",
    "sketch",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""CLIPasso object sketching in pure PyTorch: ``sketch(image) -> SketchResult``.

The public surface is listed in ``__all__``; modules are one per pipeline stage (see README.md).
"""

from .api import SketchResult, sketch
from .config import PRESETS, SketchSettings, preset_settings
from .errors import (
    Cancelled,
    ClipassoError,
    DeviceError,
    InputImageError,
    MaskError,
    ModelConfigError,
    OutputError,
    SettingsError,
    WeightsMissingError,
)
from .optimize import Progress, RunControl
from .render import render
from .version import __version__

__all__ = [
    "PRESETS",
    "Cancelled",
    "ClipassoError",
    "DeviceError",
    "InputImageError",
    "MaskError",
    "ModelConfigError",
    "OutputError",
    "Progress",
    "RunControl",
    "SettingsError",
    "SketchResult",
    "SketchSettings",
    "WeightsMissingError",
    "__version__",
    "preset_settings",
    "render",
    "sketch",
]

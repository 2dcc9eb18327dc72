"""Where a run executes and what the environment adds: the torch device, the ``CLIPASSO_*`` overlay, the cache.

Environment variables (``settings_from_env``): ``CLIPASSO_LOSS_MODEL``, ``CLIPASSO_LOSS_WEIGHTS``,
``CLIPASSO_SALIENCY_MODEL``, ``CLIPASSO_SALIENCY_WEIGHTS``, ``CLIPASSO_MODEL_CONFIG``; ``CLIPASSO_CACHE_DIR`` moves
the download cache; ``HF_HUB_OFFLINE=1`` makes every pretrained tag resolve from the cache only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .config import SketchSettings
from .errors import DeviceError

#: Settings field -> environment variable that may fill it.
ENV_VARS: dict[str, str] = {
    "loss_model": "CLIPASSO_LOSS_MODEL",
    "loss_weights": "CLIPASSO_LOSS_WEIGHTS",
    "saliency_model": "CLIPASSO_SALIENCY_MODEL",
    "saliency_weights": "CLIPASSO_SALIENCY_WEIGHTS",
    "model_config": "CLIPASSO_MODEL_CONFIG",
}
CACHE_ENV = "CLIPASSO_CACHE_DIR"


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N``, ``mps``."""
    mps = torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DeviceError(f"Unknown device {name!r}. Choose auto, cpu, cuda, cuda:N or mps.") from err
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"Device {name!r} is not available: no CUDA GPU found. Use --device cpu or auto.")
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"Device {name!r} is not available: there are {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}."
            )
        return device
    if device.type == "mps":
        if not mps:
            raise DeviceError(f"Device {name!r} is not available on this machine. Use --device cpu or auto.")
        return device
    raise DeviceError(f"Unknown device {name!r}. Choose auto, cpu, cuda, cuda:N or mps.")


def settings_from_env(settings: SketchSettings) -> SketchSettings:
    """``settings`` with the model fields filled from ``CLIPASSO_*`` variables where they still hold the defaults.

    Precedence is explicit option > environment variable > default: a field that differs from the default was
    set explicitly and is kept. The CLI applies this first and its explicit options afterwards, so an option equal
    to the default still wins there. Empty variables are ignored.
    """
    defaults = SketchSettings()
    changes: dict[str, Any] = {}
    for field_name, var in ENV_VARS.items():
        value = os.environ.get(var, "").strip()
        if value and getattr(settings, field_name) == getattr(defaults, field_name):
            changes[field_name] = value
    return settings.replace(**changes) if changes else settings


def cache_dir() -> str | None:
    """The download cache: ``CLIPASSO_CACHE_DIR`` if set, else None (open_clip's and the hub's default)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    return str(Path(value).expanduser()) if value else None

"""``clipasso models fetch``: put every model the settings need into the cache, and prove that each one loads."""

from __future__ import annotations

import torch

from .availability import ensure_weights
from .config import SketchSettings
from .towers import load_clip_visual, load_dino


def fetch_models(settings: SketchSettings) -> list[str]:
    """Download the loss and saliency weights a run with ``settings`` needs; one line per model: name and file.

    Local checkpoint files are not copied. Every file, downloaded or local, is loaded into its model on the CPU
    before it is reported, so a wrong or damaged file gets its one-sentence error here rather than in a sketch.
    """
    cpu = torch.device("cpu")
    lines = []
    for source, path in ensure_weights(settings, fetching=True):
        if source.arch == "DINO":
            load_dino(source.weights, device=cpu)
        else:
            load_clip_visual(
                source.arch, source.weights, device=cpu, model_config=settings.model_config, role=source.role
            )
        lines.append(f"{source.model}: {path}")
    return lines

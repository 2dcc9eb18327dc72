"""The loaded models, kept so that repeated sketches in one process (library users, tests, serve) load them once.

One loss network and one saliency model are kept at a time, each under the key of what built it; asking for
another replaces it. :func:`release_models` drops both, so their memory (host or device) can be freed. Loads run
under one lock, so two threads asking at once load a model once; the models themselves are safe to share.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from .availability import ensure_weights
from .config import SketchSettings
from .loss_network import LossNetwork, load_loss_network
from .towers import load_clip_visual, load_dino
from .weights import dino_weights

_lock = threading.Lock()
_loss_networks: dict[tuple[object, ...], LossNetwork] = {}
_saliency_towers: dict[tuple[object, ...], nn.Module] = {}


def loss_network(settings: SketchSettings, device: torch.device) -> LossNetwork:
    """The loss network ``settings`` name on ``device``, loaded on first use.

    Before a load, every model the settings need (the saliency model's too) is checked, so that one message names
    all that are missing rather than the first (:func:`ensure_weights`).
    """
    key = (settings.loss_model, settings.loss_weights, settings.model_config, str(device), settings.geometric_layers)
    with _lock:
        if key not in _loss_networks:
            ensure_weights(settings)
            _loss_networks.clear()  # first drop the old one: two RN101 at once would double the memory
            _loss_networks[key] = load_loss_network(settings, device)
        return _loss_networks[key]


def saliency_tower(settings: SketchSettings, device: torch.device) -> nn.Module:
    """The saliency model ``settings`` name on ``device``: the CLIP ViT, or the DINO ViT with ``--saliency dino``."""
    if settings.saliency == "dino":
        key: tuple[object, ...] = ("dino", dino_weights(settings), str(device))
    else:
        key = ("clip", settings.saliency_model, settings.saliency_weights, settings.model_config, str(device))
    with _lock:
        if key not in _saliency_towers:
            _saliency_towers.clear()
            if settings.saliency == "dino":
                _saliency_towers[key] = load_dino(dino_weights(settings), device=device)
            else:
                _saliency_towers[key] = load_clip_visual(
                    settings.saliency_model,
                    settings.saliency_weights,
                    device=device,
                    model_config=settings.model_config,
                    role="saliency",
                )
        return _saliency_towers[key]


def release_saliency_model() -> None:
    """Forget the kept saliency model: a process that sketches once needs it only until the strokes are placed, and
    the loss network's optimisation then has its memory (a ViT-B/32 is about 350 MB in fp32)."""
    with _lock:
        _saliency_towers.clear()


def release_models() -> None:
    """Forget the kept models, and return cached GPU memory to the driver once nothing else holds them."""
    with _lock:
        _loss_networks.clear()
        _saliency_towers.clear()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()

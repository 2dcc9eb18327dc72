"""Shared fixtures: tiny models built once per session, and an environment that selects them.

- ``tiny_models`` (session): a ``tiny_models.TinyModels`` with the config folder, architecture names and
  checkpoint paths of a tiny CLIP ResNet (loss), a tiny CLIP ViT (saliency) and a tiny DINO ViT;
  ``tiny_models.settings(**changes)`` gives SketchSettings that use them.
- ``tiny_env`` (per test): sets ``CLIPASSO_MODEL_CONFIG``, ``CLIPASSO_LOSS_MODEL``, ``CLIPASSO_LOSS_WEIGHTS``,
  ``CLIPASSO_SALIENCY_MODEL`` and ``CLIPASSO_SALIENCY_WEIGHTS`` to the tiny models, points ``CLIPASSO_CACHE_DIR``
  at an empty folder and sets ``HF_HUB_OFFLINE=1``, so the engine (and any subprocess it starts) can never
  download anything. Returns the same ``TinyModels``.
"""

from __future__ import annotations

import os
from pathlib import Path

# Tiny models run fastest on one thread: on a loaded 2-core machine, OpenMP workers spinning at barriers made a
# 0.2 s run take 7-14 s. Set before torch is imported, so engine subprocesses inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch
from tiny_models import TinyModels, build_tiny_models

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture
def tiny_env(tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> TinyModels:
    for name, value in tiny_models.env().items():
        monkeypatch.setenv(name, value)
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setenv("CLIPASSO_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tiny_models

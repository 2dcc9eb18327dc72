"""The kept models: one of each, replaced by other settings, released on request, and shared safely by threads."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import TinyModels

import clipasso_engine
from clipasso_engine import model_cache, sketch
from clipasso_engine.config import SketchSettings

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    model_cache.release_models()


def _settings(tiny_models: TinyModels, **changes: object) -> SketchSettings:
    base: dict[str, object] = {"iterations": 6, "seeds": 1, "strokes": 4, "eval_every": 3, "device": "cpu"}
    return tiny_models.settings(**{**base, **changes})


def test_the_same_settings_get_the_same_models_and_others_replace_them(tiny_models: TinyModels) -> None:
    settings = tiny_models.settings()
    network = model_cache.loss_network(settings, CPU)
    tower = model_cache.saliency_tower(settings, CPU)
    assert model_cache.loss_network(settings.replace(iterations=7), CPU) is network  # not a model field
    assert model_cache.saliency_tower(settings, CPU) is tower
    old = weakref.ref(network)
    other = model_cache.loss_network(settings.replace(geometric_layers=("layer3",), geometric_weights=(1.0,)), CPU)
    del network
    gc.collect()
    assert other.layers == ("layer3",) and old() is None  # one at a time: the replaced network is not kept
    dino = model_cache.saliency_tower(
        settings.replace(saliency="dino", saliency_weights=str(tiny_models.dino_weights)), CPU
    )
    assert dino is not tower and type(dino).__name__ == "VisionTransformer"


def test_release_models_drops_every_reference_after_a_sketch(tiny_models: TinyModels) -> None:
    """Issue 8 item 15: the caches (one in api.py, an lru_cache in saliency.py) could never be released."""
    settings = _settings(tiny_models)
    result = sketch(Image.new("RGB", (48, 40), "white"), settings, use_env=False)
    assert result.strokes
    network = weakref.ref(model_cache.loss_network(settings, CPU))
    tower = weakref.ref(model_cache.saliency_tower(settings, CPU))
    gc.collect()
    assert network() is not None and tower() is not None  # kept between sketches
    clipasso_engine.release_models()
    gc.collect()
    assert network() is None and tower() is None


def _photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8))


def test_two_threads_sketch_at_once_and_each_gets_its_own_result(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8 item 14: two threads calling sketch() shared the loss network's hook state, and the saliency
    attention maps' hooks on the shared saliency model (now serialised by a lock in saliency.py)."""
    settings = _settings(tiny_models)
    photos = [_photo(1), _photo(2)]
    expected = [sketch(photo, settings, use_env=False).strokes for photo in photos]
    assert expected[0] != expected[1]
    model_cache.release_models()  # both threads now also race to load the models
    results: list[list[list[list[list[float]]]]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(index: int) -> None:
        try:
            start.wait()
            for _ in range(3):
                results[index].append(sketch(photos[index], settings, use_env=False).strokes)
        except BaseException as err:  # reported below: an exception in a thread would otherwise only be printed
            errors.append(err)

    threads = [threading.Thread(target=work, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    for index in (0, 1):
        assert results[index] == [expected[index]] * 3


def test_a_one_shot_sketch_frees_the_saliency_model_once_the_strokes_are_placed(tiny_models: TinyModels) -> None:
    """Issue 11 item 5: the saliency ViT stayed loaded through the whole optimisation of a one-sketch process."""

    model_cache.release_models()
    settings = _settings(tiny_models)
    seen: list[weakref.ref[torch.nn.Module]] = []
    alive_during_optimisation: list[bool] = []

    def watch(stage: str, _message: str) -> None:
        if stage == "saliency":
            seen.append(weakref.ref(model_cache.saliency_tower(settings, torch.device("cpu"))))
        if stage == "optimising":
            gc.collect()
            alive_during_optimisation.append(seen[-1]() is not None)

    sketch(_photo(1), settings, use_env=False, keep_models=False, on_status=watch)
    assert alive_during_optimisation == [False]
    sketch(_photo(1), settings, use_env=False, on_status=watch)  # library default: kept for the next sketch
    assert alive_during_optimisation == [False, True]

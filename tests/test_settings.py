"""SketchSettings: every float setting is finite and in range, presets are applied only by name, ``auto`` picks the
preset for the device, and messages that echo user input stay short."""

from __future__ import annotations

import json
import math

import pytest

from clipasso_engine.config import PRESETS, SketchSettings, choose_preset, preset_settings
from clipasso_engine.errors import SettingsError

FLOAT_SETTINGS = [
    "width",
    "width_fraction",
    "lr",
    "softmax_temperature",
    "perspective_distortion",
    "random_walk_step",
    "early_stop_delta",
    "semantic_weight",
    "detail_weight",
]


@pytest.mark.parametrize("name", FLOAT_SETTINGS)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e308, 10**400, -1.0])
def test_every_float_setting_is_finite_and_in_range(name: str, value: float) -> None:
    with pytest.raises(SettingsError) as caught:
        SketchSettings(**{name: value})
    message = str(caught.value)
    assert name in message and len(message) < 200, message


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 1e308])
def test_geometric_weights_are_finite(value: float) -> None:
    with pytest.raises(SettingsError, match="geometric_weights"):
        SketchSettings(geometric_weights=(1.0, value))


def test_protocol_style_non_finite_values_are_refused() -> None:
    """JSON's Infinity/NaN (which Python's json accepts) reach the settings as floats: refused, never run."""
    for text in ('{"width": Infinity}', '{"semantic_weight": NaN}', '{"geometric_weights": [NaN, 1]}',
                 '{"lr": Infinity}', '{"early_stop_delta": Infinity}'):  # fmt: skip
        with pytest.raises(SettingsError):
            SketchSettings.from_dict(json.loads(text))


def test_valid_edges_are_accepted() -> None:
    settings = SketchSettings(width=10_000, width_fraction=None, lr=1000, early_stop_delta=0, semantic_weight=0)
    assert settings.width == 10_000 and settings.early_stop_delta == 0
    assert SketchSettings(width_fraction=1.0).width_fraction == 1.0


def test_a_preset_is_applied_only_by_name() -> None:
    """``SketchSettings(preset="fast")`` used to keep the paper values and stamp "fast"."""
    with pytest.raises(TypeError):
        SketchSettings(preset="fast")  # type: ignore[call-arg]
    fast = preset_settings("fast")
    assert fast.preset == "fast"
    assert all(getattr(fast, key) == value for key, value in PRESETS["fast"].items())
    with pytest.raises(SettingsError, match="preset_settings"):
        fast.replace(preset="paper")
    changed = fast.replace(iterations=7)  # overrides on top of a preset keep its name
    assert changed.preset == "fast" and changed.iterations == 7
    assert SketchSettings.from_dict({"preset": "fast"}) == fast
    assert SketchSettings().preset == "paper"


def test_the_recorded_preset_always_names_values_it_stands_for() -> None:
    for name in PRESETS:
        settings = preset_settings(name)
        recorded = settings.to_dict()
        assert recorded["preset"] == name
        rebuilt = SketchSettings.from_dict(recorded)
        assert rebuilt == settings


def test_auto_picks_paper_on_a_gpu_and_fast_on_a_cpu() -> None:
    assert choose_preset("auto", "cuda") == "paper"
    assert choose_preset("auto", "mps") == "paper"
    assert choose_preset("auto", "cpu") == "fast"
    assert SketchSettings.from_dict({"preset": "auto"}, device_type="cpu").preset == "fast"
    assert SketchSettings.from_dict({"preset": "auto", "strokes": 8}, device_type="cuda").preset == "paper"
    for bad in ["", "Fast", 3, None, "x" * 10_000]:
        with pytest.raises(SettingsError) as caught:
            choose_preset(bad, "cpu")
        assert len(str(caught.value)) < 200


def test_overlay_comes_between_the_preset_and_explicit_keys() -> None:
    """The environment's model settings beat the preset but never an explicit key, even one equal to a default."""

    def overlay(settings: SketchSettings) -> SketchSettings:
        return settings.replace(loss_model="RN50", saliency_model="ViT-B-16")

    settings = SketchSettings.from_dict({"loss_model": "RN101"}, overlay=overlay)
    assert settings.loss_model == "RN101" and settings.saliency_model == "ViT-B-16"


def test_messages_that_echo_input_are_short() -> None:
    with pytest.raises(SettingsError) as caught:
        SketchSettings.from_dict({f"unknown_{i}": 1 for i in range(100_000)})
    assert len(str(caught.value)) < 600 and "99995 more" in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        SketchSettings.from_dict({"x" * 5_000_000: 1})
    assert len(str(caught.value)) < 600
    with pytest.raises(SettingsError) as caught:
        SketchSettings(saliency="y" * 5_000_000)
    assert len(str(caught.value)) < 200
    with pytest.raises(SettingsError) as caught:
        SketchSettings(seed=10**100_000)
    assert len(str(caught.value)) < 200

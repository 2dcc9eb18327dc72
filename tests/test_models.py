"""Model loading: devices, environment, configs, weights resolution, towers and fetching (tiny models, CPU)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer
from tiny_models import LOSS_ARCH, SALIENCY_ARCH, TinyModels, make_clip, make_dino

from clipasso_engine import weights
from clipasso_engine.availability import resolve
from clipasso_engine.config import SketchSettings
from clipasso_engine.environment import resolve_device, settings_from_env
from clipasso_engine.errors import DeviceError, ModelConfigError, WeightsMissingError
from clipasso_engine.fetch import fetch_models
from clipasso_engine.loss_network import load_loss_network
from clipasso_engine.model_configs import register_model_configs
from clipasso_engine.normalize import CLIP_MEAN, CLIP_STD, clip_normalize
from clipasso_engine.towers import load_clip_visual, load_dino
from clipasso_engine.weights import clip_source

CPU = torch.device("cpu")
#: The command the messages print: installer users have no `clipasso` on PATH, this Python always works.
FETCH = f"{sys.executable} -m clipasso_engine models fetch"


def resolve_clip_weights(arch: str, tag: str, role: weights.Role = "loss") -> str:
    return resolve(clip_source(arch, tag, role))


def test_clip_normalize_maps_the_mean_to_zero_and_mean_plus_std_to_one() -> None:
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    assert torch.allclose(clip_normalize(mean), torch.zeros(2, 3, 4, 4), atol=1e-7)
    assert torch.allclose(clip_normalize(mean + std), torch.ones(2, 3, 4, 4), atol=1e-6)


# --- devices -----------------------------------------------------------------------------------------------------


def test_resolve_device_cpu_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == CPU


def test_resolve_device_refuses_missing_and_unknown_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="mps"):
        resolve_device("mps")
    with pytest.raises(DeviceError, match="Choose auto, cpu"):
        resolve_device("tpu-please")


def test_resolve_device_checks_the_cuda_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match="cuda:0 to cuda:1"):
        resolve_device("cuda:2")


# --- environment -------------------------------------------------------------------------------------------------


def test_env_fills_defaults_but_explicit_options_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPASSO_LOSS_MODEL", "RN50")
    monkeypatch.setenv("CLIPASSO_LOSS_WEIGHTS", "/weights/rn50.pt")
    monkeypatch.setenv("CLIPASSO_SALIENCY_MODEL", "ViT-B-16")
    monkeypatch.setenv("CLIPASSO_SALIENCY_WEIGHTS", "")  # empty: ignored
    monkeypatch.setenv("CLIPASSO_MODEL_CONFIG", "/configs")
    filled = settings_from_env(SketchSettings(saliency_model="ViT-L-14"))
    assert filled.loss_model == "RN50"
    assert filled.loss_weights == "/weights/rn50.pt"
    assert filled.saliency_model == "ViT-L-14"  # explicit, kept
    assert filled.saliency_weights == "openai"
    assert filled.model_config == "/configs"


def test_tiny_env_selects_the_tiny_models(tiny_env: TinyModels) -> None:
    settings = settings_from_env(SketchSettings())
    assert settings.loss_model == LOSS_ARCH
    assert settings.saliency_model == SALIENCY_ARCH
    assert Path(settings.loss_weights) == tiny_env.loss_weights
    network = load_loss_network(settings, CPU)
    assert network(torch.zeros(1, 3, 224, 224))["layer3"].shape == (1, 128, 14, 14)


# --- configs -----------------------------------------------------------------------------------------------------


def test_register_model_configs_from_a_folder_and_a_file(tiny_models: TinyModels) -> None:
    assert sorted(register_model_configs(str(tiny_models.model_config))) == [LOSS_ARCH, SALIENCY_ARCH]
    assert register_model_configs(str(tiny_models.model_config / f"{LOSS_ARCH}.json")) == [LOSS_ARCH]
    assert register_model_configs(None) == []
    assert LOSS_ARCH in open_clip.list_models()


def test_broken_configs_are_refused_before_open_clip_sees_them(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelConfigError, match="not readable JSON"):
        register_model_configs(str(tmp_path))
    other = tmp_path / "other"
    other.mkdir()
    (other / "partial.json").write_text(json.dumps({"embed_dim": 8}), encoding="utf-8")
    with pytest.raises(ModelConfigError, match="lacks vision_cfg, text_cfg"):
        register_model_configs(str(other))
    with pytest.raises(ModelConfigError, match="does not exist"):
        register_model_configs(str(tmp_path / "nowhere"))
    assert "RN101" in open_clip.list_models()  # the registry still works


def test_unknown_architecture_lists_close_names() -> None:
    with pytest.raises(ModelConfigError, match="RN101") as err:
        load_clip_visual("RN110", "openai", device=CPU)
    assert "--model-config" in str(err.value)


# --- weights -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pt", "safetensors"])
def test_checkpoints_load_into_a_frozen_fp32_visual_tower(tiny_models: TinyModels, tmp_path: Path, kind: str) -> None:
    reference = make_clip(LOSS_ARCH, tiny_models.model_config, seed=1)
    path = tmp_path / f"rn.{kind}"
    if kind == "pt":
        torch.save({"state_dict": reference.state_dict()}, path)  # a wrapped state_dict loads too
    else:
        save_file(reference.state_dict(), str(path))
    visual = load_clip_visual(LOSS_ARCH, str(path), device=CPU, model_config=str(tiny_models.model_config))
    assert not visual.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in visual.parameters())
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(visual(images), reference.encode_image(images), atol=1e-5)  # unnormalised: visual


def test_missing_weights_file_names_the_path_and_the_option(tiny_models: TinyModels, tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError) as err:
        load_clip_visual(LOSS_ARCH, str(tmp_path / "gone.pt"), device=CPU, model_config=str(tiny_models.model_config))
    message = str(err.value)
    assert f"{tmp_path / 'gone.pt'} does not exist" in message and "check the path given with --loss-weights" in message
    assert "models fetch" not in message  # there is nothing to fetch for a file the user named


def test_uncached_tag_offline_fails_fast_with_both_fixes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLIPASSO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsMissingError) as err:
        load_clip_visual("ViT-B-32-quickgelu", "openai", device=CPU, role="saliency")
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert "ViT-B-32-quickgelu" in message and FETCH in message
    assert "--saliency-weights" in message and "CLIPASSO_SALIENCY_WEIGHTS" in message


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLIPASSO_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "_hub_reachable", lambda: False)
    start = time.monotonic()
    with pytest.raises(WeightsMissingError, match=r"cannot be reached.*CLIPASSO_LOSS_WEIGHTS"):
        resolve_clip_weights("RN101", "openai")
    assert time.monotonic() - start < 5


def test_cached_tag_resolves_offline_and_prefers_safetensors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The hub cache layout huggingface_hub writes: refs/main names the snapshot holding the files.
    repo = tmp_path / "models--timm--resnet101_clip.openai"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd", encoding="utf-8")
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        (snapshot / name).write_bytes(b"stub")
    monkeypatch.setenv("CLIPASSO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_clip_weights("RN101", "openai") == str(snapshot / "open_clip_model.safetensors")


def test_unknown_tag_lists_the_known_ones() -> None:
    with pytest.raises(ModelConfigError, match="known tags for RN101: openai, yfcc15m"):
        resolve_clip_weights("RN101", "laion5b")


class _Payload:
    """Not a tensor: a checkpoint holding it needs unpickling of arbitrary objects."""


def test_checkpoints_with_arbitrary_objects_are_refused(tiny_models: TinyModels, tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload()}, path)
    with pytest.raises(ModelConfigError, match="holds Python objects besides tensors, which are refused for safety"):
        load_clip_visual(LOSS_ARCH, str(path), device=CPU, model_config=str(tiny_models.model_config))


def test_a_checkpoint_of_another_architecture_is_refused(tiny_models: TinyModels) -> None:
    with pytest.raises(ModelConfigError, match=f"is not a checkpoint of {SALIENCY_ARCH}"):
        load_clip_visual(
            SALIENCY_ARCH, str(tiny_models.loss_weights), device=CPU, model_config=str(tiny_models.model_config)
        )


# --- DINO and fetching -------------------------------------------------------------------------------------------


def test_dino_loads_from_a_file_with_its_architecture_read_from_the_checkpoint(tiny_models: TinyModels) -> None:
    dino = load_dino(str(tiny_models.dino_weights), device=CPU)
    assert isinstance(dino, VisionTransformer)
    reference = make_dino(seed=3)
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(dino.forward_features(images), reference.forward_features(images), atol=1e-5)
    assert all(not p.requires_grad for p in dino.parameters())


def test_dino_weights_must_be_a_file_or_the_dino_tag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="must be 'dino' or a DINO checkpoint file"):
        load_dino("laion2b", device=CPU)
    monkeypatch.setenv("CLIPASSO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsMissingError, match=r"DINO ViT-S/8.*--saliency-weights"):
        load_dino("dino", device=CPU)


def test_fetch_models_with_local_files_lists_them(tiny_models: TinyModels) -> None:
    lines = fetch_models(tiny_models.settings(saliency="dino", saliency_weights=str(tiny_models.dino_weights)))
    assert len(lines) == 2
    assert str(tiny_models.loss_weights) in lines[0] and str(tiny_models.dino_weights) in lines[1]


def test_fetch_models_offline_names_the_missing_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLIPASSO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsMissingError) as err:
        fetch_models(SketchSettings())
    message = str(err.value)
    # Every missing model at once, and no advice to run the command that has just failed.
    assert "RN101 (openai) and ViT-B-32-quickgelu (openai) are not in the cache" in message
    assert "models fetch" not in message

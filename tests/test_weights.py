"""Missing and unusable weights: every missing model named at once with each way to get it, and one sentence for
every file that does not load (issue 8 items 5 and 7). Tiny models, CPU, downloads off."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import open_clip
import PIL.Image
import pytest
import torch
from huggingface_hub import hf_hub_url
from safetensors.torch import save_file
from timm.models import get_pretrained_cfg
from tiny_models import LOSS_ARCH, TinyModels

from clipasso_engine.availability import ensure_weights, fetch_command
from clipasso_engine.config import SketchSettings
from clipasso_engine.errors import ModelConfigError, WeightsMissingError
from clipasso_engine.fetch import fetch_models
from clipasso_engine.towers import load_clip_visual, load_dino
from clipasso_engine.weights import clip_source

CPU = torch.device("cpu")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty cache folder with downloads off; returns the folder."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("CLIPASSO_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _hub_file(arch: str, tag: str) -> tuple[str, str]:
    """The repository and preferred file of a tag, read from open_clip's registry as the engine must."""
    repo = open_clip.get_pretrained_cfg(arch, tag)["hf_hub"].rstrip("/")
    return repo, open_clip.constants.HF_SAFE_WEIGHTS_NAME


def _one_sentence(message: str, limit: int = 300) -> None:
    assert "\n" not in message and message.endswith(".") and len(message) < limit, (len(message), message)


# --- missing weights (item 7) ------------------------------------------------------------------------------------


def test_every_missing_model_is_named_with_what_to_fetch_and_where_to_put_it(offline: Path) -> None:
    with pytest.raises(WeightsMissingError) as err:
        ensure_weights(SketchSettings())
    message = str(err.value)
    assert "RN101 (openai) and ViT-B-32-quickgelu (openai) are not in the cache and downloads are off" in message
    assert f"run `{sys.executable} -m clipasso_engine models fetch` once while online" in message
    for arch in ("RN101", "ViT-B-32-quickgelu"):
        repo, name = _hub_file(arch, "openai")
        assert f"{hf_hub_url(repo, name)} (save it as {offline / repo / name})" in message
    assert "--loss-weights or --saliency-weights" in message and "CLIPASSO_SALIENCY_WEIGHTS" in message


def test_a_file_saved_where_the_message_says_is_found_offline(offline: Path) -> None:
    with pytest.raises(WeightsMissingError) as err:
        ensure_weights(SketchSettings())
    targets = re.findall(r"\(save it as (.+?)\)", str(err.value))
    assert len(targets) == 2
    for target in targets:
        Path(target).parent.mkdir(parents=True)
        Path(target).write_bytes(b"weights")
    assert [path for _, path in ensure_weights(SketchSettings())] == targets


def test_the_dino_message_names_the_dino_weights_and_the_saliency_option(offline: Path) -> None:
    with pytest.raises(WeightsMissingError) as err:
        ensure_weights(SketchSettings(saliency="dino"))
    message = str(err.value)
    config = get_pretrained_cfg("vit_small_patch8_224.dino")  # timm's registry names the repository
    assert config is not None and config.hf_hub_id
    repo = config.hf_hub_id
    assert "RN101 (openai) and DINO ViT-S/8 are not in the cache" in message
    assert f"{sys.executable} -m clipasso_engine models fetch --saliency dino`" in message
    assert f"{hf_hub_url(repo, 'model.safetensors')} (save it as {offline / repo / 'model.safetensors'})" in message


def test_after_fetch_itself_failed_the_message_does_not_suggest_it(offline: Path) -> None:
    with pytest.raises(WeightsMissingError) as err:
        fetch_models(SketchSettings(saliency="dino"))
    message = str(err.value)
    assert "models fetch" not in message and "DINO ViT-S/8" in message and "save it as" in message


def test_a_missing_file_and_a_missing_tag_are_named_together(offline: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError) as err:
        ensure_weights(SketchSettings(loss_weights=str(tmp_path / "gone.pt")))
    message = str(err.value)
    assert message.startswith(f"The loss weights file {tmp_path / 'gone.pt'} does not exist; ViT-B-32-quickgelu")
    assert "check the path given with --loss-weights or CLIPASSO_LOSS_WEIGHTS" in message
    # The fetch command gets what can be fetched, and keeps the user's file out of it.
    assert f"`{sys.executable} -m clipasso_engine models fetch` once while online" in message


def test_the_fetch_command_names_non_default_models_and_quotes_what_needs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "executable", "/opt/My Apps/python3")
    sources = [clip_source("RN50", "yfcc15m", "loss"), clip_source("ViT-B-32-quickgelu", "openai", "saliency")]
    assert fetch_command(sources, "/my configs") == (
        '"/opt/My Apps/python3" -m clipasso_engine models fetch --loss-model RN50 --loss-weights yfcc15m '
        '--model-config "/my configs"'
    )


def test_a_huge_weights_path_is_shortened_in_the_message(offline: Path) -> None:
    huge = "/nowhere/" + "x" * 50_000 + ".pt"
    with pytest.raises(WeightsMissingError) as err:
        ensure_weights(SketchSettings(loss_weights=huge, saliency_weights="/nowhere/v.pt"))
    assert len(str(err.value)) < 700 and "…" in str(err.value)


def test_the_engine_does_not_report_a_bad_local_file_as_fetched(tiny_models: TinyModels, tmp_path: Path) -> None:
    """`models fetch --loss-weights cat.png` said the file was good: it is now loaded first."""
    cat = tmp_path / "cat.png"
    PIL.Image.new("RGB", (8, 8), "orange").save(cat)
    with pytest.raises(ModelConfigError) as err:
        fetch_models(tiny_models.settings(loss_weights=str(cat)))
    assert f"The loss weights file {cat} is damaged or not a checkpoint" in str(err.value)
    _one_sentence(str(err.value))
    # A readable checkpoint of the wrong model is refused as well, before anything is reported.
    with pytest.raises(ModelConfigError, match=f"is not a checkpoint of {LOSS_ARCH}"):
        fetch_models(tiny_models.settings(loss_weights=str(tiny_models.saliency_weights)))
    lines = fetch_models(tiny_models.settings())
    assert [line.rsplit(": ", 1)[1] for line in lines] == [
        str(tiny_models.loss_weights),
        str(tiny_models.saliency_weights),
    ]


# --- files that do not load (item 5) -----------------------------------------------------------------------------


def _load_loss(tiny_models: TinyModels, path: Path) -> str:
    with pytest.raises(ModelConfigError) as err:
        load_clip_visual(LOSS_ARCH, str(path), device=CPU, model_config=str(tiny_models.model_config))
    _one_sentence(str(err.value))
    return str(err.value)


def test_a_vit_checkpoint_given_as_the_resnet_weights_is_one_sentence(
    tiny_models: TinyModels, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="clipasso_engine"):
        message = _load_loss(tiny_models, tiny_models.saliency_weights)
    assert f"is not a checkpoint of {LOSS_ARCH}" in message and "--loss-model" in message
    assert "Missing key" not in message and "Missing key" in caplog.text  # torch's details go to the log


def test_a_truncated_checkpoint_is_one_sentence(
    tiny_models: TinyModels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "truncated.pt"
    data = tiny_models.loss_weights.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.INFO, logger="clipasso_engine"):
        message = _load_loss(tiny_models, path)
    assert "is damaged or not a checkpoint" in message and "download it again" in message
    assert "PytorchStreamReader" not in message and "PytorchStreamReader" in caplog.text


@pytest.mark.parametrize("content", [b"not a checkpoint, just text\n", b""], ids=["text", "empty"])
def test_a_file_that_is_no_checkpoint_is_one_sentence(tiny_models: TinyModels, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    assert "is damaged or not a checkpoint" in _load_loss(tiny_models, path)
    with pytest.raises(ModelConfigError, match="is damaged or not a checkpoint"):
        load_dino(str(path), device=CPU)


def test_a_safetensors_with_other_keys_is_one_sentence(tiny_models: TinyModels, tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4)}, str(path))
    assert f"is not a checkpoint of {LOSS_ARCH}" in _load_loss(tiny_models, path)
    with pytest.raises(ModelConfigError, match="is not a checkpoint of a DINO ViT") as err:
        load_dino(str(path), device=CPU)
    _one_sentence(str(err.value))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:40])
    assert "is damaged or not a checkpoint" in _load_loss(tiny_models, broken)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:'torch.load' received a zip file:UserWarning")
def test_torchscript_archives_and_empty_state_dicts_are_one_sentence(tiny_models: TinyModels, tmp_path: Path) -> None:
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    assert "is a TorchScript archive" in _load_loss(tiny_models, scripted)
    empty = tmp_path / "empty.pt"
    torch.save({}, empty)
    assert "holds no state_dict of tensors" in _load_loss(tiny_models, empty)
    listed = tmp_path / "listed.pt"
    torch.save([torch.zeros(1)], listed)
    assert "holds no state_dict of tensors" in _load_loss(tiny_models, listed)


def test_a_resnet_checkpoint_given_as_dino_weights_is_one_sentence(tiny_models: TinyModels) -> None:
    with pytest.raises(ModelConfigError, match="is not a checkpoint of a DINO ViT") as err:
        load_dino(str(tiny_models.loss_weights), device=CPU)
    _one_sentence(str(err.value))
    assert "--saliency dino" in str(err.value)


def test_download_failures_are_named_per_model_and_shortened(
    monkeypatch: pytest.MonkeyPatch, offline: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from clipasso_engine import weights

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "_hub_reachable", lambda: True)

    def fail(repo: str, _files: object) -> str:
        raise OSError(f"{repo}: HTTP 503 " + "details " * 2000)

    monkeypatch.setattr(weights, "_hub_download", fail)
    with caplog.at_level(logging.INFO, logger="clipasso_engine"), pytest.raises(WeightsMissingError) as err:
        ensure_weights(SketchSettings())
    message = str(err.value)
    assert message.startswith("RN101 (openai) is not in the cache and could not be downloaded (timm/resnet101")
    assert "; ViT-B-32-quickgelu (openai) is not in the cache and could not be downloaded (timm/vit_base" in message
    assert len(message) < 1200 and "details " * 2000 in caplog.text  # the whole error is in the log


def test_a_sketch_names_every_missing_model_before_loading_any(offline: Path) -> None:
    from clipasso_engine import model_cache, sketch

    model_cache.release_models()
    with pytest.raises(WeightsMissingError, match=r"RN101 \(openai\) and ViT-B-32-quickgelu \(openai\) are not"):
        sketch(PIL.Image.new("RGB", (32, 32), "white"), SketchSettings(device="cpu", iterations=1), use_env=False)


def test_url_only_weights_are_named_with_their_url_and_skip_the_hub_probe(
    monkeypatch: pytest.MonkeyPatch, offline: Path
) -> None:
    from clipasso_engine import weights
    from clipasso_engine.availability import resolve_sources
    from clipasso_engine.weights import WeightsSource

    source = WeightsSource("RN-X (lab)", "loss", "RN-X", "lab", url="https://example.org/models/rn-x.pt")
    with pytest.raises(WeightsMissingError) as err:
        resolve_sources([source])
    assert "https://example.org/models/rn-x.pt (save it as " + str(offline / "rn-x.pt") + ")" in str(err.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "_hub_reachable", lambda: False)  # the hub is down, example.org is not
    monkeypatch.setattr(open_clip, "download_pretrained_from_url", lambda url, cache_dir: f"{cache_dir}/rn-x.pt")
    assert resolve_sources([source]) == [(source, str(offline / "rn-x.pt"))]

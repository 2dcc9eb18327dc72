"""The networks: CLIP towers through open_clip, the DINO ViT through timm, their weights, and the loss network.

Weights are named by an open_clip pretrained tag (``openai``) or by a local checkpoint file (``.pt``, ``.pth``,
``.bin``, ``.safetensors``). Tags resolve to a file in the download cache first, so a fetched model never touches
the network again. The cache is open_clip's default (the Hugging Face hub cache, ``~/.cache/huggingface/hub``,
or ``~/.cache/clip`` for URL-only tags) unless ``CLIPASSO_CACHE_DIR`` names another folder. Checkpoints are read
with ``weights_only`` loading or safetensors, never by unpickling arbitrary objects.

Environment variables (``settings_from_env``): ``CLIPASSO_LOSS_MODEL``, ``CLIPASSO_LOSS_WEIGHTS``,
``CLIPASSO_SALIENCY_MODEL``, ``CLIPASSO_SALIENCY_WEIGHTS``, ``CLIPASSO_MODEL_CONFIG``; ``HF_HUB_OFFLINE=1`` makes
every tag resolve from the cache only.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import os
import pickle
import socket
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import open_clip
import torch
from safetensors import SafetensorError
from torch import Tensor, nn

from .config import SketchSettings
from .errors import DeviceError, ModelConfigError, WeightsMissingError

#: CLIP's image normalisation (OpenAI), applied to images in [0, 1].
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
#: ImageNet normalisation, which the DINO ViT was trained with.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Hugging Face repository and files of the DINO ViT-S/8 weights (timm's ``vit_small_patch8_224.dino``).
DINO_REPO = "timm/vit_small_patch8_224.dino"
DINO_FILES = ("model.safetensors", "pytorch_model.bin")
#: The ``--saliency-weights`` value that names the published DINO weights.
DINO_TAG = "dino"

#: Settings field -> environment variable that may fill it.
ENV_VARS: dict[str, str] = {
    "loss_model": "CLIPASSO_LOSS_MODEL",
    "loss_weights": "CLIPASSO_LOSS_WEIGHTS",
    "saliency_model": "CLIPASSO_SALIENCY_MODEL",
    "saliency_weights": "CLIPASSO_SALIENCY_WEIGHTS",
    "model_config": "CLIPASSO_MODEL_CONFIG",
}
CACHE_ENV = "CLIPASSO_CACHE_DIR"

Role = Literal["loss", "saliency"]
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
# Seconds to wait for the hub's TCP port before declaring the machine offline: huggingface_hub itself retries
# an unreachable host for about 25 s, too long for a missing-weights error.
_PROBE_TIMEOUT_S = 5.0


def clip_normalize(images: Tensor) -> Tensor:
    """CLIP normalisation of ``images``, shape (B, 3, H, W), values in [0, 1]."""
    return _normalize(images, CLIP_MEAN, CLIP_STD)


def imagenet_normalize(images: Tensor) -> Tensor:
    """ImageNet normalisation (for DINO) of ``images``, shape (B, 3, H, W), values in [0, 1]."""
    return _normalize(images, IMAGENET_MEAN, IMAGENET_STD)


def _normalize(images: Tensor, mean: tuple[float, float, float], std: tuple[float, float, float]) -> Tensor:
    m, s = _constants(mean, std, images.device, images.dtype)
    return (images - m) / s


@functools.lru_cache(maxsize=16)
def _constants(
    mean: tuple[float, float, float], std: tuple[float, float, float], device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    # Built once per device: a host-to-device copy on every call would sit inside the optimisation loop.
    m = torch.tensor(mean, dtype=dtype, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=dtype, device=device).view(1, 3, 1, 1)
    return m, s


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


# --- architecture configs ----------------------------------------------------------------------------------------

# Resolved config paths already handed to open_clip: its registry is global and re-reads every path on each
# addition, so adding one twice only makes later additions slower.
_REGISTERED_CONFIG_PATHS: set[Path] = set()


def register_model_configs(path: str | None) -> list[str]:
    """Add the open_clip architecture configs in ``path`` (a JSON file or a folder of them); their names.

    Each JSON is an open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) and its file stem is the
    architecture name. Files are checked before open_clip sees them, because one broken file in its registry
    breaks every later lookup.
    """
    if not path:
        return []
    root = Path(path).expanduser().resolve()
    if root.is_dir():
        files = sorted(root.glob("*.json"))
    elif root.is_file():
        files = [root]
    else:
        raise ModelConfigError(f"Model config {path} does not exist: pass a JSON file or a folder of them.")
    if not files:
        raise ModelConfigError(f"Model config folder {path} holds no .json files.")
    for file in files:
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelConfigError(f"Model config {file} is not readable JSON: {err}.") from err
        missing = [
            key for key in ("embed_dim", "vision_cfg", "text_cfg") if not isinstance(config, dict) or key not in config
        ]
        if missing:
            raise ModelConfigError(f"Model config {file} is not an open_clip config: it lacks {', '.join(missing)}.")
    if root not in _REGISTERED_CONFIG_PATHS:
        open_clip.add_model_config(root)
        _REGISTERED_CONFIG_PATHS.add(root)
    return [file.stem for file in files]


def _check_arch(arch: str, role: Role) -> None:
    known = open_clip.list_models()
    if arch in known:
        return
    close = difflib.get_close_matches(arch, known, n=5, cutoff=0.5)
    examples = close or (["RN50", "RN101", "RN50x4"] if role == "loss" else ["ViT-B-32-quickgelu", "ViT-B-16"])
    raise ModelConfigError(
        f"Unknown {role} model architecture {arch!r}. Try one of: {', '.join(examples)} "
        f'(all: `python -c "import open_clip; print(open_clip.list_models())"`), or add a config with '
        f"--model-config."
    )


# --- weights -----------------------------------------------------------------------------------------------------


def _is_path(weights: str) -> bool:
    """Whether a weights value names a file rather than a pretrained tag."""
    return (
        os.sep in weights
        or "/" in weights
        or weights.lower().endswith(_CHECKPOINT_SUFFIXES)
        or Path(weights).expanduser().is_file()
    )


def _fixes(role: Role, model: str) -> str:
    option, var = f"--{role}-weights", f"CLIPASSO_{role.upper()}_WEIGHTS"
    return (
        f"run `clipasso models fetch` once while online to download {model}, or pass {option} "
        f"/path/to/file.pt (or set {var}) to use a local checkpoint."
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable() -> bool:
    """A quick TCP check of the hub; assumed reachable behind a proxy, which only the proxy can judge."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _hub_file(repo: str, filenames: Sequence[str], *, model: str, role: Role, download: bool) -> str:
    """A cached (or, when ``download``, freshly downloaded) file of a hub repo: the first of ``filenames`` found."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    folder = cache_dir()
    for name in filenames:
        try:
            return str(hf_hub_download(repo_id=repo, filename=name, cache_dir=folder, local_files_only=True))
        except LocalEntryNotFoundError:
            continue
    reason = "downloads are off (HF_HUB_OFFLINE)" if _offline() else "the Hugging Face hub cannot be reached"
    if not download or _offline() or not _hub_reachable():
        raise WeightsMissingError(f"Weights for {model} are not in the cache and {reason}: {_fixes(role, model)}")
    last: Exception | None = None
    for name in filenames:
        try:
            return str(hf_hub_download(repo_id=repo, filename=name, cache_dir=folder))
        except LocalEntryNotFoundError as err:  # subclass of EntryNotFoundError: a network failure, not a 404
            last = err
            break
        except EntryNotFoundError as err:  # this file name is absent from the repo: try the next one
            last = err
        except OSError as err:
            last = err
            break
    raise WeightsMissingError(f"Weights for {model} could not be downloaded ({last}): {_fixes(role, model)}")


def resolve_clip_weights(arch: str, weights: str, *, role: Role = "loss", download: bool = True) -> str:
    """The local checkpoint file for open_clip ``arch`` with ``weights`` (a pretrained tag or a file path)."""
    model = f"{arch} ({weights})"
    if _is_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsMissingError(
                f"The {role} weights file {path} does not exist: check the path, or {_fixes(role, arch)}"
            )
        return str(path)
    config = open_clip.get_pretrained_cfg(arch, weights)
    if not config:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        choices = f"known tags for {arch}: {', '.join(tags)}" if tags else f"{arch} has no published weights"
        raise ModelConfigError(f"Unknown {role} weights {weights!r} ({choices}); or pass a checkpoint file path.")
    if config.get("hf_hub"):
        # open_clip writes "org/repo/file" or "org/repo/" (the repo's default weights file).
        repo, filename = os.path.split(config["hf_hub"])
        filename = filename or open_clip.constants.HF_WEIGHTS_NAME
        return _hub_file(repo, _with_safetensors_first(filename), model=model, role=role, download=download)
    return _url_file(config["url"], model=model, role=role, download=download)


def _with_safetensors_first(filename: str) -> list[str]:
    """Prefer a repo's safetensors twin of ``filename``, which loads without pickle."""
    if filename == open_clip.constants.HF_WEIGHTS_NAME:
        return [open_clip.constants.HF_SAFE_WEIGHTS_NAME, filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def _url_file(url: str, *, model: str, role: Role, download: bool) -> str:
    """A tag published only by URL: open_clip's own URL cache (``~/.cache/clip`` by default)."""
    folder = cache_dir() or os.path.expanduser("~/.cache/clip")
    target = Path(folder) / os.path.basename(urllib.parse.urlparse(url).path)
    if target.is_file():
        return str(target)
    if not download or _offline():
        raise WeightsMissingError(f"Weights for {model} are not in the cache: {_fixes(role, model)}")
    try:
        # Checks the published SHA-256 where the URL carries one.
        return str(open_clip.download_pretrained_from_url(url, cache_dir=folder))
    except (OSError, RuntimeError) as err:
        raise WeightsMissingError(
            f"Weights for {model} could not be downloaded ({err}): {_fixes(role, model)}"
        ) from err


def _unreadable(path: str) -> ModelConfigError:
    return ModelConfigError(
        f"Checkpoint {path} cannot be read as plain tensors: use a safetensors file or a state_dict saved with "
        f"torch.save (files that need arbitrary objects unpickled, and TorchScript archives such as OpenAI's "
        f"original .pt files, are refused for safety)."
    )


def read_state_dict(path: str) -> dict[str, Tensor]:
    """Tensors of a checkpoint file, read without unpickling arbitrary objects; unwraps ``state_dict``/``model``."""
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            data: Any = load_file(path, device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError, SafetensorError) as err:
        raise _unreadable(path) from err
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise ModelConfigError(f"Checkpoint {path} holds no state_dict of tensors.")
    return {k.removeprefix("module."): v for k, v in data.items()}


# --- loading -----------------------------------------------------------------------------------------------------


def _freeze(module: nn.Module, device: torch.device) -> nn.Module:
    module = module.to(device=device, dtype=torch.float32).eval()
    module.requires_grad_(False)
    return module


def load_clip_visual(
    arch: str,
    weights: str,
    *,
    device: torch.device,
    model_config: str | None = None,
    role: Role = "loss",
    download: bool = True,
) -> nn.Module:
    """The frozen, eval-mode, fp32 image tower of open_clip ``arch`` with ``weights``, on ``device``.

    ``weights`` is a pretrained tag (resolved from the cache, downloaded when missing and ``download``) or a local
    checkpoint of the whole CLIP model. ``role`` only words the error messages after the right option.
    """
    register_model_configs(model_config)
    _check_arch(arch, role)
    checkpoint = resolve_clip_weights(arch, weights, role=role, download=download)
    tag_config = {} if _is_path(weights) else open_clip.get_pretrained_cfg(arch, weights)
    try:
        # Built on the CPU so the text tower, discarded below, never reaches the accelerator. A tag trained with
        # QuickGELU forces it, as open_clip's own warning for that mismatch recommends.
        model = open_clip.create_model(
            arch,
            pretrained=checkpoint,
            device="cpu",
            precision="fp32",
            force_quick_gelu=bool(tag_config.get("quick_gelu", False)),
            weights_only=True,
        )
    except pickle.UnpicklingError as err:  # what weights_only loading raises for anything but tensors
        raise _unreadable(checkpoint) from err
    except (RuntimeError, KeyError, ValueError, SafetensorError) as err:
        raise ModelConfigError(f"The {role} checkpoint {checkpoint} does not load into {arch}: {err}") from err
    visual = model.visual
    if not isinstance(visual, nn.Module):
        raise ModelConfigError(f"{arch} has no image tower.")
    return _freeze(visual, device)


def resolve_dino_weights(weights: str, *, download: bool = True) -> str:
    """The local file of DINO ``weights``: ``dino`` (the published ViT-S/8, from the cache or downloaded) or a file."""
    if _is_path(weights):
        return resolve_clip_weights("DINO", weights, role="saliency")
    if weights == DINO_TAG:
        return _hub_file(DINO_REPO, DINO_FILES, model="DINO ViT-S/8", role="saliency", download=download)
    raise ModelConfigError(
        f"With --saliency dino, the saliency weights must be {DINO_TAG!r} or a DINO checkpoint file, not {weights!r}."
    )


def load_dino(weights: str, *, device: torch.device, download: bool = True) -> nn.Module:
    """The frozen DINO ViT (timm VisionTransformer) for ``weights``: ``dino`` (ViT-S/8) or a checkpoint file.

    The architecture is read from the checkpoint (patch size, width, depth, MLP ratio; 64-wide heads as in every
    DINO ViT), so ViT-S/8, ViT-S/16, ViT-B/8 and ViT-B/16 DINO checkpoints in timm's layout all load.
    """
    from timm.models.vision_transformer import VisionTransformer

    path = resolve_dino_weights(weights, download=download)
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("head.")}
    try:
        width = state["cls_token"].shape[-1]
        patch = state["patch_embed.proj.weight"].shape[-1]
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
        mlp_ratio = state["blocks.0.mlp.fc1.weight"].shape[0] / width
    except (KeyError, ValueError) as err:
        raise ModelConfigError(f"Checkpoint {path} is not a DINO ViT in timm's layout (missing {err}).") from err
    model = VisionTransformer(
        img_size=grid * patch,
        patch_size=patch,
        embed_dim=width,
        depth=depth,
        num_heads=max(1, width // 64),
        mlp_ratio=mlp_ratio,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        num_classes=0,
    )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelConfigError(f"Checkpoint {path} does not load into a DINO ViT: {err}") from err
    return _freeze(model, device)


def dino_weights(settings: SketchSettings) -> str:
    """The DINO weights a run uses: the saliency weights when they name a file, else the published ViT-S/8.

    The default saliency weights (``openai``) name CLIP's, so with ``--saliency dino`` they mean "the default".
    """
    weights = settings.saliency_weights
    return DINO_TAG if weights == SketchSettings().saliency_weights else weights


# --- the loss network --------------------------------------------------------------------------------------------


def _folded(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """One convolution computing ``norm(conv(x))`` of an eval-mode BatchNorm."""
    assert norm.running_mean is not None and norm.running_var is not None
    scale = norm.running_var.add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        conv.dilation,  # type: ignore[arg-type]
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(shift)  # type: ignore[union-attr]
    return fused.requires_grad_(False)


def fold_batch_norms(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into it; returns how many were folded.

    Handles the two ways an open_clip ModifiedResNet pairs them: attributes ``convK``/``bnK`` of one module (stem
    and bottlenecks) and consecutive entries of an ``nn.Sequential`` (the downsample branch). Module names stay, so
    stage hooks by name keep working.
    """
    folded = 0
    for child in list(module.children()):
        folded += fold_batch_norms(child)
    names = dict(module.named_children())
    for name, norm in names.items():
        if not (isinstance(norm, nn.BatchNorm2d) and name.startswith("bn") and not norm.training):
            continue
        conv = names.get("conv" + name[2:])
        if isinstance(conv, nn.Conv2d):
            setattr(module, "conv" + name[2:], _folded(conv, norm))
            setattr(module, name, nn.Identity())
            folded += 1
    if isinstance(module, nn.Sequential):
        keys = list(module._modules)
        for first, second in itertools.pairwise(keys):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and not norm.training:
                module._modules[first] = _folded(conv, norm)
                module._modules[second] = nn.Identity()
                folded += 1
    return folded


class LossNetwork(nn.Module):
    """A frozen CLIP ResNet image tower that returns named stage activations and the final embedding.

    Stages are found by module name (``named_modules``), so any open_clip ``ModifiedResNet`` serves.
    """

    def __init__(
        self, visual: nn.Module, layers: Sequence[str] = ("layer2", "layer3"), *, optimise: bool = True
    ) -> None:
        super().__init__()
        modules = dict(visual.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            raise ModelConfigError(
                f"The loss model has no stage named {', '.join(missing)}; it must be an open_clip ResNet "
                f"(RN50, RN101, ...) with stages layer1 to layer4."
            )
        device = next(visual.parameters()).device
        # Frozen and in eval mode, BatchNorm is an affine map: folding it into the preceding convolution saves a
        # pass over every activation (measured ~10% of RN101 forward + backward on CPU), same function. Channels-last
        # is the layout oneDNN and cuDNN (tensor cores) run convolutions fastest in; MPS gains nothing from it.
        if optimise:
            fold_batch_norms(visual)
        self.channels_last = optimise and device.type in ("cpu", "cuda")
        if self.channels_last:
            visual.to(memory_format=torch.channels_last)
        self.visual = visual
        self.layers = tuple(layers)
        self._captured: dict[str, Tensor] = {}
        for name in self.layers:
            modules[name].register_forward_hook(self._capture(name))

    def _capture(self, name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            self._captured[name] = output

        return hook

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Activations of ``images``, CLIP-normalised, shape (B, 3, 224, 224).

        Returns ``{layer: (B, C, H, W) for each layer, "embedding": (B, D)}``; for RN101 layer2 is
        (B, 512, 28, 28), layer3 (B, 1024, 14, 14) and the embedding (B, 512). One forward pass of the tower,
        which the embedding needs whole anyway; the weights are frozen, so gradients reach ``images`` only.
        """
        self._captured = {}
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        embedding = self.visual(images)
        out, self._captured = self._captured, {}
        out["embedding"] = embedding
        return out


def load_loss_network(settings: SketchSettings, device: torch.device) -> LossNetwork:
    """The loss network the settings name (``loss_model``, ``loss_weights``, ``geometric_layers``)."""
    visual = load_clip_visual(
        settings.loss_model, settings.loss_weights, device=device, model_config=settings.model_config, role="loss"
    )
    return LossNetwork(visual, settings.geometric_layers)


def fetch_models(settings: SketchSettings) -> list[str]:
    """Download the loss and saliency weights (and DINO's when ``settings.saliency == "dino"``) into the cache.

    Returns one line per model: its name and the file it resolves to. Local checkpoint files are only checked.
    """
    register_model_configs(settings.model_config)
    wanted: list[tuple[str, str, Role]] = [
        (settings.loss_model, settings.loss_weights, "loss"),
        (settings.saliency_model, settings.saliency_weights, "saliency"),
    ]
    if settings.saliency == "dino" and settings.saliency_weights != SketchSettings().saliency_weights:
        # The saliency weights name a DINO file, so there are no CLIP saliency weights to fetch.
        wanted = wanted[:1]
    lines = []
    for arch, weights, role in wanted:
        _check_arch(arch, role)
        lines.append(f"{arch} ({weights}): {resolve_clip_weights(arch, weights, role=role)}")
    if settings.saliency == "dino":
        weights = dino_weights(settings)
        lines.append(f"DINO ViT ({weights}): {resolve_dino_weights(weights)}")
    return lines

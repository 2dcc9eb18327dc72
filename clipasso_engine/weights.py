"""Model weights: where each checkpoint comes from (a file, a hub repository, a URL), the cache and downloads.

Weights are named by an open_clip pretrained tag (``openai``) or by a local checkpoint file (``.pt``, ``.pth``,
``.bin``, ``.safetensors``). A tag resolves to its file in a hub repository (or a URL), as open_clip's pretrained
registry (timm's for DINO) names it. Lookup order: a hand-placed copy at ``<folder>/<repo>/<file>`` (the folder is
``CLIPASSO_CACHE_DIR``, else the hub cache ``~/.cache/huggingface/hub``), then the hub cache itself, then a
download. ``HF_HUB_OFFLINE=1`` turns downloads off. :mod:`.availability` checks them all and words what is missing.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import open_clip

from .config import SketchSettings
from .environment import cache_dir
from .errors import ModelConfigError
from .model_configs import check_arch, register_model_configs

logger = logging.getLogger("clipasso_engine")

Role = Literal["loss", "saliency"]
#: The ``--saliency-weights`` value that names the published DINO weights.
DINO_TAG = "dino"
#: timm's pretrained name of the DINO ViT-S/8 (its registry gives the hub repository).
DINO_MODEL = "vit_small_patch8_224.dino"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
# Seconds to wait for the hub's TCP port before declaring the machine offline: huggingface_hub itself retries
# an unreachable host for about 25 s, too long for a missing-weights error.
_PROBE_TIMEOUT_S = 5.0
# How much of a download error goes into the message; the whole text goes to the log.
_REASON_CHARS = 120


@dataclass(frozen=True)
class WeightsSource:
    """Where one model's checkpoint comes from: a local file, files of a hub repository, or a URL."""

    model: str  # what the user reads: "RN101 (openai)", "DINO ViT-S/8"
    role: Role
    arch: str  # open_clip architecture, or "DINO"
    weights: str  # the tag or path the user gave
    path: Path | None = None  # a local checkpoint the user named
    repo: str = ""  # hub repository, e.g. "timm/resnet101_clip.openai"
    files: tuple[str, ...] = ()  # its candidate files, preferred first
    url: str = ""  # for tags published only by URL

    @property
    def option(self) -> str:
        return f"--{self.role}-weights"


class Unavailable(Exception):
    """A model could not be had; ``str()`` is the reason, worded to follow "not in the cache and"."""


def is_file(path: Path) -> bool:
    """Whether ``path`` is a file; False, not an error, for names the system cannot even look up (too long, NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def is_path(weights: str) -> bool:
    """Whether a weights value names a file rather than a pretrained tag."""
    return (
        os.sep in weights
        or "/" in weights
        or weights.lower().endswith(_CHECKPOINT_SUFFIXES)
        or is_file(Path(weights).expanduser())
    )


def short(value: object, limit: int = 160) -> str:
    """``value`` as text, its middle elided beyond ``limit`` characters, for messages that echo user input."""
    text = str(value)
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]}"


def clip_source(arch: str, weights: str, role: Role) -> WeightsSource:
    """Where the weights of open_clip ``arch`` named ``weights`` (a pretrained tag or a file path) come from."""
    if is_path(weights):
        return WeightsSource(f"{arch} ({short(weights)})", role, arch, weights, path=Path(weights).expanduser())
    config = open_clip.get_pretrained_cfg(arch, weights)
    if not config:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        choices = f"known tags for {arch}: {', '.join(tags)}" if tags else f"{arch} has no published weights"
        raise ModelConfigError(
            f"Unknown {role} weights {short(weights)!r} ({choices}); or pass a checkpoint file path."
        )
    model = f"{arch} ({weights})"
    if config.get("hf_hub"):
        # open_clip writes "org/repo/file" or "org/repo/" (the repo's default weights file).
        repo, filename = os.path.split(config["hf_hub"])
        filename = filename or open_clip.constants.HF_WEIGHTS_NAME
        return WeightsSource(model, role, arch, weights, repo=repo, files=_with_safetensors_first(filename))
    return WeightsSource(model, role, arch, weights, url=config["url"])


def _with_safetensors_first(filename: str) -> tuple[str, ...]:
    """Prefer a repo's safetensors twin of ``filename``, which loads without pickle."""
    if filename == open_clip.constants.HF_WEIGHTS_NAME:
        return (open_clip.constants.HF_SAFE_WEIGHTS_NAME, filename)
    if filename.endswith((".bin", ".pth")):
        return (filename[:-4] + ".safetensors", filename)
    return (filename,)


def dino_weights(settings: SketchSettings) -> str:
    """The DINO weights a run uses: the saliency weights when they name a file, else the published ViT-S/8.

    The default saliency weights (``openai``) name CLIP's, so with ``--saliency dino`` they mean "the default".
    """
    weights = settings.saliency_weights
    return DINO_TAG if weights == SketchSettings().saliency_weights else weights


def dino_source(weights: str) -> WeightsSource:
    """Where DINO ``weights`` come from: ``dino`` (the published ViT-S/8) or a checkpoint file."""
    if is_path(weights):
        path = Path(weights).expanduser()
        return WeightsSource(f"DINO ViT ({short(weights)})", "saliency", "DINO", weights, path=path)
    if weights != DINO_TAG:
        raise ModelConfigError(
            f"With --saliency dino, the saliency weights must be {DINO_TAG!r} or a DINO checkpoint file, "
            f"not {short(weights)!r}."
        )
    from huggingface_hub import constants
    from timm.models import get_pretrained_cfg

    config = get_pretrained_cfg(DINO_MODEL)
    assert config is not None and config.hf_hub_id, "timm lists the DINO ViT-S/8 weights on the hub"
    # timm's own file names for a hub checkpoint: safetensors first, as timm tries them.
    files = (constants.SAFETENSORS_SINGLE_FILE, constants.PYTORCH_WEIGHTS_NAME)
    return WeightsSource("DINO ViT-S/8", "saliency", "DINO", DINO_TAG, repo=config.hf_hub_id, files=files)


def needed_sources(settings: SketchSettings) -> list[WeightsSource]:
    """Every checkpoint a run with ``settings`` loads: the loss network's and the saliency model's."""
    register_model_configs(settings.model_config)
    check_arch(settings.loss_model, "loss")
    sources = [clip_source(settings.loss_model, settings.loss_weights, "loss")]
    if settings.saliency == "dino":
        sources.append(dino_source(dino_weights(settings)))
    else:
        check_arch(settings.saliency_model, "saliency")
        sources.append(clip_source(settings.saliency_model, settings.saliency_weights, "saliency"))
    return sources


# --- finding and downloading -------------------------------------------------------------------------------------


def local_folder() -> Path:
    """The folder holding the cache, where a hand-fetched hub file goes as ``<folder>/<repo>/<file>``."""
    from huggingface_hub import constants

    return Path(cache_dir() or constants.HF_HUB_CACHE)


def url_target(url: str) -> Path:
    """Where open_clip's URL cache (``~/.cache/clip`` by default) keeps the file of ``url``."""
    folder = Path(cache_dir() or "~/.cache/clip").expanduser()
    return folder / os.path.basename(urllib.parse.urlparse(url).path)


def cached_file(source: WeightsSource) -> str | None:
    """The local file of ``source`` if there is one, without touching the network."""
    if source.path is not None:
        return str(source.path) if is_file(source.path) else None
    if source.url:
        target = url_target(source.url)
        return str(target) if target.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for name in source.files:
        placed = local_folder() / source.repo / name
        if placed.is_file():
            return str(placed)
    for name in source.files:
        try:
            return str(
                hf_hub_download(repo_id=source.repo, filename=name, cache_dir=cache_dir(), local_files_only=True)
            )
        except LocalEntryNotFoundError:
            continue
    return None


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


def download(source: WeightsSource) -> str:
    """Download ``source`` into the cache; raises :class:`Unavailable` with the reason."""
    try:
        if source.url:
            # Checks the published SHA-256 where the URL carries one.
            return str(open_clip.download_pretrained_from_url(source.url, cache_dir=str(url_target(source.url).parent)))
        return _hub_download(source.repo, source.files)
    except (OSError, RuntimeError) as err:
        logger.info("Downloading %s failed: %s", source.model, err)
        raise Unavailable(f"could not be downloaded ({short(err, _REASON_CHARS)})") from err


def _hub_download(repo: str, filenames: Sequence[str]) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    last: Exception = FileNotFoundError(f"{repo} holds none of {', '.join(filenames)}")
    for name in filenames:
        try:
            return str(hf_hub_download(repo_id=repo, filename=name, cache_dir=cache_dir()))
        except LocalEntryNotFoundError:  # subclass of EntryNotFoundError: a network failure, not a 404
            raise
        except EntryNotFoundError as err:  # this file name is absent from the repo: try the next one
            last = err
    raise OSError(str(last))


def no_download_reason(*, hub: bool = True) -> str | None:
    """Why nothing can be downloaded now, or None when downloads may work; ``hub``: also probe the hub."""
    if _offline():
        return "downloads are off (HF_HUB_OFFLINE)"
    if hub and not _hub_reachable():
        return "the Hugging Face hub cannot be reached"
    return None

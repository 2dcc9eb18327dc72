"""Whether the weights a run needs are all here: :func:`ensure_weights` and the one message for missing ones.

Every model is resolved (from the cache, else downloaded where that is possible) before any is loaded, so one
message names every missing model, why it is missing, and each way to get it: the ``models fetch`` command for
this Python, the file to copy by hand from a machine that is online and where it goes, or a local checkpoint.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .config import SketchSettings
from .errors import WeightsMissingError
from .weights import (
    Unavailable,
    WeightsSource,
    cached_file,
    download,
    local_folder,
    needed_sources,
    no_download_reason,
    short,
    url_target,
)


def ensure_weights(settings: SketchSettings, *, fetching: bool = False) -> list[tuple[WeightsSource, str]]:
    """The local file of every model ``settings`` need, downloading what is missing where that is possible.

    Checks them all before any is loaded and raises one :class:`WeightsMissingError` naming every model still
    missing. ``fetching``: the caller is ``models fetch`` itself, so the message does not suggest running it.
    """
    return resolve_sources(needed_sources(settings), model_config=settings.model_config, fetching=fetching)


def resolve(source: WeightsSource, model_config: str | None = None) -> str:
    """The local file of one ``source``, downloaded when missing and possible."""
    return resolve_sources([source], model_config=model_config)[0][1]


def resolve_sources(
    sources: Sequence[WeightsSource], *, model_config: str | None = None, fetching: bool = False
) -> list[tuple[WeightsSource, str]]:
    """Local files of ``sources`` (see :func:`ensure_weights`); ``model_config`` only words the fetch command."""
    found: dict[int, str] = {}
    missing: list[tuple[WeightsSource, str]] = []
    reasons: dict[bool, str | None] = {}  # one probe for all: an offline machine is offline for every model
    for index, source in enumerate(sources):
        path = cached_file(source)
        if path is not None:
            found[index] = path
            continue
        if source.path is not None:
            missing.append((source, "does not exist"))
            continue
        hub = not source.url  # a URL-only tag is not on the hub, so the hub's reachability says nothing about it
        if hub not in reasons:
            reasons[hub] = no_download_reason(hub=hub)
        reason = reasons[hub]
        if reason is not None:
            missing.append((source, reason))
            continue
        try:
            found[index] = download(source)
        except Unavailable as err:
            missing.append((source, str(err)))
    if missing:
        raise WeightsMissingError(missing_message(missing, model_config=model_config, fetching=fetching))
    return [(source, found[index]) for index, source in enumerate(sources)]


# --- the message -------------------------------------------------------------------------------------------------


def _quote(arg: str) -> str:
    """``arg`` as one shell word: double quotes (which sh, cmd and PowerShell all read) only where needed."""
    plain = arg and all(c.isalnum() or c in "-_./:\\=+@%," for c in arg)
    return arg if plain else '"' + arg.replace('"', '\\"') + '"'


def fetch_command(sources: Sequence[WeightsSource], model_config: str | None = None) -> str:
    """The ``models fetch`` command that gets the tags of ``sources``, for the Python running now.

    Built from ``sys.executable``: installer users have no ``clipasso`` on their PATH.
    """
    defaults = SketchSettings()
    args = [sys.executable, "-m", "clipasso_engine", "models", "fetch"]
    for source in sources:
        if source.path is not None:
            continue
        if source.arch == "DINO":
            args += ["--saliency", "dino"]
            continue
        if source.arch != getattr(defaults, f"{source.role}_model"):
            args += [f"--{source.role}-model", source.arch]
        if source.weights != getattr(defaults, f"{source.role}_weights"):
            args += [source.option, source.weights]
    if model_config:
        args += ["--model-config", model_config]
    return " ".join(_quote(arg) for arg in args)


def _manual_copy(source: WeightsSource) -> str:
    """The file to fetch by hand, "URL (save it as PATH)": the URL and where the engine looks for it."""
    if source.url:
        return f"{source.url} (save it as {url_target(source.url)})"
    from huggingface_hub import hf_hub_url

    name = source.files[0]
    return f"{hf_hub_url(source.repo, name)} (save it as {local_folder() / source.repo / name})"


def _join(items: Sequence[str], word: str = "and") -> str:
    items = list(dict.fromkeys(items))  # each once, in order
    if len(items) <= 2:
        return f" {word} ".join(items)
    return f"{', '.join(items[:-1])}, {word} {items[-1]}"


def missing_message(
    missing: Sequence[tuple[WeightsSource, str]], *, model_config: str | None = None, fetching: bool = False
) -> str:
    """One sentence: every missing model, why, and each way to get it (fetch, copy by hand, or a local file)."""
    files = [source for source, _ in missing if source.path is not None]
    tags = [(source, why) for source, why in missing if source.path is None]
    problems = [f"the {source.role} weights file {short(source.path)} does not exist" for source in files]
    fixes = []
    if files:
        variables = _join([f"CLIPASSO_{source.role.upper()}_WEIGHTS" for source in files], "or")
        fixes.append(f"check the path given with {_join([s.option for s in files], 'or')} or {variables}")
    if tags:
        for reason in dict.fromkeys(why for _, why in tags):  # usually one reason for all: offline is offline
            models = [source.model for source, why in tags if why == reason]
            verb = "is" if len(models) == 1 else "are"
            problems.append(f"{_join(models)} {verb} not in the cache and {reason}")
        if not fetching:
            fixes.append(f"run `{fetch_command([s for s, _ in tags], model_config)}` once while online")
        copies = _join([_manual_copy(source) for source, _ in tags])
        fixes.append(f"download {copies} from a machine that is online")
    options = _join([source.option for source, _ in missing], "or")
    variables = _join([f"CLIPASSO_{source.role.upper()}_WEIGHTS" for source, _ in missing], "or")
    fixes.append(f"pass a local checkpoint file with {options} (or set {variables})")
    text = "; ".join(problems)
    options_text = ", ".join(fixes[:-1]) + (", or " if len(fixes) > 1 else "") + fixes[-1]
    return f"{text[0].upper()}{text[1:]}: {options_text}."

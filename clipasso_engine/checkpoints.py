"""Reading checkpoint files safely, and one sentence for each way a file can fail to load.

Files are read with ``weights_only`` loading or safetensors, never by unpickling arbitrary objects. Whatever goes
wrong, the message says what is wrong with the file and what to do; the library's own text (which for a checkpoint
of another architecture runs to tens of thousands of characters) goes to the ``clipasso_engine`` log instead.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from typing import Any

import torch
from safetensors import SafetensorError
from torch import Tensor

from .errors import ModelConfigError
from .weights import short

logger = logging.getLogger("clipasso_engine")

#: What torch, safetensors and open_clip raise for a file that is not the checkpoint they expect. open_clip
#: indexes and iterates the loaded object, so a list or an empty dict surface as KeyError, TypeError, ...
LOAD_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError,
    RuntimeError,
    OSError,
    ValueError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    StopIteration,
    SafetensorError,
)


def _is_torchscript(path: str) -> bool:
    # torch.jit.save writes a zip archive with a constants.pkl record; torch.save never does.
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def _subject(path: str, role: str) -> str:
    return f"The {role + ' ' if role else ''}weights file {short(path)}"


def _starts_as_pickle(path: str) -> bool:
    # The legacy torch.save format is a plain pickle, which opens with the PROTO opcode.
    with open(path, "rb") as file:
        return file.read(1) == b"\x80"


def unreadable(path: str, role: str, err: BaseException) -> ModelConfigError:
    """The one-sentence error for a checkpoint file that cannot be read as tensors (``err`` goes to the log)."""
    logger.info("Reading the %s checkpoint %s failed: %r", role, path, err)
    shown = _subject(path, role)
    complete_zip = not path.endswith(".safetensors") and zipfile.is_zipfile(path)
    if complete_zip and _is_torchscript(path):
        return ModelConfigError(
            f"{shown} is a TorchScript archive (such as OpenAI's original .pt files), which is refused for safety: "
            f"use the pretrained tag (openai) or a safetensors file instead."
        )
    if isinstance(err, pickle.UnpicklingError) and (complete_zip or _starts_as_pickle(path)):
        return ModelConfigError(
            f"{shown} holds Python objects besides tensors, which are refused for safety: save its state_dict "
            f"with torch.save, or convert it to safetensors."
        )
    return ModelConfigError(
        f"{shown} is damaged or not a checkpoint (an incomplete download, or another kind of file): download it "
        f"again, or pass a .safetensors or torch.save file."
    )


def read_state_dict(path: str, role: str = "") -> dict[str, Tensor]:
    """Tensors of a checkpoint file, read without unpickling arbitrary objects; unwraps ``state_dict``/``model``.

    ``role`` (loss, saliency) only words the error messages.
    """
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            data: Any = load_file(path, device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as err:
        raise unreadable(path, role, err) from err
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not data or not all(isinstance(v, Tensor) for v in data.values()):
        raise ModelConfigError(
            f"{_subject(path, role)} holds no state_dict of tensors: save the model's state_dict() with torch.save, "
            f"or use safetensors."
        )
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_error(path: str, arch: str, role: str, err: BaseException, fix: str = "") -> ModelConfigError:
    """The one-sentence error for a checkpoint that did not load into ``arch``: unreadable, or another model's.

    Re-reads the file to tell the two apart (only on this failure path, so a good load never reads it twice).
    ``fix`` replaces the default advice (a checkpoint of ``arch``, or ``--{role}-model`` naming the file's).
    """
    read_state_dict(path, role)  # raises the unreadable-file sentence when that is the problem
    logger.info("The %s checkpoint %s does not load into %s: %s", role, path, arch, err)
    fix = fix or f"pass one of {arch}, or give the file's architecture with --{role}-model"
    return ModelConfigError(
        f"{_subject(path, role)} is not a checkpoint of {arch} (its tensors differ in names or shapes): {fix}."
    )

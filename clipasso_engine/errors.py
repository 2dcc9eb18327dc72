"""The engine's expected failures: each carries a protocol code and a one-sentence message that names the fix.

Anything that is not a ``ClipassoError`` is a bug; the CLI and the protocol report it through one formatter.
"""

from __future__ import annotations


class ClipassoError(Exception):
    """Base of every expected failure. ``str(err)`` is the user-facing sentence."""

    #: Stable machine-readable code, used by the ``serve`` protocol (docs/protocol.md).
    code = "error"
    #: Process exit status of the ``clipasso`` command for this failure.
    exit_status = 1


class BadRequest(ClipassoError):
    """The request line is not JSON, not a sketch request, or misses a field."""

    code = "bad_request"
    exit_status = 2


class SettingsError(ClipassoError, ValueError):
    """An option has an invalid value."""

    code = "bad_settings"
    exit_status = 2


class InputImageError(ClipassoError):
    """The input image is missing, empty, truncated, not an image, or too large to decode safely."""

    code = "bad_image"


class MaskError(ClipassoError):
    """The object mask cannot be read or does not match the image."""

    code = "bad_mask"


class ModelConfigError(ClipassoError):
    """An architecture name or model config file is unknown or unusable."""

    code = "bad_model"


class WeightsMissingError(ClipassoError):
    """Model weights are neither cached nor downloadable; the message gives both fixes."""

    code = "weights_missing"


class DeviceError(ClipassoError):
    """The requested device (cuda, mps) is not available."""

    code = "bad_device"


class OutOfMemory(ClipassoError):
    """The device ran out of memory; the message suggests a smaller run."""

    code = "out_of_memory"


class OutputError(ClipassoError):
    """The output file cannot be written."""

    code = "output_failed"


class PathDataError(ClipassoError):
    """SVG path data that cannot be parsed (``path_data.py``)."""

    code = "bad_paths"
    exit_status = 2


class ShapeMaskError(ClipassoError):
    """Mask or detail shapes that are unusable: outside the image, empty, or not closed."""

    code = "bad_shapes"
    exit_status = 2


class InitStrokesError(ClipassoError):
    """Strokes given to refine (``--init``, ``--lock``, ``--add``) that are unusable."""

    code = "bad_init"
    exit_status = 2


class Cancelled(ClipassoError):
    """The run was cancelled before it produced strokes."""

    code = "cancelled"
    exit_status = 130


class OutputConflictError(OutputError):
    """An output path is the input, the mask or the other output: writing it would destroy that file."""

    exit_status = 2


#: Longest user-facing message: a sentence, even when it echoes a 50 MB path.
MAX_MESSAGE_CHARS = 400


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, keeping its start and its end (where the fix is usually named)."""
    if len(text) <= limit:
        return text
    keep = (limit - 1) // 2
    return text[:keep] + "…" + text[len(text) - (limit - 1 - keep) :]


#: Words that torch, CUDA and MPS use for an allocation failure that is not a ``torch.OutOfMemoryError``.
_OUT_OF_MEMORY_WORDS = ("out of memory", "cannot allocate memory", "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device or host allocation failure, in any of its forms (CUDA, MPS, CPU)."""
    if isinstance(exc, MemoryError):
        return True
    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
        return True
    return isinstance(exc, RuntimeError) and any(word in str(exc).lower() for word in _OUT_OF_MEMORY_WORDS)


def out_of_memory(device: object, stage: str) -> OutOfMemory:
    """The one sentence for running out of memory during ``stage`` on ``device``."""
    return OutOfMemory(
        f"The {device} device ran out of memory while {stage}; close other programs, or try fewer seeds "
        "(--seeds 1), fewer strokes, or --device cpu."
    )


def format_unexpected(exc: BaseException, version: str) -> str:
    """The one formatter for bugs, used by the CLI and the protocol: one sentence, the traceback goes to the log."""
    detail = shorten(f"{type(exc).__name__}: {exc}", 200)
    return (
        f"Unexpected internal error ({detail}); this is a bug: please report it with the command you ran and the "
        f"log (engine {version})."
    )

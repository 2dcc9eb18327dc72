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


class Cancelled(ClipassoError):
    """The run was cancelled before it produced strokes."""

    code = "cancelled"
    exit_status = 130

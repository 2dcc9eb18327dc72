"""Output: strokes as a standalone SVG, and atomic writes of any output file.

Strokes arrive in the input image's pixel frame (``PreparedImage.canvas_to_image``), so the SVG's
``viewBox="0 0 W H"`` lays them exactly over the photo shown at the same size. Output is deterministic: the same
strokes, width and metadata give the same bytes (fixed 3-decimal numbers, provenance JSON with sorted keys).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import torch

from .errors import OutputError
from .version import __version__

#: Digits after the decimal point of every coordinate and width we write (1/1000 px is far below visibility).
DECIMALS = 3

StrokesLike = torch.Tensor | np.ndarray | Sequence[Sequence[Sequence[float]]]


def strokes_to_array(strokes: StrokesLike) -> np.ndarray:
    """(N, 4, 2) float64 array of finite control points from a tensor, array or nested list."""
    if isinstance(strokes, torch.Tensor):
        strokes = strokes.detach().to("cpu", torch.float64).numpy()
    points = np.asarray(strokes, dtype=np.float64)
    if points.size == 0:
        points = points.reshape(0, 4, 2)
    if points.ndim != 3 or points.shape[1:] != (4, 2):
        raise ValueError(f"strokes must have shape (N, 4, 2), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("stroke control points must be finite")
    return points


def strokes_to_svg(
    strokes: StrokesLike,
    width: float,
    image_size: tuple[int, int],
    metadata: Mapping[str, object] | None = None,
    color: str = "#000000",
) -> str:
    """A standalone SVG of the strokes over a ``W``×``H`` image (``image_size``), ``width`` in image pixels.

    One ``<g id="clipasso-sketch">`` holds a ``<path id="clipasso-stroke-i" d="M x0 y0 C x1 y1 x2 y2 x3 y3">`` per
    stroke, each styled itself (no fill, ``color``, round caps and joins) so a path copied out keeps its look.
    ``metadata`` (engine version, seed, settings, loss) is stored as JSON in ``<metadata id="clipasso-provenance">``.
    """
    points = strokes_to_array(strokes)
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"stroke width must be a positive number, got {width}")
    image_w, image_h = (int(v) for v in image_size)
    info = {"engine_version": __version__, **(metadata or {})}
    style = (
        f'fill="none" stroke={quoteattr(color)} stroke-width="{_fmt(width)}" '
        'stroke-linecap="round" stroke-linejoin="round"'
    )
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<!-- Generator: clipasso-engine {__version__} -->",
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{image_w}px" height="{image_h}px" '
        f'viewBox="0 0 {image_w} {image_h}">',
        f'  <metadata id="clipasso-provenance">{escape(_json(info))}</metadata>',
        '  <g id="clipasso-sketch">',
    ]
    for i, stroke in enumerate(points):
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = (tuple(_fmt(v) for v in p) for p in stroke)
        d = f"M {x0} {y0} C {x1} {y1} {x2} {y2} {x3} {y3}"
        lines.append(f'    <path id="clipasso-stroke-{i}" d="{d}" {style}/>')
    lines += ["  </g>", "</svg>", ""]
    return "\n".join(lines)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` so that readers see the old file or the whole new one.

    The bytes go to a temporary file in the same folder, are fsynced, then renamed over ``path``. On any failure
    (including Ctrl-C) the temporary file is removed and an existing ``path`` is left untouched; an ``OSError``
    becomes one ``OutputError`` sentence.
    """
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if os.path.isdir(target):
        raise OutputError(f"Cannot write {target}: it is a folder; give a file name.")
    if not os.path.isdir(folder):
        raise OutputError(f"Cannot write {target}: the folder {folder} does not exist; create it first.")
    temp_path: str | None = None
    try:
        fd, temp_path = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would, or the old file's mode.
        os.chmod(temp_path, _target_mode(target))
        os.replace(temp_path, target)
        temp_path = None
        _fsync_folder(folder)
    except OSError as exc:
        raise OutputError(f"Cannot write {target}: {_os_reason(exc)}.") from exc
    finally:
        if temp_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp_path)


def _target_mode(target: str) -> int:
    try:
        return os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        # The umask can only be read by setting it; this runs once per output file.
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable where the OS allows opening a folder (POSIX; not Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the data itself is already on disk
    finally:
        os.close(fd)


def _os_reason(exc: OSError) -> str:
    reasons = {
        errno.EACCES: "permission denied; choose a folder you can write to",
        errno.EPERM: "permission denied; choose a folder you can write to",
        errno.ENOSPC: "the disk is full; free some space",
        errno.EROFS: "the file system is read-only; choose another folder",
        errno.ENOENT: "the folder does not exist; create it first",
    }
    return reasons.get(exc.errno or -1, f"{exc.strerror or exc}; check the path and try again")


def _fmt(value: float) -> str:
    # Adding 0.0 turns a rounded -0.0 into 0.0, so tiny negatives do not print as "-0.000".
    return f"{round(float(value), DECIMALS) + 0.0:.{DECIMALS}f}"


def _json(info: Mapping[str, object]) -> str:
    # default=str keeps provenance writable when a caller passes e.g. a Path or a torch.device.
    return json.dumps(info, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


__all__ = [
    "DECIMALS",
    "strokes_to_array",
    "strokes_to_svg",
    "write_atomic",
]

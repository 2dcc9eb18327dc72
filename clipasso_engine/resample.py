"""Antialiased bicubic resize of an image centred in a white square, without building the square.

Same windows, kernel (a = -0.5) and normalisation as Pillow's ``Image.resize(..., BICUBIC)`` on the padded square.
The resize is linear and its weights sum to one, so ``resize(pad + D) = pad + resize(D)`` where ``D`` (the image's
deviation from the padding) is zero outside the image: only the image's own pixels are ever read, blockwise through
sparse matrices, which keeps a 1×80 000 strip or an 80-megapixel photo within a few hundred megabytes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

# The resampler holds about this many float32 values per chunk (64 MiB).
_CHUNK_VALUES = 1 << 24


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's bicubic kernel (a = -0.5)."""
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _taps(out_size: int, side: int, offset: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights, each (out_size, K), resizing a padded axis of ``side`` pixels to ``out_size``.

    Same windows and normalisation as Pillow's antialiased resampler (weights normalised over the padded
    square), with indices in the coordinates of the image, which covers ``[offset, offset + length)`` of the
    square. Taps that fall on padding get weight 0.
    """
    scale = side / out_size
    filter_scale = max(scale, 1.0)
    support = 2.0 * filter_scale
    centre = (np.arange(out_size) + 0.5) * scale
    first = np.maximum(np.floor(centre - support + 0.5), 0).astype(np.int64)
    stop = np.minimum(np.floor(centre + support + 0.5), side).astype(np.int64)
    pos = first[:, None] + np.arange(int((stop - first).max()))[None, :]
    weight = _bicubic((pos - centre[:, None] + 0.5) / filter_scale) * (pos < stop[:, None])
    weight /= weight.sum(axis=1, keepdims=True)
    index = pos - offset
    weight *= (index >= 0) & (index < length)
    return torch.from_numpy(index), torch.from_numpy(weight.astype(np.float32))


def _matrix(index: torch.Tensor, weight: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """The taps that read image lines ``[start, stop)`` as a sparse (out_size, stop - start) matrix."""
    keep = (weight != 0) & (index >= start) & (index < stop)
    rows = torch.arange(index.shape[0]).unsqueeze(1).expand_as(index)[keep]
    coords = torch.stack([rows, index[keep] - start])
    return torch.sparse_coo_tensor(coords, weight[keep], (index.shape[0], stop - start), check_invariants=True)


def _apply(matrix: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(n, m, c) -> (out, m, c) through a sparse (out, n) matrix (a few taps per row, so far less work than dense)."""
    n, m, c = values.shape
    return torch.sparse.mm(matrix, values.reshape(n, m * c)).reshape(-1, m, c)


def resize_padded(
    deviation: Callable[[slice, slice], np.ndarray], width: int, height: int, channels: int, canvas: int
) -> torch.Tensor:
    """Resize the (H, W, C) ``deviation`` image, centred in its zero-padded square, to (canvas, canvas, C).

    ``deviation(rows, cols)`` yields a float32 block on demand, so the full image is never held as floats. The
    long axis is reduced first, block by block (the resize is linear, so blocks just add up), which bounds the
    intermediate to canvas × short side.
    """
    side = max(width, height)
    x_taps = _taps(canvas, side, (side - width) // 2, width)
    y_taps = _taps(canvas, side, (side - height) // 2, height)
    tall = height >= width
    long_len, short_len = (height, width) if tall else (width, height)
    long_taps, short_taps = (y_taps, x_taps) if tall else (x_taps, y_taps)

    # Pass 1: reduce the long axis. Blocks are (long-axis piece) × (band of short-axis lines), about
    # _CHUNK_VALUES floats each; the result is laid out (canvas along long, short, C).
    band = max(1, _CHUNK_VALUES // (channels * long_len))
    piece = max(1, _CHUNK_VALUES // (channels * band))
    pieces = [(start, _matrix(*long_taps, start, min(start + piece, long_len))) for start in range(0, long_len, piece)]
    first = torch.zeros(canvas, short_len, channels)
    for line in range(0, short_len, band):
        lines = slice(line, line + band)
        for start, matrix in pieces:
            span = slice(start, start + piece)
            block = deviation(span, lines) if tall else deviation(lines, span).transpose(1, 0, 2)
            first[:, lines] += _apply(matrix, torch.from_numpy(np.ascontiguousarray(block)))

    # Pass 2: reduce the short axis: (short, canvas_long, C) -> (canvas_short, canvas_long, C), i.e. [y, x] when
    # the long axis is x, and [x, y] (transposed back) when it is y.
    second = _apply(_matrix(*short_taps, 0, short_len), first.transpose(0, 1).contiguous())
    return second.transpose(0, 1).contiguous() if tall else second


__all__ = ["resize_padded"]

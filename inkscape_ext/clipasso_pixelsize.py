"""The pixel size of an image file as the engine sees it (after the EXIF orientation), read from its header.

Shapes are sent in the engine's pixel frame, so the extension must know that frame before the engine starts, and
Inkscape's Python has no Pillow. The engine reads with Pillow and applies ``ImageOps.exif_transpose``: an
orientation of 5 to 8 swaps width and height. Read here: PNG (``eXIf``), JPEG (``APP1 Exif``), GIF, BMP, WebP
(``EXIF`` chunk) and TIFF. Standard library only.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Iterator

#: JPEG start-of-frame markers (C4, C8 and CC are not frames).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
#: Orientations that turn the picture by a quarter (the engine's width is the stored height).
_SWAPPED = {5, 6, 7, 8}


class UnknownSize(Exception):
    """The file's header could not be read: a format not handled here, or a damaged file."""


def pixel_size(path: str) -> tuple[int, int]:
    """(width, height) of the picture in ``path`` after its EXIF orientation, or ``UnknownSize``."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            f.seek(0)
            if head.startswith(b"\x89PNG\r\n\x1a\n"):
                size, orientation = _png(f)
            elif head.startswith(b"\xff\xd8"):
                size, orientation = _jpeg(f)
            elif head[:6] in (b"GIF87a", b"GIF89a"):
                size, orientation = struct.unpack("<HH", head[6:10]), 1
            elif head.startswith(b"BM"):
                size, orientation = _bmp(f), 1
            elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":
                size, orientation = _webp(f)
            elif head[:4] in (b"II*\x00", b"MM\x00*"):
                data = f.read(4 << 20)
                size, orientation = _tiff_size(data), _orientation(data)
            else:
                raise UnknownSize("not a PNG, JPEG, GIF, BMP, WebP or TIFF file")
    except (OSError, struct.error, IndexError, KeyError, ValueError) as err:
        raise UnknownSize(str(err) or type(err).__name__) from err
    width, height = int(size[0]), int(size[1])
    if width <= 0 or height <= 0:
        raise UnknownSize(f"the header gives a size of {width}×{height}")
    return (height, width) if orientation in _SWAPPED else (width, height)


def _chunks(f: BinaryIO, start: int, *, png: bool) -> Iterator[tuple[bytes, int]]:
    """(kind, length) of each chunk of a PNG (length first, big-endian, then a 4-byte CRC after the body) or a RIFF
    file (kind first, little-endian length, odd bodies padded to even) from ``start``. ``f`` is at the chunk's body,
    which the caller may read; whatever it leaves is skipped."""
    f.seek(start)
    while True:
        header = f.read(8)
        if len(header) < 8:
            return
        if png:
            length, kind = struct.unpack(">I4s", header)
            trailer = 4
        else:
            kind, length = struct.unpack("<4sI", header)
            trailer = length & 1
        body = f.tell()
        yield kind, length
        f.seek(body + length + trailer)


def _png(f: BinaryIO) -> tuple[tuple[int, int], int]:
    size = (0, 0)
    orientation = 1
    for kind, length in _chunks(f, 8, png=True):
        if kind == b"IHDR":
            size = struct.unpack(">II", f.read(8))
        elif kind == b"eXIf":  # Pillow reads it wherever it is, before or after the pixels
            orientation = _orientation(f.read(length))
        elif kind == b"IEND":
            break
    return size, orientation


def _jpeg(f: BinaryIO) -> tuple[tuple[int, int], int]:
    f.seek(2)
    orientation = 1
    while True:
        byte = f.read(1)
        if not byte:
            raise ValueError("no frame header")
        if byte != b"\xff":
            continue
        marker = f.read(1)[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            if marker == 0xFF:
                f.seek(-1, 1)  # fill bytes before a marker
            continue
        (length,) = struct.unpack(">H", f.read(2))
        if marker in _SOF:
            height, width = struct.unpack(">xHH", f.read(5))
            return (width, height), orientation
        body = f.read(length - 2)
        if marker == 0xE1 and body.startswith(b"Exif\x00\x00") and orientation == 1:
            orientation = _orientation(body[6:])


def _bmp(f: BinaryIO) -> tuple[int, int]:
    f.seek(14)
    (dib,) = struct.unpack("<I", f.read(4))
    if dib == 12:  # BITMAPCOREHEADER
        return struct.unpack("<HH", f.read(4))
    width, height = struct.unpack("<ii", f.read(8))
    return abs(width), abs(height)  # a negative height is a top-down bitmap


def _webp(f: BinaryIO) -> tuple[tuple[int, int], int]:
    size = (0, 0)
    orientation = 1
    for kind, length in _chunks(f, 12, png=False):
        body = f.read(length)
        if kind == b"VP8X":
            size = (int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1)
        elif kind == b"VP8 " and size == (0, 0):
            width, height = struct.unpack("<HH", body[6:10])
            size = (width & 0x3FFF, height & 0x3FFF)
        elif kind == b"VP8L" and size == (0, 0):
            bits = int.from_bytes(body[1:5], "little")
            size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif kind == b"EXIF":
            orientation = _orientation(body[6:] if body.startswith(b"Exif\x00\x00") else body)
    return size, orientation


def _ifd0(data: bytes) -> tuple[str, dict[int, int]]:
    """The byte order and the numeric tags of a TIFF structure's first directory (short or long values)."""
    order = {b"II": "<", b"MM": ">"}[data[:2]]
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    tags = {}
    for k in range(count):
        entry = data[offset + 2 + 12 * k : offset + 14 + 12 * k]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if kind == 3:  # SHORT
            tags[tag] = struct.unpack(order + "H", entry[8:10])[0]
        elif kind == 4:  # LONG
            tags[tag] = struct.unpack(order + "I", entry[8:12])[0]
    return order, tags


def _orientation(data: bytes) -> int:
    """The EXIF orientation (1 to 8) of a TIFF structure; 1 where it is missing or unreadable."""
    try:
        value = _ifd0(data)[1].get(0x0112, 1)
    except (KeyError, struct.error, IndexError):
        return 1
    return value if 1 <= value <= 8 else 1


def _tiff_size(data: bytes) -> tuple[int, int]:
    tags = _ifd0(data)[1]
    return tags[256], tags[257]

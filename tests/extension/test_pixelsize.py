"""The extension's header reader gives the engine's pixel size: Pillow's, after ``ImageOps.exif_transpose``."""

from __future__ import annotations

from pathlib import Path

import pytest
from clipasso_pixelsize import UnknownSize, pixel_size
from conftest import DATA
from PIL import Image, ImageOps

FORMATS = [("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("BMP", "bmp"), ("WEBP", "webp"), ("TIFF", "tif")]


def pillow_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).size


@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_size_after_orientation_matches_pillow(fmt: str, ext: str, orientation: int, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = [{}] if fmt in ("GIF", "BMP") else [{"exif": exif.tobytes()}]  # neither carries EXIF
    if fmt == "WEBP":
        options = [dict(options[0], lossless=lossless) for lossless in (False, True)]  # VP8X holds both kinds
    if fmt == "JPEG":
        options.append(dict(options[0], progressive=True))
    for k, extra in enumerate(options):
        path = tmp_path / f"{k}.{ext}"
        Image.new("RGB", (37, 23), (1, 2, 3)).save(path, fmt, **extra)
        assert pixel_size(str(path)) == pillow_size(path) == ((23, 37) if orientation >= 5 and extra else (37, 23))


def test_plain_webp_and_top_down_bmp(tmp_path: Path) -> None:
    lossy = tmp_path / "a.webp"
    Image.new("RGB", (301, 7)).save(lossy, "WEBP")  # no EXIF: a bare VP8 chunk
    assert pixel_size(str(lossy)) == (301, 7)
    bmp = tmp_path / "b.bmp"
    Image.new("RGB", (5, 9)).save(bmp, "BMP")
    data = bytearray(bmp.read_bytes())
    data[22:26] = (-9).to_bytes(4, "little", signed=True)  # a negative height: rows stored top-down
    bmp.write_bytes(bytes(data))
    assert pixel_size(str(bmp)) == (5, 9)


def test_the_committed_test_images() -> None:
    for path in sorted((DATA / "images").iterdir()):
        assert pixel_size(str(path)) == pillow_size(path), path.name


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00\x10JFIF", b"GIF89a\x00\x00\x00\x00"],
)
def test_unreadable_headers_are_unknown_size(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.img"
    path.write_bytes(content)
    with pytest.raises(UnknownSize):
        pixel_size(str(path))


def test_missing_file_is_unknown_size(tmp_path: Path) -> None:
    with pytest.raises(UnknownSize):
        pixel_size(str(tmp_path / "gone.png"))

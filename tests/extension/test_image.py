"""Reading the selected image: every ``data:`` format the engine reads, and every way of linking a file."""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path

import inkex
import pytest
from clipasso_image import image_file
from conftest import DATA

IMAGES = DATA / "images"
MIMES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp", "bmp": "image/bmp"}


def image_element(href: str, **attrs: str) -> inkex.Image:
    img = inkex.Image()
    img.set("id", "photo")
    img.set("xlink:href", href)
    for key, value in attrs.items():
        img.set(key, value)
    return img


@pytest.mark.parametrize("ext", sorted(MIMES))
def test_data_uri_every_format(ext: str, tmp_path: Path) -> None:
    raw = (IMAGES / f"photo.{ext}").read_bytes()
    # Inkscape wraps long base64 runs over lines; decoding must not care.
    encoded = base64.b64encode(raw).decode()
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    path = image_file(image_element(f"data:{MIMES[ext]};base64,{wrapped}"), str(tmp_path / "doc.svg"), str(tmp_path))
    assert Path(path).read_bytes() == raw


def test_data_uri_percent_encoded(tmp_path: Path) -> None:
    raw = (IMAGES / "photo.png").read_bytes()
    path = image_file(image_element("data:image/png," + urllib.parse.quote_from_bytes(raw)), "doc.svg", str(tmp_path))
    assert Path(path).read_bytes() == raw


def test_linked_relative_absolute_file_uri_and_absref(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = str(IMAGES / "photo.png")
    monkeypatch.delenv("DOCUMENT_PATH", raising=False)
    in_svg_dir = str(DATA / "svg" / "doc.svg")
    assert image_file(image_element("../images/photo.png"), in_svg_dir, str(tmp_path)) == target
    assert image_file(image_element(target), "/elsewhere/doc.svg", str(tmp_path)) == target
    assert image_file(image_element(Path(target).as_uri()), "/elsewhere/doc.svg", str(tmp_path)) == target
    # Inkscape's temp copy is elsewhere: the real document's folder (DOCUMENT_PATH) then sodipodi:absref help.
    monkeypatch.setenv("DOCUMENT_PATH", in_svg_dir)
    assert image_file(image_element("../images/photo.png"), "/tmp/ink_ext_X.svg", str(tmp_path)) == target
    monkeypatch.delenv("DOCUMENT_PATH")
    with_absref = image_element("moved/photo.png", **{"sodipodi:absref": target})
    assert image_file(with_absref, "/tmp/ink_ext_X.svg", str(tmp_path)) == target


@pytest.mark.parametrize(
    ("href", "message"),
    [
        ("", "has no link or embedded data"),
        ("https://example.org/photo.png", "not a local file"),
        ("gone.png", "is missing; relink or embed"),
        ("data:image/png;base64,", "is empty"),
    ],
)
def test_unreadable_links_name_the_fix(href: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(inkex.AbortExtension, match=message):
        image_file(image_element(href), str(tmp_path / "doc.svg"), str(tmp_path))

"""Input preparation: every format and mode, EXIF orientation, padding geometry, masks and every refusal."""

from __future__ import annotations

import errno
import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from skimage import data as skdata

from clipasso_engine import image_io, resample
from clipasso_engine.errors import InputImageError, MaskError
from clipasso_engine.image_io import PreparedImage, load_image, load_mask, prepare_image

# --- helpers ---------------------------------------------------------------------------------------------------


def _png(width: int, height: int, bit_depth: int, color_type: int, pixels: bytes | None) -> bytes:
    """A minimal PNG; ``pixels`` are the raw scanlines without filter bytes (None: an empty IDAT)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b""
    if pixels is not None:
        stride = len(pixels) // height
        raw = b"".join(b"\x00" + pixels[row * stride : (row + 1) * stride] for row in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _save(image: Image.Image, path: Path, fmt: str | None = None, **params: object) -> Path:
    image.save(path, fmt, **params)
    return path


def _one_sentence(message: str, path: Path) -> bool:
    """Names the file, and is a single line with a single full stop at its end."""
    rest = message.replace(str(path), "FILE")
    return rest.startswith("FILE ") and rest.endswith(".") and "\n" not in rest and ". " not in rest


def _reference(square: np.ndarray, canvas: int) -> np.ndarray:
    """Pillow's own float bicubic resize of an explicitly padded (C, side, side) square."""
    planes = [
        np.asarray(Image.fromarray(p.astype(np.float32), "F").resize((canvas, canvas), Image.BICUBIC)) for p in square
    ]
    return np.clip(np.stack(planes), 0.0, 1.0)


def _padded(rgb: np.ndarray, fill: float = 1.0) -> np.ndarray:
    """(H, W, C) in [0, 1] centred in a (C, side, side) square at ((side-W)//2, (side-H)//2)."""
    height, width = rgb.shape[:2]
    side = max(width, height)
    square = np.full((rgb.shape[2], side, side), fill, np.float64)
    oy, ox = (side - height) // 2, (side - width) // 2
    square[:, oy : oy + height, ox : ox + width] = rgb.transpose(2, 0, 1)
    return square


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return skdata.chelsea()  # (300, 451, 3) uint8: a real photo, wider than tall


# --- formats and modes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "suffix", "tolerance"),
    [
        ("PNG", "png", 0),
        ("BMP", "bmp", 0),
        ("TIFF", "tif", 0),
        ("JPEG", "jpg", 6),
        ("WEBP", "webp", 8),
        ("GIF", "gif", 12),
    ],
)
def test_every_format_reads_as_rgb(
    tmp_path: Path, chelsea: np.ndarray, fmt: str, suffix: str, tolerance: float
) -> None:
    path = _save(Image.fromarray(chelsea), tmp_path / f"cat.{suffix}", fmt)
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (451, 300)
    error = np.abs(np.asarray(image).astype(float) - chelsea).mean()
    assert error <= tolerance


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    red, blue = Image.new("RGB", (8, 6), (255, 0, 0)), Image.new("RGB", (8, 6), (0, 0, 255))
    path = tmp_path / "anim.gif"
    red.save(path, save_all=True, append_images=[blue], duration=100)
    assert Image.open(path).n_frames == 2
    assert np.asarray(load_image(path))[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("mode", ["L", "1", "P", "RGB", "CMYK", "YCbCr"])
def test_opaque_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    rgb = Image.new("RGB", (10, 7), (200, 30, 90)) if mode != "1" else Image.new("RGB", (10, 7), (255, 255, 255))
    source = rgb.convert(mode)
    fmt, suffix = ("JPEG", "jpg") if mode in ("CMYK", "YCbCr") else ("TIFF", "tif")
    image = load_image(_save(source, tmp_path / f"x.{suffix}", fmt, quality=95))
    assert image.mode == "RGB"
    expected = np.asarray(source.convert("RGB"))[3, 5].astype(int)
    assert np.abs(np.asarray(image)[3, 5].astype(int) - expected).max() <= 6


def test_cmyk_jpeg_keeps_its_colours(tmp_path: Path) -> None:
    # Adobe CMYK JPEGs store inverted ink values; reading back must give the original colour, not its negative.
    source = Image.new("RGB", (16, 16), (220, 40, 40)).convert("CMYK")
    image = load_image(_save(source, tmp_path / "cmyk.jpg", "JPEG", quality=95))
    r, g, b = np.asarray(image)[8, 8].astype(int)
    assert r > 180 and g < 90 and b < 90


def test_palette_transparency_becomes_alpha(tmp_path: Path) -> None:
    palette_image = Image.new("P", (6, 4), 0)
    palette_image.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    palette_image.paste(1, (2, 1, 4, 3))
    path = _save(palette_image, tmp_path / "pal.png", "PNG", transparency=0)
    image = load_image(path)
    assert image.mode == "RGBA"
    alpha = np.asarray(image)[..., 3]
    assert alpha[0, 0] == 0 and alpha[2, 3] == 255
    assert np.asarray(image)[2, 3, :3].tolist() == [200, 0, 0]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_alpha_modes_become_rgba(tmp_path: Path, mode: str) -> None:
    rgba = np.zeros((5, 9, 4), np.uint8)
    rgba[..., :3] = 120
    rgba[:, 4:, 3] = 255
    source = Image.fromarray(rgba, "RGBA").convert(mode)
    # No format we read stores PA, so that mode goes straight to the converter.
    image = image_io._to_rgb_or_rgba(source) if mode == "PA" else load_image(_save(source, tmp_path / "a.png"))
    assert image.mode == "RGBA"
    assert np.asarray(image)[:, :4, 3].max() == 0 and np.asarray(image)[:, 4:, 3].min() == 255


def test_opaque_rgba_becomes_rgb(tmp_path: Path) -> None:
    path = _save(Image.new("RGBA", (5, 5), (10, 20, 30, 255)), tmp_path / "opaque.png")
    assert load_image(path).mode == "RGB"


def test_rgb_with_transparent_colour_key_becomes_rgba(tmp_path: Path) -> None:
    source = Image.new("RGB", (4, 4), (0, 255, 0))
    source.putpixel((1, 1), (9, 9, 9))
    image = load_image(_save(source, tmp_path / "key.png", "PNG", transparency=(0, 255, 0)))
    assert image.mode == "RGBA"
    assert np.asarray(image)[0, 0, 3] == 0 and np.asarray(image)[1, 1, 3] == 255


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 64, 32896, 65535]], np.uint16)  # 0, 64, 128, 255 in 8 bits
    path = _save(Image.fromarray(values), tmp_path / "grey16.png")
    assert Image.open(path).mode.startswith("I")
    assert np.asarray(load_image(path))[0, :, 0].tolist() == [0, 64, 128, 255]


@pytest.mark.parametrize(("color_type", "channels"), [(2, 3), (6, 4)])
def test_sixteen_bit_colour_png(tmp_path: Path, color_type: int, channels: int) -> None:
    pixel = [0xC8FF, 0x1E00, 0x5A80, 0xFFFF][:channels]  # high bytes 200, 30, 90 (opaque)
    raw = struct.pack(">" + "H" * channels * 6, *(pixel * 6))
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png(3, 2, 16, color_type, raw))
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (3, 2)
    assert np.abs(np.asarray(image)[1, 2].astype(int) - [200, 30, 90]).max() <= 1


def test_float_tiff_is_taken_as_zero_to_one(tmp_path: Path) -> None:
    path = _save(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F"), tmp_path / "float.tif")
    assert np.asarray(load_image(path))[0, :, 0].tolist() == [0, 128, 255]


# --- EXIF orientation --------------------------------------------------------------------------------------------


def _oriented_jpeg(path: Path, orientation: int) -> Path:
    """A 40×20 stored image whose left quarter is black; the Orientation tag says how to display it."""
    stored = np.full((20, 40, 3), 255, np.uint8)
    stored[:, :10] = 0
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, "JPEG", exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize(
    ("orientation", "size", "dark_side"),
    [(1, (40, 20), "left"), (3, (40, 20), "right"), (6, (20, 40), "top"), (8, (20, 40), "bottom")],
)
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, size: tuple[int, int], dark_side: str) -> None:
    image = load_image(_oriented_jpeg(tmp_path / "o.jpg", orientation))
    assert image.size == size
    grey = np.asarray(image.convert("L")).astype(float)
    halves = {
        "left": (grey[:, : size[0] // 2], grey[:, size[0] // 2 :]),
        "right": (grey[:, size[0] // 2 :], grey[:, : size[0] // 2]),
        "top": (grey[: size[1] // 2], grey[size[1] // 2 :]),
        "bottom": (grey[size[1] // 2 :], grey[: size[1] // 2]),
    }[dark_side]
    assert halves[0].mean() < 150 < halves[1].mean()


def test_mask_must_match_the_oriented_size(tmp_path: Path) -> None:
    photo = _oriented_jpeg(tmp_path / "o.jpg", 6)  # stored 40×20, displayed 20×40
    good = _save(Image.new("L", (20, 40), 255), tmp_path / "good.png")
    bad = _save(Image.new("L", (40, 20), 255), tmp_path / "bad.png")
    assert prepare_image(photo, good, canvas=32).image_size == (20, 40)
    with pytest.raises(MaskError, match=r"bad\.png is 40×20 pixels but the image is 20×40"):
        prepare_image(photo, bad, canvas=32)


# --- geometry ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(1, 500), (500, 1), (451, 300), (37, 90), (1, 1), (224, 224), (3, 1000)])
def test_padding_and_resize_match_pillow_on_the_explicit_square(width: int, height: int) -> None:
    rng = np.random.default_rng(width * 1000 + height)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    prepared = prepare_image(Image.fromarray(rgb))
    assert prepared.image.shape == (3, 224, 224) and prepared.image.dtype == torch.float32
    assert prepared.mask is None
    assert prepared.image_size == (width, height)
    expected = _reference(_padded(rgb / 255.0), 224)
    assert np.abs(prepared.image.numpy() - expected).max() < 1e-5


@pytest.mark.parametrize(("width", "height"), [(37, 90), (90, 37)])
def test_blockwise_resize_matches_one_block(monkeypatch: pytest.MonkeyPatch, width: int, height: int) -> None:
    # Huge images are resized in blocks along both axes; tiny blocks here exercise that path on a small image.
    rgb = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    monkeypatch.setattr(resample, "_CHUNK_VALUES", 50)
    prepared = prepare_image(Image.fromarray(rgb), canvas=64)
    assert np.abs(prepared.image.numpy() - _reference(_padded(rgb / 255.0), 64)).max() < 1e-5


def test_extreme_strip_stays_centred_and_white_elsewhere() -> None:
    prepared = prepare_image(Image.new("RGB", (500, 1), (0, 0, 0)))
    column_means = prepared.image.mean(dim=(0, 2))  # per canvas row
    assert column_means[111:113].max() < 0.9  # the strip darkens the middle rows
    assert torch.all(column_means[:100] == 1.0) and torch.all(column_means[125:] == 1.0)


def test_tiny_image_fills_the_canvas() -> None:
    prepared = prepare_image(Image.new("RGB", (1, 1), (255, 0, 0)))
    assert torch.allclose(prepared.image[0], torch.ones(224, 224))
    assert prepared.image[1:].abs().max() < 1e-6
    assert prepared.scale == pytest.approx(1 / 224)


def test_huge_but_allowed_photo(tmp_path: Path) -> None:
    # A 12-megapixel JPEG made of tiled photos: read, resized exactly like Pillow on the padded square.
    tile = np.concatenate([skdata.coffee(), skdata.rocket()[:400, :600]], axis=1)  # (400, 1200, 3)
    big = np.tile(tile, (7, 3, 1))[:, :3500]  # (2800, 3500, 3)
    path = _save(Image.fromarray(big), tmp_path / "big.jpg", "JPEG", quality=90)
    prepared = prepare_image(path)
    assert prepared.image_size == (3500, 2800)
    decoded = np.asarray(Image.open(path).convert("RGB"))[..., :1] / 255.0  # one channel keeps the reference cheap
    expected = _reference(_padded(decoded), 224)[0]
    assert np.abs(prepared.image[0].numpy() - expected).max() < 1e-4


def test_mapping_round_trip_and_corners() -> None:
    prepared = PreparedImage(image=torch.zeros(3, 224, 224), mask=None, image_size=(300, 451))
    assert prepared.square_side == 451 and prepared.offset == (75, 0)
    assert prepared.scale == pytest.approx(451 / 224)
    corners = torch.tensor([[0.0, 0.0], [224.0, 224.0], [112.0, 112.0]], dtype=torch.float64)
    mapped = prepared.canvas_to_image(corners)
    assert mapped.dtype == torch.float64
    assert torch.allclose(mapped, torch.tensor([[-75.0, 0.0], [376.0, 451.0], [150.5, 225.5]], dtype=torch.float64))
    points = torch.rand(5, 4, 2, dtype=torch.float64) * 300 - 40
    assert torch.allclose(prepared.image_to_canvas(prepared.canvas_to_image(points)), points, atol=1e-12)


@pytest.mark.parametrize(("width", "height"), [(640, 200), (150, 700)])
def test_a_dot_maps_back_onto_itself(width: int, height: int) -> None:
    # The darkest canvas pixel, mapped back to the image, lands on the dot it came from.
    dot_x, dot_y = int(width * 0.7), int(height * 0.3)
    pixels = np.full((height, width, 3), 255, np.uint8)
    pixels[dot_y - 6 : dot_y + 6, dot_x - 6 : dot_x + 6] = 0
    prepared = prepare_image(Image.fromarray(pixels))
    darkness = 1.0 - prepared.image.double().mean(0)
    centres = torch.arange(224, dtype=torch.float64) + 0.5  # canvas pixel centres
    centroid = torch.stack([(darkness.sum(0) * centres).sum(), (darkness.sum(1) * centres).sum()]) / darkness.sum()
    back = prepared.canvas_to_image(centroid)
    # The dot covers pixels dot-6 .. dot+5, so its centre in continuous coordinates is exactly (dot_x, dot_y).
    assert torch.allclose(back, torch.tensor([dot_x, dot_y], dtype=torch.float64), atol=0.1 * prepared.scale)


# --- masks ---------------------------------------------------------------------------------------------------


def test_alpha_is_the_default_mask_and_composites_on_white(tmp_path: Path, chelsea: np.ndarray) -> None:
    rgba = np.dstack([chelsea, np.zeros(chelsea.shape[:2], np.uint8)])
    rgba[100:200, 150:300, 3] = 255  # only the cat's face is visible
    prepared = prepare_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "cut.png"))
    assert prepared.mask is not None and prepared.mask.shape == (224, 224)
    assert prepared.mask.min() >= 0 and prepared.mask.max() <= 1
    assert prepared.mask[5, 5] == 0 and prepared.mask[112, 112] == 1  # corner padding vs. the face
    assert torch.all(prepared.image[:, :30, :] == 1.0)  # transparent rows and the padding are white
    assert prepared.image[:, 112, 112].max() < 1.0


def test_user_mask_blanks_the_background(tmp_path: Path, chelsea: np.ndarray) -> None:
    mask = np.zeros(chelsea.shape[:2], np.uint8)
    mask[50:250, 100:350] = 255
    photo = _save(Image.fromarray(chelsea), tmp_path / "cat.png")
    prepared = prepare_image(photo, _save(Image.fromarray(mask), tmp_path / "mask.png"))
    assert prepared.mask is not None
    expected = _reference(_padded(mask[..., None] / 255.0, fill=0.0), 224)[0]
    assert np.abs(prepared.mask.numpy() - expected).max() < 1e-5
    outside = prepared.mask < 1e-6
    assert torch.all(prepared.image[:, outside] == 1.0)


def test_alpha_and_user_mask_combine(tmp_path: Path) -> None:
    # Left half opaque, top half in the mask: only the top-left quarter is object.
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:, :20, 3] = 255
    mask = np.zeros((40, 40), np.uint8)
    mask[:20] = 255
    photo = _save(Image.fromarray(rgba, "RGBA"), tmp_path / "half.png")
    prepared = prepare_image(photo, _save(Image.fromarray(mask), tmp_path / "top.png"), canvas=40)
    assert prepared.mask is not None
    assert prepared.mask[5, 5] == 1 and prepared.mask[5, 35] == 0 and prepared.mask[35, 5] == 0
    assert torch.all(prepared.image[:, 5, 5] == 0) and torch.all(prepared.image[:, 35, 5] == 1)
    bottom_right = np.zeros((40, 40), np.uint8)
    bottom_right[20:, 20:] = 255
    with pytest.raises(MaskError, match="selects only transparent pixels"):
        prepare_image(photo, _save(Image.fromarray(bottom_right), tmp_path / "br.png"))


@pytest.mark.parametrize("kind", ["L", "RGB", "RGBA", "1"])
def test_mask_files_of_every_kind(tmp_path: Path, kind: str) -> None:
    object_region = np.zeros((6, 8), bool)
    object_region[1:4, 2:7] = True
    if kind == "RGBA":  # the alpha says "object"; the colour is irrelevant
        pixels = np.zeros((6, 8, 4), np.uint8)
        pixels[..., 3] = object_region * 255
        source = Image.fromarray(pixels, "RGBA")
    else:
        source = Image.fromarray(object_region.astype(np.uint8) * 255).convert(kind)
    mask = load_mask(_save(source, tmp_path / "m.png"), (8, 6))
    assert mask.mode == "L"
    assert np.array_equal(np.asarray(mask) > 127, object_region)


def test_black_mask_and_transparent_image_are_refused(tmp_path: Path) -> None:
    photo = _save(Image.new("RGB", (8, 8), (0, 0, 0)), tmp_path / "p.png")
    black = _save(Image.new("L", (8, 8), 0), tmp_path / "black.png")
    with pytest.raises(MaskError, match=r"black\.png is entirely black"):
        prepare_image(photo, black)
    clear = _save(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), tmp_path / "clear.png")
    with pytest.raises(InputImageError, match=r"clear\.png is fully transparent"):
        prepare_image(clear)


# --- refusals --------------------------------------------------------------------------------------------------


def _truncated(tmp_path: Path, fmt: str) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(skdata.coffee()).save(buffer, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda tmp: tmp / "nope.png", r"nope\.png does not exist"),
        (lambda tmp: _write(tmp / "empty.png", b""), r"empty\.png is empty \(0 bytes\)"),
        (lambda tmp: _write(tmp / "notes.png", b"hello\n"), r"notes\.png is not an image"),
        (lambda tmp: _truncated(tmp, "PNG"), r"cut\.png is truncated"),
        (lambda tmp: _truncated(tmp, "JPEG"), r"cut\.jpeg is truncated"),
        (lambda tmp: _truncated(tmp, "WEBP"), r"cut\.webp is (truncated|damaged)"),
        (lambda tmp: tmp, r"is a folder"),
    ],
    ids=["missing", "empty", "not-an-image", "truncated-png", "truncated-jpeg", "truncated-webp", "folder"],
)
def test_bad_files_get_one_sentence(tmp_path: Path, make: Callable[[Path], Path], pattern: str) -> None:
    path = make(tmp_path)
    with pytest.raises(InputImageError, match=pattern) as caught:
        load_image(path)
    assert _one_sentence(str(caught.value), path)
    with pytest.raises(MaskError, match=pattern):  # the same problems in a mask are mask errors
        load_mask(path, (1, 1))


@pytest.mark.parametrize("pillow_limit", [Image.MAX_IMAGE_PIXELS, None])
def test_decompression_bomb_header_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pillow_limit: int | None
) -> None:
    # Pillow's own check (when enabled) fires first; with it switched off ours still refuses, naming the size.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    path = _write(tmp_path / "bomb.png", _png(100_000, 100_000, 8, 0, None))  # claims 10 gigapixels, holds nothing
    expected = r"bomb\.png .*decompression bombs" if pillow_limit else r"bomb\.png claims 100000×100000 pixels"
    with pytest.raises(InputImageError, match=expected) as caught:
        load_image(path)
    assert _one_sentence(str(caught.value), path)


def test_limit_is_inclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_io, "MAX_PIXELS", 100)
    assert load_image(_save(Image.new("L", (10, 10)), tmp_path / "ok.png")).size == (10, 10)
    with pytest.raises(InputImageError, match="decompression bombs"):
        load_image(_save(Image.new("L", (10, 11)), tmp_path / "big.png"))


@pytest.mark.parametrize("pillow_limit", [300, 100])  # 400 px: Pillow warns past 300, errors past 2×100
def test_pillows_own_bomb_check_becomes_our_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pillow_limit: int
) -> None:
    path = _save(Image.new("L", (20, 20)), tmp_path / "p.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    with pytest.raises(InputImageError, match=r"p\.png is larger than Pillow's .*decompression bombs"):
        load_image(path)


def test_other_formats_are_not_opened(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (4, 4)), tmp_path / "x.ppm", "PPM")  # a format Pillow reads but we do not
    with pytest.raises(InputImageError, match="is not an image that can be read"):
        load_image(path)


def test_broken_exif_is_a_damaged_file(tmp_path: Path) -> None:
    # Pillow raises SyntaxError ("not a TIFF file") when it parses a garbled EXIF block for the orientation.
    path = _save(Image.new("RGB", (8, 8)), tmp_path / "exif.png", "PNG", exif=b"Exif\x00\x00garbage!")
    with pytest.raises(
        InputImageError, match=r"exif\.png is damaged and cannot be decoded \(not a TIFF file"
    ) as caught:
        load_image(path)
    assert _one_sentence(str(caught.value), path)


@pytest.mark.parametrize(
    ("raised", "pattern"),
    [
        (OSError("decoder error -2 when reading image file"), "is damaged"),
        (SyntaxError("broken PNG file"), "is damaged"),
        (ValueError("invalid palette size"), "is damaged"),
        (struct.error("unpack requires a buffer of 4 bytes"), "is damaged"),
        (zlib.error("Error -3 while decompressing data"), "is damaged"),
        (EOFError(), "is truncated"),
        (OSError(errno.EIO, "Input/output error"), r"cannot be read \(Input/output error\); check the file"),
        (OSError("x" * 5000), "is damaged"),
    ],
    ids=["decoder", "syntax", "value", "struct", "zlib", "eof", "disk", "long"],
)
def test_what_pillow_raises_for_bad_data_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: BaseException, pattern: str
) -> None:
    path = _save(Image.new("RGB", (8, 8)), tmp_path / "p.png")

    def fail(self: object) -> None:
        raise raised

    monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    with pytest.raises(InputImageError, match=pattern) as caught:
        load_image(path)
    assert _one_sentence(str(caught.value), path) and len(str(caught.value)) < 400
    with pytest.raises(MaskError, match=pattern):
        load_mask(path, (8, 8))


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), AttributeError("no attribute"), KeyError("mode")])
@pytest.mark.parametrize("where", ["load", "exif_transpose"])
def test_a_programming_error_is_not_reported_as_a_damaged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bug: Exception, where: str
) -> None:
    # A bug must reach the formatter for unexpected errors with its traceback, not pose as the user's bad file.
    path = _save(Image.new("RGB", (8, 8)), tmp_path / "p.png")

    def fail(*args: object) -> None:
        raise bug

    if where == "load":
        monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    else:
        monkeypatch.setattr(image_io.ImageOps, "exif_transpose", fail)
    with pytest.raises(type(bug)) as caught:
        load_image(path)
    assert caught.value is bug
    with pytest.raises(type(bug)):
        load_mask(path, (8, 8))


def _mutations(good: bytes, count: int, rng: np.random.Generator) -> list[bytes]:
    """Cut short, a few random bytes changed, or four bytes of the header replaced."""
    out = []
    for trial in range(count):
        data = bytearray(good)
        if trial % 3 == 0:
            data = data[: int(rng.integers(1, len(data)))]
        elif trial % 3 == 1:
            for index in rng.integers(0, len(data), int(rng.integers(1, 9))):
                data[index] = int(rng.integers(0, 256))
        else:
            start = int(rng.integers(0, min(len(data), 400)))
            data[start : start + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        out.append(bytes(data))
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about each corrupt TIFF tag it skips
@pytest.mark.parametrize("fmt", image_io.FORMATS)
def test_mangled_files_only_ever_give_our_sentence(tmp_path: Path, fmt: str) -> None:
    # The catch list is exact types, not ``Exception``: mangled files of every format show it is complete.
    # (Measured once with 500 mutations per format and mode: OSError, SyntaxError, ValueError, bomb errors.)
    buffer = io.BytesIO()
    params: dict[str, object] = {"exif": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08"} if fmt in ("PNG", "WEBP") else {}
    Image.fromarray(skdata.coffee()[:40:2, :64:2]).save(buffer, fmt, **params)
    path = tmp_path / f"m.{fmt.lower()}"
    refused = 0
    for data in _mutations(buffer.getvalue(), 60, np.random.default_rng(5)):
        path.write_bytes(data)
        try:
            load_image(path)
        except InputImageError as exc:
            refused += 1
            assert _one_sentence(str(exc), path), str(exc)
    assert refused >= 10  # the mutations really damage files

"""Input preparation: read a photo (and an optional object mask) and turn it into the 224² CLIP canvas.

Every supported file (PNG, JPEG, WebP, GIF first frame, BMP, TIFF; grey, palette, RGBA, 16-bit, CMYK) is read
with Pillow, rotated by its EXIF orientation and normalised to 8-bit RGB or RGBA. ``prepare_image`` then
composites the object on white (through its alpha or a user mask), pads it to a white square with the image
centred at the integer offset ``((side - W) // 2, (side - H) // 2)``, and resizes the square to the canvas with
Pillow's antialiased bicubic filter (``resample.resize_padded``, which never materialises the padding, so a
1×80 000 strip or an 80-megapixel photo stays within a few hundred megabytes).

Canvas point ``(x, y)`` is image point ``(x·s − ox, y·s − oy)`` with ``s = side / canvas``; pixel centres sit at
half-integers in both frames, the same convention the resampler uses, so the mapping is exact.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import CANVAS
from .errors import ClipassoError, InputImageError, MaskError
from .resample import resize_padded

#: Largest image (width × height) we decode: Pillow's own default ``MAX_IMAGE_PIXELS`` (89 478 485 pixels, a
#: 256 MiB 24-bit image, e.g. 9459 × 9459). Anything larger is refused as a possible decompression bomb before
#: its pixel data is read.
MAX_PIXELS = 89_478_485

#: Pillow formats we open. A fixed list keeps Pillow from handing an arbitrary file to a rarely used decoder
#: (EPS even starts Ghostscript). Camera JPEGs that Pillow calls MPO come through its JPEG opener.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")

#: What Pillow raises for a damaged file (measured by fuzzing truncated and byte-flipped files of every format with
#: Pillow 13: OSError (decoders, "image file is truncated"), SyntaxError (a broken EXIF or TIFF header),
#: ValueError ("invalid palette size" in BMP); the rest from Pillow's pure-Python plugins). Anything else (a
#: TypeError, AttributeError, ...) is a bug and propagates to the one formatter for unexpected errors.
BAD_FILE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    struct.error,
    EOFError,
    zlib.error,
)


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read an image file as 8-bit ``RGB``, or ``RGBA`` when its alpha is not fully opaque.

    EXIF orientation is applied, only the first frame is kept, and the pixels are fully decoded here, so a
    truncated or damaged file fails now with an ``InputImageError`` rather than later.
    """
    return _to_rgb_or_rgba(_read(path, InputImageError, "image"))


def load_mask(path: str | os.PathLike[str], image_size: tuple[int, int]) -> Image.Image:
    """Read an object mask as mode ``L`` (white = object).

    A mask with a non-opaque alpha channel is its alpha; otherwise it is its luminance. Its size (after its own
    EXIF orientation) must equal ``image_size`` (W, H) of the oriented image, else ``MaskError``.
    """
    mask = _to_mask(_read(path, MaskError, "mask"))
    if mask.size != tuple(image_size):
        raise MaskError(
            f"{_name(path)} is {mask.width}×{mask.height} pixels but the image is {image_size[0]}×{image_size[1]}; "
            "make the mask exactly the image's size (after EXIF rotation)."
        )
    return mask


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """The CLIP-ready target and the geometry that maps canvas strokes back onto the photo.

    ``image``: (3, canvas, canvas) float32 in [0, 1], the object composited on white, padded, resized.
    ``mask``: (canvas, canvas) float32 in [0, 1], 1 = object, or None when the input had no mask.
    ``image_size``: (W, H) of the input after EXIF orientation. ``canvas``: side of the square canvas.
    """

    image: torch.Tensor
    mask: torch.Tensor | None
    image_size: tuple[int, int]
    canvas: int = CANVAS

    @property
    def square_side(self) -> int:
        """Side of the white square the image is centred in: max(W, H)."""
        return max(self.image_size)

    @property
    def scale(self) -> float:
        """Image pixels per canvas pixel."""
        return self.square_side / self.canvas

    @property
    def offset(self) -> tuple[int, int]:
        """(ox, oy): the image's top-left corner inside the padded square, in image pixels."""
        side = self.square_side
        return (side - self.image_size[0]) // 2, (side - self.image_size[1]) // 2

    def canvas_to_image(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 2) canvas (x, y) in pixels -> image pixels: (x·s − ox, y·s − oy). Keeps device and dtype."""
        return points * self.scale - self._offset_like(points)

    def image_to_canvas(self, points: torch.Tensor) -> torch.Tensor:
        """Inverse of ``canvas_to_image``."""
        return (points + self._offset_like(points)) / self.scale

    def _offset_like(self, points: torch.Tensor) -> torch.Tensor:
        dtype = points.dtype if points.is_floating_point() else torch.get_default_dtype()
        return torch.tensor(self.offset, dtype=dtype, device=points.device)


def prepare_image(
    image: str | os.PathLike[str] | Image.Image,
    mask: str | os.PathLike[str] | None = None,
    canvas: int = CANVAS,
    shape_mask: Callable[[tuple[int, int]], np.ndarray | None] | None = None,
) -> PreparedImage:
    """Read (or take) a photo and an optional mask file and build the ``PreparedImage`` for the optimiser.

    The object mask is the image's alpha (when not fully opaque) times the ``mask`` file, if any, times the
    ``shape_mask`` (called with the oriented image's (W, H); it returns an (H, W) uint8 plane, or None for "no
    mask": ``shape_mask.combined_mask``), so a raster mask and mask shapes intersect. A mask that selects nothing
    is an error, since the target would be a blank page.
    """
    name = image if not isinstance(image, Image.Image) else "The image"
    pil = load_image(image) if not isinstance(image, Image.Image) else _to_rgb_or_rgba(ImageOps.exif_transpose(image))
    width, height = pil.size
    rgba = np.asarray(pil.convert("RGBA"))
    alpha = rgba[..., 3] if pil.mode == "RGBA" else None
    if alpha is not None and not alpha.any():
        raise InputImageError(f"{_name(name)} is fully transparent; give an image with a visible object.")
    user_mask = None if mask is None else np.asarray(load_mask(mask, (width, height)))
    if user_mask is not None and not user_mask.any():
        raise MaskError(f"{_name(mask)} is entirely black, so it selects nothing; paint the object white.")
    drawn = None if shape_mask is None else shape_mask((width, height))
    if drawn is not None and user_mask is not None:
        user_mask = (user_mask.astype(np.uint16) * drawn // 255).astype(np.uint8)
        if not user_mask.any():
            raise MaskError(f"{_name(mask)} and the mask shapes have no pixel in common; make them overlap.")
    elif drawn is not None:
        user_mask, mask = drawn, "The area inside the mask shapes"
    if user_mask is not None and alpha is not None and not (user_mask.astype(np.uint16) * alpha).any():
        raise MaskError(f"{_name(mask)} selects only transparent pixels of the image; paint the object white.")
    masked = user_mask is not None or alpha is not None

    def deviation(rows: slice, cols: slice) -> np.ndarray:
        # Channels: R, G, B minus their white padding, then the object mask (its padding is 0). The object is
        # what is both opaque and inside the user's mask; everything else composites to white.
        rgb = rgba[rows, cols, :3].astype(np.float32) / 255.0
        weight = np.ones((*rgb.shape[:2], 1), np.float32)
        for plane in (alpha, user_mask):
            if plane is not None:
                weight *= plane[rows, cols, None] / np.float32(255.0)
        return np.concatenate([weight * (rgb - 1.0), weight], axis=-1) if masked else rgb - 1.0

    channels = 4 if masked else 3
    resized = resize_padded(deviation, width, height, channels, canvas)
    resized[..., :3] += 1.0  # add the white padding back
    resized.clamp_(0.0, 1.0)  # bicubic overshoots at sharp edges
    out_image = resized[..., :3].permute(2, 0, 1).contiguous()
    out_mask = resized[..., 3].contiguous() if masked else None
    return PreparedImage(image=out_image, mask=out_mask, image_size=(width, height), canvas=canvas)


# --- reading -------------------------------------------------------------------------------------------------


def _name(path: object) -> str:
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)


def _read(path: str | os.PathLike[str], error: type[ClipassoError], what: str) -> Image.Image:
    """Open, bomb-check, fully decode and EXIF-rotate the first frame; every failure is one ``error`` sentence."""
    name = _name(path)
    if os.path.isdir(path):
        raise error(f"{name} is a folder, not an {what} file; give the path of the {what} itself.")
    if not os.path.exists(path):
        raise error(f"{name} does not exist; check the {what} path.")
    if os.path.getsize(path) == 0:
        raise error(f"{name} is empty (0 bytes); give a valid {what} file.")
    try:
        # Pillow warns, then errors, past its own MAX_IMAGE_PIXELS; both must become our one-sentence error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as opened:
                _check_pixels(name, opened.size, error)
                opened.load()
                return ImageOps.exif_transpose(opened)
    except ClipassoError:
        raise  # our own sentence (e.g. the pixel limit), even where it is a ValueError too
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise error(
            f"{name} is larger than Pillow's {Image.MAX_IMAGE_PIXELS or 0:,}-pixel limit that guards against "
            "decompression bombs; scale it down first."
        ) from exc
    except UnidentifiedImageError as exc:
        raise error(f"{name} is not an image that can be read; save it as PNG, JPEG, WebP, GIF, BMP or TIFF.") from exc
    except PermissionError as exc:
        raise error(f"{name} cannot be read (permission denied); check the file's permissions.") from exc
    except MemoryError as exc:
        raise error(f"{name} is too large to decode in the available memory; scale it down first.") from exc
    except BAD_FILE_ERRORS as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the disk or network failed, not the image data
            raise error(f"{name} cannot be read ({exc.strerror or exc}); check the file and try again.") from exc
        detail = str(exc) or type(exc).__name__
        if "truncated" in detail.lower() or isinstance(exc, EOFError):
            raise error(
                f"{name} is truncated (the file ends before the image data does); re-export or re-download it."
            ) from exc
        raise error(
            f"{name} is damaged and cannot be decoded ({_short(detail)}); re-export or re-download it."
        ) from exc


def _short(detail: str) -> str:
    # One line, and short: Pillow's messages can quote raw header bytes.
    line = " ".join(detail.split())
    return line if len(line) <= 120 else line[:119] + "…"


def _check_pixels(name: str, size: tuple[int, int], error: type[ClipassoError]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise error(
            f"{name} claims {width}×{height} pixels, more than the {MAX_PIXELS:,}-pixel limit that guards against "
            "decompression bombs; scale it down first."
        )
    if width < 1 or height < 1:
        raise error(f"{name} has no pixels ({width}×{height}); give a non-empty image.")


def _high_bit_to_l(image: Image.Image) -> Image.Image:
    """16/32-bit integer and float grey to 8-bit ``L`` by scaling (Pillow's own convert clips instead)."""
    values = np.asarray(image).astype(np.float64)
    # I;16* is 0..65535; Pillow also gives 16-bit PNG/PGM data as mode I; float images are taken as 0..1.
    full_scale = 1.0 if image.mode == "F" else 65535.0
    return Image.fromarray(np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8), "L")


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    """8-bit RGB, or RGBA when there is an alpha channel (palette transparency included) that is not opaque."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _high_bit_to_l(image)
    has_alpha = image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if not has_alpha:
        # CMYK, YCbCr, LAB, HSV, RGBX, 1, L and opaque P all have a defined RGB conversion in Pillow.
        return image.convert("RGB")
    rgba = image.convert("RGBA")  # un-premultiplies La/RGBa, expands palette transparency
    opaque = bool(np.asarray(rgba.getchannel("A")).min() == 255)
    return rgba.convert("RGB") if opaque else rgba


def _to_mask(image: Image.Image) -> Image.Image:
    """A mask file as ``L``: its alpha when that is not fully opaque, else its luminance."""
    if image.mode.startswith("I") or image.mode == "F":
        return _high_bit_to_l(image)
    rgb_or_rgba = _to_rgb_or_rgba(image)
    if rgb_or_rgba.mode == "RGBA":
        return rgb_or_rgba.getchannel("A")
    return rgb_or_rgba.convert("L")


__all__ = [
    "FORMATS",
    "MAX_PIXELS",
    "PreparedImage",
    "load_image",
    "load_mask",
    "prepare_image",
]

"""Where a selected ``<image>``'s pixels come from, and where its pixel frame lies in the document.

Standard library and inkex only (this runs on Inkscape's own Python, which has neither Pillow nor torch).
"""

from __future__ import annotations

import base64
import os
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass

import inkex
from inkex.units import convert_unit, parse_unit

#: File suffix for each ``data:`` MIME type Pillow (the engine's reader) decodes; Pillow sniffs the real format.
_SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/x-ms-bmp": ".bmp",
    "image/tiff": ".tif",
}


def image_href(img: inkex.BaseElement) -> str:
    """The image's link: ``xlink:href`` (SVG 1.1) or plain ``href`` (SVG 2)."""
    return (img.get("xlink:href") or img.get("href") or "").strip()


def image_file(img: inkex.BaseElement, input_file: str, workdir: str) -> str:
    """A local file holding the image's pixels: a ``data:`` URI is decoded into ``workdir``, a link resolved.

    Raises ``inkex.AbortExtension`` with a one-sentence fix when there is nothing readable.
    """
    href = image_href(img)
    label = img.get_id()
    if not href:
        raise inkex.AbortExtension(f"The image '{label}' has no link or embedded data; embed or relink it.")
    if href.startswith("data:"):
        return _decode_data_uri(href, label, workdir)
    scheme = urllib.parse.urlsplit(href).scheme
    if scheme == "file":
        path = urllib.request.url2pathname(urllib.parse.urlsplit(href).path)
    elif len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise inkex.AbortExtension(
            f"The image '{label}' links to {href}, which is not a local file; download it and embed it first."
        )
    else:
        path = urllib.parse.unquote(href)
    candidates = [path] if os.path.isabs(path) else []
    if not os.path.isabs(path):
        # Inkscape rewrites relative links against the temporary copy it hands us, so try that folder first,
        # then the real document's folder (DOCUMENT_PATH), as Inkscape's own image_embed.py does.
        candidates.append(os.path.join(os.path.dirname(os.path.abspath(input_file)), path))
        document = os.environ.get("DOCUMENT_PATH")
        if document:
            candidates.append(os.path.join(os.path.dirname(document), path))
    absref = img.get("sodipodi:absref")
    if absref:
        candidates.append(absref)
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise inkex.AbortExtension(
        f"The linked image file {candidates[0]} of '{label}' is missing; relink or embed the image and try again."
    )


def _decode_data_uri(href: str, label: str, workdir: str) -> str:
    header, _, payload = href[5:].partition(",")
    parts = header.split(";")
    mime = parts[0].strip().lower()
    try:
        if "base64" in (p.strip().lower() for p in parts[1:]):
            text = "".join(payload.split())
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=False)  # padding may be missing
        else:
            data = urllib.parse.unquote_to_bytes(payload)
    except ValueError as err:
        raise inkex.AbortExtension(f"The embedded data of image '{label}' is damaged ({err}); re-embed it.") from err
    if not data:
        raise inkex.AbortExtension(f"The embedded data of image '{label}' is empty; re-embed the image.")
    # A fresh name, not the element id: ids may repeat across calls or hold characters Windows refuses.
    handle, path = tempfile.mkstemp(suffix=_SUFFIXES.get(mime, ".img"), dir=workdir)
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    return path


@dataclass(frozen=True)
class Placement:
    """How the engine's pixel frame maps into the image element's user space (before its own transform)."""

    #: pixel coordinates ([0, W] x [0, H]) -> the image element's user space
    pixels_to_user: inkex.Transform
    #: the image's viewport (x, y, width, height) in its user space
    viewport: tuple[float, float, float, float]
    #: True when ``slice`` lets the picture overflow its viewport, so the strokes need clipping to it
    clipped: bool
    #: user units per pixel, for stroke widths (geometric mean of the two scales for ``none``)
    scale: float


def placement(svg: inkex.SvgDocumentElement, img: inkex.BaseElement, image_size: tuple[int, int]) -> Placement:
    """Where the picture of ``image_size`` = (W, H) pixels is drawn, following SVG's image rules.

    ``x``/``y`` default to 0; a missing ``width``/``height`` is the intrinsic size (one user unit per pixel,
    keeping the aspect ratio when only one is given); ``preserveAspectRatio`` defaults to ``xMidYMid meet``.
    """
    pw, ph = float(image_size[0]), float(image_size[1])
    vb = svg.get_viewbox() if hasattr(svg, "get_viewbox") else None
    ref_w, ref_h = (vb[2], vb[3]) if vb and vb[2] and vb[3] else (pw, ph)
    x = _length(img.get("x"), ref_w, 0.0)
    y = _length(img.get("y"), ref_h, 0.0)
    w = _length(img.get("width"), ref_w, None)
    h = _length(img.get("height"), ref_h, None)
    if w is None and h is None:
        w, h = pw, ph
    elif w is None:
        w = h * pw / ph  # type: ignore[operator]
    elif h is None:
        h = w * ph / pw
    assert w is not None and h is not None
    tokens = (img.get("preserveAspectRatio") or "xMidYMid meet").split()
    if tokens and tokens[0] == "defer":
        tokens = tokens[1:]
    align = tokens[0] if tokens else "xMidYMid"
    slice_ = len(tokens) > 1 and tokens[1] == "slice"
    if align == "none":
        sx, sy = w / pw, h / ph
        return Placement(_scale_then_move(sx, sy, x, y), (x, y, w, h), False, (abs(sx * sy)) ** 0.5)
    fractions = {"Min": 0.0, "Mid": 0.5, "Max": 1.0}
    try:
        ax, ay = fractions[align[1:4]], fractions[align[5:8]]
    except KeyError:
        ax = ay = 0.5  # an invalid value falls back to the default alignment, as renderers do
    s = max(w / pw, h / ph) if slice_ else min(w / pw, h / ph)
    tx, ty = x + (w - pw * s) * ax, y + (h - ph * s) * ay
    overflow = slice_ and (pw * s > w + 1e-9 or ph * s > h + 1e-9)
    return Placement(_scale_then_move(s, s, tx, ty), (x, y, w, h), overflow, s)


def _scale_then_move(sx: float, sy: float, tx: float, ty: float) -> inkex.Transform:
    """The affine map p -> (sx·px + tx, sy·py + ty)."""
    return inkex.Transform(((sx, 0.0, tx), (0.0, sy, ty)))


def _length(value: str | None, reference: float, default: float | None) -> float | None:
    """A presentation length in user units: absolute units in CSS pixels, percentages of the viewBox."""
    if value is None or not value.strip() or value.strip() == "auto":
        return default
    number, unit = parse_unit(value.strip()) or (None, None)
    if number is None:
        return default
    if unit == "%":
        return number * reference / 100.0
    return float(convert_unit(value.strip(), "px"))

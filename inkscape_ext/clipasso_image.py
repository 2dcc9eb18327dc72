"""Where a selected ``<image>``'s pixels come from (where they lie in the document: ``clipasso_place``).

Standard library and inkex only (this runs on Inkscape's own Python, which has neither Pillow nor torch).
"""

from __future__ import annotations

import base64
import os
import tempfile
import urllib.parse
import urllib.request

import inkex

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

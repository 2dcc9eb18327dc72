"""Writes the test images and documents in this folder (run once; outputs are committed).

The engine replies in ``replies/`` are recorded from the real engine by ``../record_replies.py``.

``python tests/extension/data/make_data.py`` (needs Pillow).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).parent
W, H = 64, 48


def photo() -> Image.Image:
    img = Image.new("RGB", (W, H), (230, 220, 200))
    draw = ImageDraw.Draw(img)
    draw.ellipse((16, 8, 48, 40), fill=(40, 60, 120))
    draw.line((0, 47, 63, 0), fill=(200, 30, 30), width=3)
    return img


def encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    photo().save(buf, fmt)
    return buf.getvalue()


def svg(body: str, root: str = 'width="300" height="200" viewBox="0 0 300 200"') -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" {root}>\n{body}\n</svg>\n'
    )


def main() -> None:
    (HERE / "images").mkdir(exist_ok=True)
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp")):
        (HERE / "images" / f"photo.{ext}").write_bytes(encoded(fmt))
    png = "data:image/png;base64," + base64.b64encode(encoded("PNG")).decode()
    jpg = "data:image/jpeg;base64," + base64.b64encode(encoded("JPEG")).decode()
    layer = '<g id="layer1" inkscape:groupmode="layer" inkscape:label="Layer 1"{t}>{body}</g>'
    docs = {
        "plain": layer.format(
            t="", body=f'<image id="photo" x="10" y="20" width="128" height="96" xlink:href="{png}"/>'
        ),
        "rotated": layer.format(
            t=' transform="translate(50,20)"',
            body=f'<image id="photo" x="10" y="0" width="64" height="48" transform="rotate(30) scale(1.5)" '
            f'href="{jpg}"/>',
        ),
        "nested": layer.format(
            t=' transform="translate(5,5)"',
            body='<g id="sub" inkscape:groupmode="layer" transform="scale(2)"><g id="g1" transform="translate(3,4)">'
            f'<image id="photo" width="32" height="24" xlink:href="{png}"/></g></g>',
        ),
        "viewbox": svg(
            layer.format(t="", body=f'<image id="photo" x="1cm" y="5" width="64" height="48" xlink:href="{png}"/>'),
            'width="100mm" height="80mm" viewBox="0 0 100 80"',
        ),
        "slice": layer.format(
            t="",
            body=f'<image id="photo" x="10" y="10" width="100" height="100" preserveAspectRatio="xMaxYMid slice" '
            f'xlink:href="{png}"/>',
        ),
        "none": layer.format(
            t="",
            body=f'<image id="photo" x="10" y="10" width="100" height="30" preserveAspectRatio="none" '
            f'xlink:href="{png}"/>',
        ),
        "meet_align": layer.format(
            t="",
            body=f'<image id="photo" x="0" y="0" width="200" height="48" preserveAspectRatio="xMinYMax meet" '
            f'xlink:href="{png}"/>',
        ),
        "nosize": layer.format(t="", body=f'<image id="photo" x="5" y="6" xlink:href="{png}"/>'),
        "linked": layer.format(
            t="", body='<image id="photo" x="10" y="20" width="128" height="96" xlink:href="../images/photo.png"/>'
        ),
        "two": layer.format(
            t="",
            body=f'<image id="photo" x="10" y="20" width="128" height="96" xlink:href="{png}"/>'
            f'<image id="photo2" x="150" y="20" width="64" height="48" xlink:href="{jpg}"/>'
            '<rect id="rect1" x="0" y="150" width="20" height="20"/>',
        ),
        "missing": layer.format(
            t="", body='<image id="photo" x="10" y="20" width="128" height="96" xlink:href="gone/photo.png"/>'
        ),
    }
    for name, body in docs.items():
        text = body if body.startswith("<?xml") else svg(body)
        (HERE / "svg" / f"{name}.svg").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

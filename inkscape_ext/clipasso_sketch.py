#!/usr/bin/env python3
"""Extensions ▸ Images ▸ CLIPasso Sketch…: turn each selected raster image into editable ``<path>`` strokes.

The engine runs in its own Python (torch lives there, never in Inkscape's); this script only finds the images,
hands them to the engine, and places the strokes it returns exactly over each image, after it in the z-order.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
import warnings
from typing import Any

import inkex

# inkex turns warnings on, and any byte on stderr opens a dialog in Inkscape (and hangs --batch-process).
warnings.simplefilter("ignore")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from clipasso_client import Cancelled, EngineRun, engine_python, log_path, run_headless  # noqa: E402
from clipasso_image import Placement, image_file, placement  # noqa: E402
from clipasso_lifeline import remove_on_death, watch_parent  # noqa: E402

#: Stroke width default: the engine's own default, 3/224 of the padded square's side, as a percentage.
DEFAULT_WIDTH_PERCENT = 1.34
MENU = "Extensions ▸ Images ▸ CLIPasso Sketch…"


class Sketch(inkex.EffectExtension):
    """Sketch each selected ``<image>`` with the CLIPasso engine."""

    def add_arguments(self, pars: Any) -> None:
        pars.add_argument("--strokes", type=int, default=16, help="number of strokes")
        pars.add_argument("--preset", default="auto", choices=("auto", "fast", "paper"), help="engine preset")
        pars.add_argument("--iterations", type=int, default=0, help="optimisation steps (0: the preset's)")
        pars.add_argument("--seeds", type=int, default=0, help="independent runs (0: the preset's)")
        pars.add_argument("--seed", type=int, default=0, help="base random seed")
        pars.add_argument("--width", type=float, default=DEFAULT_WIDTH_PERCENT, help="stroke width, %% of longer side")
        pars.add_argument("--color", type=inkex.Color, default=inkex.Color("black"), help="stroke colour")
        pars.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="engine device")
        pars.add_argument("--keep_image", type=inkex.Boolean, default=True, help="keep the source image visible")
        pars.add_argument("--target", default="group", choices=("group", "layer"), help="where the strokes go")

    def effect(self) -> Any:
        watch_parent()  # Inkscape killed mid-run: end the engine and this script with it
        images = self.selected_images()
        python = engine_python()
        log = log_path()
        try:
            with tempfile.TemporaryDirectory(prefix="clipasso-") as workdir:
                remove_on_death(workdir)
                files = [image_file(img, self.options.input_file, workdir) for img in images]
                results = self.sketch_all(python, [img.get_id() for img in images], files, log)
            for img, result in zip(images, results):  # fewer results after "Stop and use current"
                self.insert(img, result)
        except Cancelled:
            return False  # unchanged document: Inkscape makes no undo step and shows nothing
        except inkex.AbortExtension:
            raise
        except Exception as err:  # a bug: one sentence for the user, the traceback in the log
            with open(log, "a", encoding="utf-8") as f:
                traceback.print_exc(file=f)
            raise inkex.AbortExtension(
                f"CLIPasso Sketch failed unexpectedly ({type(err).__name__}: {err}); details are in {log}."
            ) from err
        return True

    def selected_images(self) -> list[inkex.Image]:
        """The selected ``<image>`` elements, or an ``AbortExtension`` telling how to select them."""
        selected = list(self.svg.selection.values())
        if not selected:
            raise inkex.AbortExtension(
                f"No image is selected; click a raster image (Shift+click for more), then choose {MENU} again."
            )
        for element in selected:
            if not isinstance(element, inkex.Image):
                raise inkex.AbortExtension(
                    f"The selected object '{element.get_id()}' is not a raster image; select only images "
                    "(enter groups with Ctrl+click), then try again."
                )
        return selected

    def request(self, image: str) -> dict[str, Any]:
        """The engine request for one image; 0 for iterations/seeds keeps the preset's value."""
        opts = self.options
        settings: dict[str, Any] = {"preset": opts.preset, "strokes": opts.strokes, "seed": opts.seed}
        settings["device"] = opts.device
        if opts.iterations > 0:
            settings["iterations"] = opts.iterations
        if opts.seeds > 0:
            settings["seeds"] = opts.seeds
        settings["width_fraction"] = opts.width / 100.0  # of the longer side, which the engine knows
        return {"image": image, "mask": None, "settings": settings}

    def sketch_all(self, python: str, labels: list[str], files: list[str], log: str) -> list[dict[str, Any]]:
        """One engine run per image, under the progress window when one can be shown."""
        with open(log, "ab") as log_file:  # a fresh file per run (log_path)  # append mode: GTK's messages and the engine's share the file
            import clipasso_progress

            window = clipasso_progress.available(log)

            def start(index: int) -> EngineRun:
                request = self.request(files[index])
                request["preview_interval_s"] = 1.0 if window else 0.0
                return EngineRun(python, request, log_file)

            if window:
                return clipasso_progress.run_with_window(list(zip(labels, files)), start, self.options.color, log)
            return [run_headless(start(i)) for i in range(len(files))]

    def insert(self, img: inkex.Image, result: dict[str, Any]) -> None:
        """Put a group (or layer) of strokes right after ``img``, lying exactly over it."""
        width_px, height_px = (int(v) for v in result["image_size"])
        place = placement(self.svg, img, (width_px, height_px))
        group = inkex.Group()
        group_id = self.unique_id(f"clipasso-{img.get_id()}", len(result["strokes"]))
        group.set("id", group_id)
        group.set("inkscape:label", f"CLIPasso sketch of {img.get_id()} ({len(result['strokes'])} strokes)")
        self.stamp(group, result)
        if self.options.target == "layer":
            group.set("inkscape:groupmode", "layer")
            parent, index = self.layer_slot(img)
            parent.insert(index, group)
            inner = -parent.composed_transform() @ img.getparent().composed_transform() @ img.transform
            group.set("transform", str(inner))
        else:
            parent = img.getparent()
            parent.insert(parent.index(img) + 1, group)
            if img.get("transform"):
                group.set("transform", img.get("transform"))
        if place.clipped:
            group.set("clip-path", f"url(#{self.clip(group_id, place)})")
        style = self.stroke_style(place, float(result["width"]))
        for k, stroke in enumerate(result["strokes"]):
            (x0, y0), (x1, y1), (x2, y2), (x3, y3) = (place.pixels_to_user.apply_to_point(p) for p in stroke)
            path = inkex.PathElement()
            path.set("id", f"{group_id}-stroke-{k}")
            path.set("d", f"M {_n(x0)},{_n(y0)} C {_n(x1)},{_n(y1)} {_n(x2)},{_n(y2)} {_n(x3)},{_n(y3)}")
            path.set("style", style)
            group.append(path)
        if not self.options.keep_image:
            image_style = inkex.Style(img.get("style", ""))
            image_style["display"] = "none"
            img.set("style", str(image_style))

    def stroke_style(self, place: Placement, width_px: float) -> str:
        """The strokes' style; the width is the one the engine optimised (image px), in the group's units."""
        color = self.options.color
        width = width_px * place.scale
        return str(
            inkex.Style(
                {
                    "fill": "none",
                    "stroke": str(color.to_rgb()),
                    "stroke-opacity": _n(float(color.alpha)),
                    "stroke-width": _n(width),
                    "stroke-linecap": "round",
                    "stroke-linejoin": "round",
                }
            )
        )

    @staticmethod
    def stamp(group: inkex.Group, result: dict[str, Any]) -> None:
        """Provenance on the group: engine version, seed and the complete settings."""
        group.set("data-clipasso-version", str(result.get("engine_version", "")))
        group.set("data-clipasso-seed", str(result.get("seed", "")))
        group.set("data-clipasso-device", str(result.get("device", "")))
        group.set("data-clipasso-iterations", str(result.get("iterations_run", "")))
        if result.get("stopped_early"):
            group.set("data-clipasso-stopped-early", "true")
        group.set("data-clipasso-settings", json.dumps(result.get("settings", {}), sort_keys=True))

    def unique_id(self, base: str, strokes: int) -> str:
        """``base``, or ``base-2``, ``base-3``… : the first one free for the group and its strokes."""
        suffix = 1
        while True:
            candidate = base if suffix == 1 else f"{base}-{suffix}"
            ids = [candidate, *(f"{candidate}-stroke-{k}" for k in range(strokes))]
            if all(self.svg.getElementById(i) is None for i in ids):
                return candidate
            suffix += 1

    def layer_slot(self, img: inkex.Image) -> tuple[inkex.BaseElement, int]:
        """Where a new layer goes: just above the layer holding the image (or on top, outside any layer)."""
        node = img
        layer = None
        while node.getparent() is not None:
            node = node.getparent()
            if node.get("inkscape:groupmode") == "layer" and layer is None:
                layer = node
        if layer is None:
            return self.svg, len(self.svg)
        parent = layer.getparent()
        return parent, parent.index(layer) + 1

    def clip(self, group_id: str, place: Placement) -> str:
        """A clipPath of the image's viewport (for ``slice``), in the group's user space."""
        clip = inkex.ClipPath()
        clip_id = self.unique_id(f"{group_id}-clip", 0)
        clip.set("id", clip_id)
        clip.set("clipPathUnits", "userSpaceOnUse")
        x, y, w, h = place.viewport
        rect = inkex.Rectangle()
        rect.set("id", f"{clip_id}-rect")
        for key, value in (("x", x), ("y", y), ("width", w), ("height", h)):
            rect.set(key, _n(value))
        clip.append(rect)
        self.svg.defs.append(clip)
        return clip_id


def _n(value: float) -> str:
    """A number with at most 3 decimals and no trailing zeros (stable, readable output)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


if __name__ == "__main__":
    Sketch().run()

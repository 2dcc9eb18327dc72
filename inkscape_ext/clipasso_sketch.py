#!/usr/bin/env python3
"""Extensions ▸ Images ▸ CLIPasso Sketch…: turn each selected raster image into editable ``<path>`` strokes.

The engine runs in its own Python (torch lives there, never in Inkscape's); this script only finds the images,
hands them to the engine, and places the strokes it returns exactly over each image, after it in the z-order.
"""

from __future__ import annotations

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
from clipasso_image import image_file  # noqa: E402
from clipasso_lifeline import remove_on_death, watch_parent  # noqa: E402
from clipasso_place import insert_sketch  # noqa: E402

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
                opts = self.options
                insert_sketch(self.svg, img, result, color=opts.color, target=opts.target, keep_image=opts.keep_image)
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
        with open(log, "ab") as log_file:  # append mode: GTK's messages and the engine's share the file
            import clipasso_progress

            window = clipasso_progress.available(log)

            def start(index: int) -> EngineRun:
                request = self.request(files[index])
                request["preview_interval_s"] = 1.0 if window else 0.0
                return EngineRun(python, request, log_file)

            if window:
                return clipasso_progress.run_with_window(list(zip(labels, files)), start, self.options.color, log)
            return [run_headless(start(i)) for i in range(len(files))]


if __name__ == "__main__":
    Sketch().run()

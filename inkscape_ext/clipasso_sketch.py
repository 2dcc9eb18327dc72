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
from clipasso_refine import parse_ladder, read_sketch, refine_request, write_back  # noqa: E402
from clipasso_shapes import MODES, leaves, outside_sketches, shape_fields  # noqa: E402

#: Stroke width default: the engine's own default, 3/224 of the padded square's side, as a percentage.
DEFAULT_WIDTH_PERCENT = 1.34
MENU = "Extensions ▸ Images ▸ CLIPasso Sketch…"


class Sketch(inkex.EffectExtension):
    """Sketch each selected ``<image>`` with the CLIPasso engine, or refine a sketch it made."""

    ladder: tuple[int, ...] = ()  # the abstraction ladder asked for ((): none)
    refining: dict[str, Any] | None = None  # the refine request, in "Refine the selected sketch"

    def add_arguments(self, pars: Any) -> None:
        pars.add_argument("--mode", default="sketch", choices=("sketch", "refine"), help="sketch images or refine")
        pars.add_argument("--strokes", type=int, default=16, help="number of strokes")
        pars.add_argument("--ladder", default="", help="abstraction ladder: stroke counts such as 4,8,16")
        pars.add_argument("--add", type=int, default=0, help="refine: new strokes to add")
        pars.add_argument("--preset", default="auto", choices=("auto", "draft", "fast", "paper"), help="engine preset")
        pars.add_argument("--iterations", type=int, default=0, help="optimisation steps (0: the preset's)")
        pars.add_argument("--seeds", type=int, default=0, help="independent runs (0: the preset's)")
        pars.add_argument("--seed", type=int, default=0, help="base random seed")
        pars.add_argument("--width", type=float, default=DEFAULT_WIDTH_PERCENT, help="stroke width, %% of longer side")
        pars.add_argument("--color", type=inkex.Color, default=inkex.Color("black"), help="stroke colour")
        pars.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="engine device")
        pars.add_argument("--keep_image", type=inkex.Boolean, default=True, help="keep the source image visible")
        pars.add_argument("--target", default="group", choices=("group", "layer"), help="where the strokes go")
        pars.add_argument("--shapes", default="object", choices=MODES, help="what shapes selected with an image are")
        pars.add_argument("--detail_weight", type=float, default=4.0, help="how much likelier starts are in details")
        pars.add_argument("--use_clip", type=inkex.Boolean, default=True, help="an image's clip is its object mask")

    def effect(self) -> Any:
        watch_parent()  # Inkscape killed mid-run: end the engine and this script with it
        if self.options.mode == "refine":
            return self.refine()
        images = self.selected_images()
        self.ladder = parse_ladder(self.options.ladder)
        python = engine_python()
        log = log_path()
        try:
            with tempfile.TemporaryDirectory(prefix="clipasso-") as workdir:
                remove_on_death(workdir)
                files = [image_file(img, self.options.input_file, workdir) for img in images]
                opts = self.options
                fields = shape_fields(self.svg, images, files, self.shapes, mode=opts.shapes, use_clip=opts.use_clip,
                                      detail_weight=opts.detail_weight)  # fmt: skip
                self.shape_requests = dict(zip(files, fields))
                results = self.sketch_all(python, [img.get_id() for img in images], files, log)
            for img, result in zip(images, results):  # fewer results after "Stop and use current"
                opts = self.options
                insert_sketch(self.svg, img, result, color=opts.color, target=opts.target, keep_image=opts.keep_image)
        except Cancelled:
            return False  # unchanged document: Inkscape makes no undo step and shows nothing
        except inkex.AbortExtension:
            raise
        except Exception as err:  # a bug: one sentence for the user, the traceback in the log
            unexpected(err, log)
        return True

    def refine(self) -> Any:
        """Refine the selected sketch group in place: the strokes as the user left them, the locked ones kept."""
        selected = list(self.svg.selection.values())
        shapes = outside_sketches(selected)  # shapes selected with the sketch act as in sketch mode
        sketch = read_sketch(self.svg, [e for e in selected if all(e is not s for s in shapes)])
        python = engine_python()
        log = log_path()
        try:
            with tempfile.TemporaryDirectory(prefix="clipasso-") as workdir:
                remove_on_death(workdir)
                file = image_file(sketch.image, self.options.input_file, workdir)
                opts = self.options
                (fields,) = shape_fields(self.svg, [sketch.image], [file], shapes, mode=opts.shapes,
                                         use_clip=opts.use_clip, detail_weight=opts.detail_weight)  # fmt: skip
                self.shape_requests = {file: fields}
                self.refining = refine_request(sketch, self.request(file), self.options.add)
                results = self.sketch_all(python, [sketch.group.get_id()], [file], log)
            if not results:
                return False  # "Stop and use current" before the first strokes: nothing changes
            write_back(self.svg, sketch, results[0], color=self.options.color)
        except Cancelled:
            return False
        except inkex.AbortExtension:
            raise
        except Exception as err:
            unexpected(err, log)
        return True

    def selected_images(self) -> list[inkex.Image]:
        """The selected ``<image>`` elements, or an ``AbortExtension`` telling how to select them."""
        selected = list(self.svg.selection.values())
        if not selected:
            raise inkex.AbortExtension(
                f"No image is selected; click a raster image (Shift+click for more), then choose {MENU} again."
            )
        self.shapes = [element for element in selected if not isinstance(element, inkex.Image) and leaves(element)]
        for element in selected:
            if not isinstance(element, inkex.Image) and element not in self.shapes:
                raise inkex.AbortExtension(
                    f"The selected object '{element.get_id()}' is neither a raster image nor a closed shape; select "
                    "images and the shapes over them (enter groups with Ctrl+click), then try again."
                )
        images = [element for element in selected if isinstance(element, inkex.Image)]
        if not images:
            raise inkex.AbortExtension(
                f"Only shapes are selected; Shift+click the image they belong to as well, then choose {MENU} again."
            )
        return images

    def request(self, image: str) -> dict[str, Any]:
        """The engine request for one image; 0 for iterations/seeds keeps the preset's value."""
        if self.refining is not None:
            return dict(self.refining, image=image)
        opts = self.options
        settings: dict[str, Any] = {"preset": opts.preset, "strokes": opts.strokes, "seed": opts.seed}
        settings["device"] = opts.device
        if opts.iterations > 0:
            settings["iterations"] = opts.iterations
        if opts.seeds > 0:
            settings["seeds"] = opts.seeds
        settings["width_fraction"] = opts.width / 100.0  # of the longer side, which the engine knows
        if self.ladder:
            settings["ladder"] = list(self.ladder)
        shapes = dict(getattr(self, "shape_requests", {}).get(image, {}))  # mask_paths, detail_paths
        if "detail_weight" in shapes:
            settings["detail_weight"] = shapes.pop("detail_weight")
        return {"image": image, "mask": None, "settings": settings, **shapes}

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


def unexpected(err: Exception, log: str) -> None:
    """A bug: one sentence for the user, the traceback in the log."""
    with open(log, "a", encoding="utf-8") as f:
        traceback.print_exc(file=f)
    raise inkex.AbortExtension(
        f"CLIPasso Sketch failed unexpectedly ({type(err).__name__}: {err}); details are in {log}."
    ) from err


if __name__ == "__main__":
    Sketch().run()

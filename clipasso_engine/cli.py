"""The ``clipasso`` command: ``sketch``, ``serve``, ``models fetch`` and ``bench``.

Expected failures print one sentence to stderr and exit non-zero; nothing is written then. Anything unexpected is a
bug and goes through :func:`format_unexpected`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .cli_settings import add_setting_options, resolved_settings
from .config import AUTO_PRESET, PRESETS, SketchSettings
from .errors import (
    Cancelled,
    ClipassoError,
    InitStrokesError,
    InputImageError,
    MaskError,
    OutputConflictError,
    OutputError,
    ShapeMaskError,
    format_unexpected,
)
from .progress_bar import ProgressBar
from .version import __version__


def _check_output_path(path: str) -> None:
    """Refuse an output path that cannot be written before the run, not after minutes of work."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"The output {target} is a folder; give a file name such as {target / 'sketch.svg'}.")
    folder = target.absolute().parent
    if not folder.is_dir():
        raise OutputError(f"Cannot write {target}: the folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"Cannot write {target}: the folder {folder} is not writable.")


def _check_paths(args: argparse.Namespace) -> None:
    """Missing inputs and outputs that would overwrite a file the user owns fail in a second, before torch loads."""
    from .files import same_file

    init = getattr(args, "init", None)
    inputs = (
        (args.input, "image", InputImageError),
        (args.mask, "mask", MaskError),
        (init, "--init SVG", InitStrokesError),
    )
    for path, what, error in inputs:
        if path == "":  # Path("") is the current folder
            raise error(f"The {what} path is empty; give the file's path.")
        if path is not None and not Path(path).is_file():
            problem = "is a folder" if Path(path).is_dir() else "does not exist"
            raise error(f"The {what} {path} {problem}; check the path.")
    outputs = [("output", args.output), ("JSON output", args.json)]
    shape_files = [("--mask-svg", getattr(args, "mask_svg", None)), ("--detail-svg", getattr(args, "detail_svg", None))]
    for what, path in shape_files:
        if path == "":  # an empty value would otherwise read as "no shapes" and be ignored
            raise ShapeMaskError(f"The {what} path is empty; give the SVG file's path.")
    protected = [("input image", args.input), ("mask", args.mask), ("--init SVG", init), *shape_files, *outputs]
    for name, path in outputs:
        if path is None:
            continue
        if path == "":
            raise OutputError(f"The {name} path is empty; give a file name.")
        _check_output_path(path)
        for other_name, other in protected:
            if other and other_name != name and same_file(path, other):
                raise OutputConflictError(
                    f"The {name} {path} is the same file as the {other_name} {other}; writing it would destroy "
                    f"that file, so choose another {name} name."
                )


def cmd_sketch(args: argparse.Namespace) -> int:
    _check_paths(args)
    from .refine import describe, plan_from_options

    # The --init file is read and --lock/--add checked here, before torch loads.
    refine = plan_from_options(args.init, args.lock, args.add, args.strokes, args.seeds)
    from .shape_mask import check_paths
    from .shape_svg import read_shapes_svg

    # The shape files are read and their path data parsed here too, before torch loads.
    mask_shapes = read_shapes_svg(args.mask_svg) if args.mask_svg else []
    detail_shapes = read_shapes_svg(args.detail_svg) if args.detail_svg else []
    check_paths(mask_shapes, "mask")
    check_paths(detail_shapes, "detail")
    settings = resolved_settings(args)
    if refine is not None:
        settings = refine.settings(settings)  # the --init file's ladder reaches sketch() this way
    from .api import sketch
    from .files import json_text, write_atomic

    bar = ProgressBar(sys.stderr) if not args.quiet and sys.stderr.isatty() else None
    chosen = _preset_words(args, settings)
    if bar:
        bar.status("preset", f"Preset {chosen}.")
    try:
        result = sketch(
            args.input,
            settings,
            mask=args.mask,
            on_progress=bar.update if bar else None,
            on_status=bar.status if bar else None,
            on_setup=bar.setup if bar else None,
            use_env=False,  # settings_from_args already put explicit options over the environment
            keep_models=False,  # one sketch per process: free the saliency model once the strokes are placed
            init_strokes=refine.strokes if refine else None,
            locked=refine.locked if refine else None,
            add=refine.add if refine else 0,
            mask_paths=mask_shapes,
            detail_paths=detail_shapes,
        )
    except KeyboardInterrupt:
        raise Cancelled("interrupted; nothing was written.") from None
    finally:
        if bar:
            bar.finish()
    # The SVG first: if the JSON then fails, the user still has the sketch they asked for.
    write_atomic(args.output, result.to_svg())
    if args.json:
        write_atomic(args.json, json_text(result.to_dict()))
    if not args.quiet:
        print(
            f"Wrote {len(result.strokes)} strokes to {args.output} (preset {chosen}, best loss {result.loss:.4f}, "
            f"seed {result.seed}, "
            f"run {result.winning_run + 1} of {result.settings.seeds}, {result.iterations_run} iterations, "
            f"{result.timings.get('total_s', 0.0):.1f} s on {result.device}"
            f"{'; ' + describe(refine) if refine else ''}).",
            file=sys.stderr,
        )
    return 0


def _preset_words(args: argparse.Namespace, settings: SketchSettings) -> str:
    """The preset a run uses, and why when ``auto`` chose it."""
    if args.preset != AUTO_PRESET:
        return settings.preset
    return f"{settings.preset} (auto: {'a GPU' if settings.preset == 'paper' else 'no GPU'})"


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve_stdio

    return serve_stdio()


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from .fetch import fetch_models

    settings = resolved_settings(args)
    for path in fetch_models(settings):
        print(path)
    return 0


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from .config import DEFAULT_LADDER

    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets (default: all)")
    parser.add_argument("--strokes", type=int, default=16, help="strokes per sketch (default 16)")
    parser.add_argument("--measure", type=int, default=0, help="iterations timed per preset (default: 3 CPU, 50 GPU)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each breakdown timing (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument(
        "--ladder",
        nargs="?",
        const=DEFAULT_LADDER,
        metavar="LEVELS",
        help="also time each preset with this abstraction ladder beside its plain run (alone: 4,8,16,32 up to "
        "--strokes)",
    )
    parser.add_argument(
        "--precisions", default="", help="comma-separated fp32, bf16, fp16 timed side by side (default: fp32 + auto's)"
    )
    parser.add_argument(
        "--real-run",
        nargs="?",
        const="fast",
        default="",
        metavar="PRESETS",
        help="also time the real `clipasso sketch --early-stop 0` end to end for these presets (default fast)",
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench_command import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipasso", description="Turn a photo of an object into an abstract line sketch (CLIPasso)."
    )
    parser.add_argument("--version", action="version", version=f"clipasso-engine {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sketch = commands.add_parser("sketch", help="sketch an image into an SVG")
    sketch.add_argument("input", help="the image: PNG, JPEG, WebP, GIF, BMP or TIFF")
    sketch.add_argument("-o", "--output", required=True, help="the SVG file to write")
    sketch.add_argument("--mask", help="object mask image of the same size (white = object)")
    sketch.add_argument(
        "--mask-svg", metavar="SVG", help="object mask drawn as shapes in an SVG in image pixels (with --mask: both)"
    )
    sketch.add_argument("--detail-svg", metavar="SVG", help="shapes where more strokes start (see --detail-weight)")
    sketch.add_argument("--json", help="also write strokes and run facts as JSON to this file")
    sketch.add_argument(
        "--init", metavar="SVG", help="refine: start one run from this SVG's strokes (image px, as sketch writes them)"
    )
    sketch.add_argument(
        "--lock", metavar="I,J", help="with --init: strokes (from 0, in the file's order) kept exactly as they are"
    )
    sketch.add_argument(
        "--add", type=int, metavar="K", help="with --init: add K strokes where the sketch leaves the image uncovered"
    )
    sketch.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    sketch.add_argument("-v", "--verbose", action="store_true", help="also print the details behind an error")
    add_setting_options(sketch)
    sketch.set_defaults(run=cmd_sketch)

    serve = commands.add_parser("serve", help="the JSON-lines protocol for the Inkscape extension (docs/protocol.md)")
    serve.add_argument("--stdio", action="store_true", required=True, help="talk over stdin/stdout")
    serve.set_defaults(run=cmd_serve)

    models = commands.add_parser("models", help="manage model weights")
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    fetch = model_commands.add_parser("fetch", help="download the models the settings need into the cache")
    fetch.add_argument("-v", "--verbose", action="store_true", help="also print the details behind an error")
    add_setting_options(fetch)
    fetch.set_defaults(run=cmd_models_fetch)

    bench = commands.add_parser("bench", help="time each preset against the loss network's floor")
    _add_bench_arguments(bench)
    bench.set_defaults(run=cmd_bench)
    return parser


def show_engine_log(stream: TextIO) -> None:
    """Send the engine's log (logger ``clipasso_engine``, INFO and up) to ``stream``."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("clipasso: %(levelname)s: %(message)s"))
    logger = logging.getLogger("clipasso_engine")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM: unwind like Ctrl-C, so that temporary files are removed and nothing half-written remains."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        # Errors are one sentence; what lies behind one (torch's own text, a download's reason) is logged at INFO.
        show_engine_log(sys.stderr)
    if args.command == "sketch":
        signal.signal(signal.SIGTERM, _terminate)
    try:
        status: Any = args.run(args)
        return int(status)
    except ClipassoError as exc:
        print(f"clipasso: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("clipasso: interrupted.", file=sys.stderr)
        return 130
    except Exception as exc:
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(f"clipasso: {format_unexpected(exc, __version__)}", file=sys.stderr)
        return 70

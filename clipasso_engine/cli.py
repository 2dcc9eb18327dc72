"""The ``clipasso`` command: ``sketch``, ``serve``, ``models fetch`` and ``bench``.

Expected failures print one sentence to stderr and exit non-zero; nothing is written then. Anything unexpected is a
bug and goes through :func:`format_unexpected`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .config import AUTO_PRESET, PRESET_CHOICES, PRESETS, SketchSettings, choose_preset, preset_settings
from .errors import (
    Cancelled,
    ClipassoError,
    InputImageError,
    MaskError,
    OutputConflictError,
    OutputError,
    format_unexpected,
)
from .version import __version__

if TYPE_CHECKING:  # importing torch costs seconds; `clipasso --help` and `--version` should not pay it
    from .optimize import Progress

#: CLI option -> SketchSettings field, for the options that map one to one.
_SETTING_OPTIONS = {
    "strokes": "strokes",
    "iterations": "iterations",
    "seeds": "seeds",
    "seed": "seed",
    "width": "width",
    "device": "device",
    "precision": "precision",
    "saliency": "saliency",
    "loss_model": "loss_model",
    "loss_weights": "loss_weights",
    "saliency_model": "saliency_model",
    "saliency_weights": "saliency_weights",
    "model_config": "model_config",
    "augmentations": "augmentations",
    "early_stop": "early_stop_delta",
}


def _add_setting_options(parser: argparse.ArgumentParser) -> None:
    defaults = SketchSettings()
    group = parser.add_argument_group("sketch settings (defaults: the chosen preset's)")
    group.add_argument(
        "--preset",
        choices=PRESET_CHOICES,
        default=AUTO_PRESET,
        help="named settings; auto (default): paper on a GPU, fast on a CPU, where paper takes hours",
    )
    group.add_argument(
        "--strokes", type=int, help=f"number of strokes, the abstraction level (default {defaults.strokes})"
    )
    group.add_argument("--iterations", type=int, help=f"optimisation steps (paper: {defaults.iterations})")
    group.add_argument("--seeds", type=int, help=f"independent runs, the best is kept (paper: {defaults.seeds})")
    group.add_argument("--seed", type=int, help="base seed: same input, settings and seed give the same strokes")
    group.add_argument("--width", type=float, help="stroke width in output pixels (default: 3/224 of the longer side)")
    group.add_argument("--augmentations", type=int, help="augmented pairs per iteration (paper: 4)")
    group.add_argument(
        "--early-stop",
        type=float,
        metavar="DELTA",
        help="stop at the second evaluation within DELTA of the best with no new best between (default 1e-5; 0: never)",
    )
    group.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="loss-network precision")
    group.add_argument("--saliency", choices=["clip", "dino"], help="saliency backend (default: clip)")
    models = parser.add_argument_group("models (also from CLIPASSO_* environment variables)")
    models.add_argument("--loss-model", help="open_clip ResNet architecture (default RN101)")
    models.add_argument("--loss-weights", help="pretrained tag (default openai) or a local checkpoint file")
    models.add_argument("--saliency-model", help="open_clip ViT architecture (default ViT-B-32-quickgelu)")
    models.add_argument("--saliency-weights", help="pretrained tag (default openai) or a local checkpoint file")
    models.add_argument("--model-config", help="extra open_clip model config: a JSON file or a folder of them")


def settings_from_args(
    args: argparse.Namespace, device_type: str = "cpu", *, environment: bool = True
) -> SketchSettings:
    """The preset (``auto`` chosen for ``device_type``), then the environment, then explicit options on top.

    ``environment=False`` skips the ``CLIPASSO_*`` overlay, which needs the heavy imports: the CLI validates the
    options that way first, so that a typo fails at once rather than after torch has loaded.
    """
    settings = preset_settings(choose_preset(args.preset, device_type))
    if environment:
        from .environment import settings_from_env

        settings = settings_from_env(settings)
    explicit = {field: getattr(args, option) for option, field in _SETTING_OPTIONS.items()}
    return settings.replace(**{k: v for k, v in explicit.items() if v is not None})


def resolved_settings(args: argparse.Namespace) -> SketchSettings:
    """The settings a run uses: validated cheaply first, then ``auto`` resolved on the device the run will use."""
    cheap = settings_from_args(args, environment=False)
    if args.preset != AUTO_PRESET:
        return settings_from_args(args)
    from .environment import resolve_device

    return settings_from_args(args, resolve_device(cheap.device).type)


class ProgressBar:
    """A one-line terminal progress bar: iteration, loss, elapsed time and ETA."""

    def __init__(self, stream: TextIO, width: int = 28) -> None:
        self.stream = stream
        self.width = width
        self.active = False

    @staticmethod
    def _clock(seconds: float) -> str:
        total = max(0, round(seconds))
        hours, rest = divmod(total, 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"

    def update(self, progress: Progress) -> None:
        done = progress.iteration / max(progress.iterations, 1)
        # "loss" is this iteration's training loss (it jitters with the augmentations); "best" is the lowest
        # evaluation loss so far, the one the summary reports and whose strokes are kept.
        text = (
            f" {progress.iteration}/{progress.iterations}  loss now {progress.loss:.4f}  best {progress.best_loss:.4f}"
            f"  elapsed {self._clock(progress.elapsed_s)}  ETA {self._clock(progress.eta_s)} "
        )
        # A line longer than the terminal wraps, and "\r" then redraws only its last part: shrink the bar instead.
        columns = shutil.get_terminal_size().columns
        width = max(0, min(self.width, columns - 1 - len(text)))
        filled = int(done * width)
        self.stream.write(("\r" + "█" * filled + "·" * (width - filled) + text)[: max(columns, 2)])
        self.stream.flush()
        self.active = True

    def setup(self, done: int, total: int) -> None:
        """The set-up passes before the first iteration, redrawn in place like the bar."""
        self.stream.write(f"\r Preparing the targets: {done}/{total} ")
        self.stream.flush()
        self.active = True

    def status(self, stage: str, message: str) -> None:
        self.finish()
        self.stream.write(message + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.active:
            self.stream.write("\n")
            self.stream.flush()
            self.active = False


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

    for path, what, error in ((args.input, "image", InputImageError), (args.mask, "mask", MaskError)):
        if path is not None and not Path(path).is_file():
            problem = "is a folder" if Path(path).is_dir() else "does not exist"
            raise error(f"The {what} {path} {problem}; check the path.")
    outputs = [("output", args.output), ("JSON output", args.json)]
    protected = [("input image", args.input), ("mask", args.mask), *outputs]
    for name, path in outputs:
        if not path:
            continue
        _check_output_path(path)
        for other_name, other in protected:
            if other and other_name != name and same_file(path, other):
                raise OutputConflictError(
                    f"The {name} {path} is the same file as the {other_name} {other}; writing it would destroy "
                    f"that file, so choose another {name} name."
                )


def cmd_sketch(args: argparse.Namespace) -> int:
    _check_paths(args)
    settings = resolved_settings(args)
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
            f"{result.timings.get('total_s', 0.0):.1f} s on {result.device}).",
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
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets (default: all)")
    parser.add_argument("--strokes", type=int, default=16, help="strokes per sketch (default 16)")
    parser.add_argument("--measure", type=int, default=0, help="iterations timed per preset (default: 3 CPU, 50 GPU)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each breakdown timing (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
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
    sketch.add_argument("--json", help="also write strokes and run facts as JSON to this file")
    sketch.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    _add_setting_options(sketch)
    sketch.set_defaults(run=cmd_sketch)

    serve = commands.add_parser("serve", help="the JSON-lines protocol for the Inkscape extension (docs/protocol.md)")
    serve.add_argument("--stdio", action="store_true", required=True, help="talk over stdin/stdout")
    serve.set_defaults(run=cmd_serve)

    models = commands.add_parser("models", help="manage model weights")
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    fetch = model_commands.add_parser("fetch", help="download the models the settings need into the cache")
    _add_setting_options(fetch)
    fetch.set_defaults(run=cmd_models_fetch)

    bench = commands.add_parser("bench", help="time each preset against the loss network's floor")
    _add_bench_arguments(bench)
    bench.set_defaults(run=cmd_bench)
    return parser


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM: unwind like Ctrl-C, so that temporary files are removed and nothing half-written remains."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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

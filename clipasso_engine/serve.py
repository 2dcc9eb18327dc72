"""``clipasso serve --stdio``: the versioned JSON-lines protocol of docs/protocol.md.

One request in, progress/preview lines out, exactly one ``result`` or ``error``. A reader thread watches stdin for
``stop``/``cancel`` and for end of file: a parent that closed the pipe or died gets the engine to cancel within one
iteration and exit, and a watchdog ends the process even if it is stuck in a step that cannot be interrupted (such
as loading a model), so a dead parent never leaves an engine behind.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from .config import SketchSettings
from .errors import BadRequest, ClipassoError, SettingsError, format_unexpected, shorten
from .version import __version__

if TYPE_CHECKING:
    from .api import SketchProgress, SketchResult
    from .optimize import RunControl
    from .refine import RefinePlan

PROTOCOL_VERSION = 1
#: Seconds a cancelled run may take to wind down before the watchdog ends the process.
EXIT_GRACE_S = 3.0


class _Writer:
    """Serialises message lines from the worker and reader threads onto one stream."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, kind: str, **fields: Any) -> None:
        if kind == "error":
            fields["message"] = shorten(str(fields.get("message", "")))
        line = _json_line({"protocol": PROTOCOL_VERSION, "type": kind, **fields})
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass  # the reader is gone; the stdin watcher ends the run


def _json_line(message: dict[str, Any]) -> str:
    """Standard JSON (never the literals NaN or Infinity): a non-finite number anywhere becomes null."""
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite_or_null(message), separators=(",", ":"), allow_nan=False)


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def _exit_soon(status: int) -> None:
    """End the process after a grace period, whatever the main thread is doing."""

    def watchdog() -> None:
        time.sleep(EXIT_GRACE_S)
        os._exit(status)

    threading.Thread(target=watchdog, daemon=True).start()


def _watch_stdin(stream: IO[str], control: RunControl) -> None:
    """Apply control lines; on end of file cancel and make sure the process ends."""
    for raw in stream:
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            continue  # control lines are best effort; a garbled one must not kill a long run
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "stop":
            control.stop()
        elif kind == "cancel":
            control.cancel()
    control.cancel()
    _exit_soon(3)


def parse_request(line: str) -> tuple[str, str | None, dict[str, Any], float, RefinePlan | None]:
    """Validate a request line: (image, mask, raw settings, preview interval, refine plan or None); raises
    ClipassoError (code bad_request / bad_settings / bad_init). The settings are checked here without the
    environment; :func:`request_settings` builds the ones the run uses."""
    try:
        request = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"The request is not valid JSON ({exc.msg}).") from None
    except RecursionError:
        raise BadRequest("The request is nested too deeply to be a sketch request.") from None
    if not isinstance(request, dict) or request.get("type") != "sketch":
        raise BadRequest('The request must be a JSON object with "type": "sketch".')
    if request.get("protocol") != PROTOCOL_VERSION:
        raise BadRequest(
            f"This engine speaks protocol {PROTOCOL_VERSION}, the request asked for "
            f"{shorten(repr(request.get('protocol')), 60)}."
        )
    image = request.get("image")
    if not isinstance(image, str) or not image:
        raise BadRequest('The request needs "image": the path of the image to sketch.')
    mask = request.get("mask")
    if mask is not None and not isinstance(mask, str):
        raise BadRequest('"mask" must be a path or null.')
    raw_settings = request.get("settings")
    raw_settings = {} if raw_settings is None else raw_settings
    if not isinstance(raw_settings, dict):
        raise BadRequest('"settings" must be a JSON object.')
    interval = request.get("preview_interval_s", 2.0)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval <= 86_400:
        raise BadRequest('"preview_interval_s" must be a number of seconds from 0 to 86400.')
    request_settings(raw_settings)  # a bad setting is answered now, before the heavy imports
    from .refine import plan_refine

    refine = plan_refine(request.get("init_strokes"), request.get("locked"), request.get("add"))
    from .shape_mask import request_shapes

    request_shapes(request)  # bad mask_paths/detail_paths are answered now too (code bad_shapes / bad_paths)
    return image, mask, raw_settings, float(interval), refine


def request_settings(
    raw: dict[str, Any],
    *,
    device_type: str = "cpu",
    overlay: Callable[[SketchSettings], SketchSettings] | None = None,
) -> SketchSettings:
    """The request's settings: preset (``auto`` chosen for ``device_type``), then ``overlay`` (the environment),
    then the request's own keys, which the environment never overrides."""
    try:
        return SketchSettings.from_dict(raw, device_type=device_type, overlay=overlay)
    except (TypeError, ValueError) as exc:  # a value of the wrong JSON type; SettingsError is a ValueError too
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"A setting has a value of the wrong type ({shorten(str(exc), 120)}).") from None


def _number(value: float) -> float | None:
    """A loss or time for JSON: rounded, and null rather than the non-standard NaN/Infinity."""
    return round(value, 6) if math.isfinite(value) else None


def _progress_handler(writer: _Writer, preview_interval_s: float) -> Callable[[SketchProgress], None]:
    last_preview = time.monotonic()

    def handle(progress: SketchProgress) -> None:
        nonlocal last_preview
        writer.send(
            "progress",
            iteration=progress.iteration,
            iterations=progress.iterations,
            loss=_number(progress.loss),
            best_loss=_number(progress.best_loss),
            elapsed_s=_number(progress.elapsed_s),
            eta_s=_number(progress.eta_s),
            # With a ladder, each level's loss (the levels as in the "started" settings' ladder).
            **({"level_losses": [_number(v) for v in progress.level_losses]} if progress.level_losses else {}),
        )
        now = time.monotonic()
        if preview_interval_s > 0 and now - last_preview >= preview_interval_s:
            last_preview = now
            strokes = [
                [[round(float(v), 3) for v in point] for point in stroke] for stroke in progress.best_points().tolist()
            ]
            image_size = list(progress.image_size) if progress.image_size else None
            writer.send(
                "preview",
                iteration=progress.iteration,
                strokes=strokes,
                width=round(progress.width, 4),
                image_size=image_size,
            )

    return handle


def _result_message(result: SketchResult) -> dict[str, Any]:
    facts = result.to_dict()
    facts["loss"] = _number(result.loss)
    facts["seed_losses"] = [_number(v) for v in result.seed_losses]
    facts["ladder"] = [{"strokes": level["strokes"], "loss": _number(level["loss"])} for level in result.ladder()]
    facts["svg"] = result.to_svg()
    return facts


def _protocol_stdout() -> IO[str]:
    """Keep the process's stdout for protocol lines only.

    File descriptor 1 and ``sys.stdout`` are pointed at stderr, so a stray print from any library, Python or C,
    lands in the log instead of corrupting the protocol; the returned stream writes to the original stdout.
    """
    sys.stdout.flush()
    protocol_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8", newline="\n")


def _on_signals(handler: Callable[[int, Any], None]) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


def _terminate_with_parent() -> None:
    """Linux: have the kernel send SIGTERM when the parent dies.

    A backstop for end of stdin, which a parent that handed the pipe to other children would never cause. Elsewhere
    end of stdin is the only signal. Failing here is harmless, so every error is ignored.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def serve_stdio(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run one request from ``stdin`` and write replies to ``stdout``. Returns the process exit status.

    Without ``stdout`` the replies go to the process's real stdout, which nothing else may then write to. Every
    request ends with exactly one ``result`` or ``error`` line, whatever happens.
    """
    stdin = stdin or sys.stdin
    writer = _Writer(stdout or _protocol_stdout())
    if stdout is None:  # the real process: its stderr is the client's log, where the details behind errors belong
        from .cli import show_engine_log

        show_engine_log(sys.stderr)
    # SIGTERM/SIGINT before a request: there is nothing to wind down.
    _on_signals(lambda signum, _frame: os._exit(128 + signum))
    _terminate_with_parent()
    line = stdin.readline()
    if not line:
        return 3  # the parent went away before asking anything
    try:
        return _serve_request(line, stdin, writer)
    except ClipassoError as exc:
        writer.send("error", code=exc.code, message=str(exc))
        return exc.exit_status
    except Exception as exc:  # a bug: one line for the user, the traceback for the log
        traceback.print_exc(file=sys.stderr)
        writer.send("error", code="internal", message=format_unexpected(exc, __version__))
        return 70


def _serve_request(line: str, stdin: IO[str], writer: _Writer) -> int:
    image, mask, raw_settings, preview_interval, refine = parse_request(line)
    from .shape_mask import request_shapes

    mask_shapes, detail_shapes = request_shapes(json.loads(line))  # valid: parse_request checked them

    # The heavy imports (torch, open_clip) only now, so that a bad request is answered at once.
    from .api import sketch
    from .environment import resolve_device, settings_from_env
    from .optimize import RunControl

    control = RunControl()

    # SIGTERM/SIGINT during a run: cancel like a closed pipe does, and make sure the process ends soon after.
    def on_signal(signum: int, _frame: object) -> None:
        control.cancel()
        _exit_soon(128 + signum)

    _on_signals(on_signal)
    threading.Thread(target=_watch_stdin, args=(stdin, control), daemon=True).start()
    device = resolve_device(request_settings(raw_settings).device)
    resolved = request_settings(raw_settings, device_type=device.type, overlay=settings_from_env)
    if refine is not None:  # one run of the given strokes plus the added ones: say so in "started" already
        resolved = refine.settings(resolved)
    writer.send("started", engine_version=__version__, device=str(device), settings=resolved.to_dict())

    def on_status(stage: str, message: str) -> None:
        writer.send("status", stage=stage, message=message)

    def on_setup(done: int, total: int) -> None:
        message = f"Preparing the targets ({done} of {total})…"
        writer.send("status", stage="targets", message=message, done=done, total=total)

    result = sketch(
        image,
        resolved,
        mask=mask,
        on_progress=_progress_handler(writer, preview_interval),
        on_status=on_status,
        on_setup=on_setup,
        control=control,
        use_env=False,  # resolved above, for the "started" message
        keep_models=False,  # one sketch per process: free the saliency model once the strokes are placed
        init_strokes=refine.strokes if refine else None,
        locked=refine.locked if refine else None,
        add=refine.add if refine else 0,
        mask_paths=mask_shapes,
        detail_paths=detail_shapes,
    )
    writer.send("result", **_result_message(result))
    return 0

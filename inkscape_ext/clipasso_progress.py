"""The progress window: a GTK 3 window fed by the engine's messages, with Cancel and "Stop and use current".

Inkscape 1.2 freezes its own window while an extension runs and its Cancel does not stop the child, so the
extension shows this window itself (the ``.inx`` declares ``implements-custom-gui``). Anything GTK prints goes to
the engine log: any byte on our stderr would open an error dialog in Inkscape.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import inkex
from clipasso_client import Cancelled, EngineRun

Gtk: Any = None
GLib: Any = None
GdkPixbuf: Any = None
Gdk: Any = None
#: Whether PyGObject can hand a cairo context to Python (Debian: python3-gi-cairo); without it, no live preview.
CAN_DRAW = False


@contextlib.contextmanager
def stderr_to(path: str) -> Iterator[None]:
    """Point file descriptor 2 at ``path`` for a while (GTK and GLib write warnings straight to it)."""
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def available(log: str) -> bool:
    """Whether a window can be shown: GTK 3 through PyGObject, and a display it can open."""
    global Gtk, GLib, GdkPixbuf, Gdk, CAN_DRAW
    if os.environ.get("CLIPASSO_NO_WINDOW"):
        return False
    if os.name == "nt":
        return False  # GLib cannot watch a pipe's file descriptor there: run without a window
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False  # batch use; macOS has no DISPLAY and relies on Gtk.init_check below
    os.environ.setdefault("NO_AT_BRIDGE", "1")  # no accessibility-bus warnings on a bare X server
    with stderr_to(log), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import gi

            gi.require_version("Gtk", "3.0")
            gi.require_version("Gdk", "3.0")
            gi.require_version("GdkPixbuf", "2.0")
            from gi.repository import Gdk as _Gdk
            from gi.repository import GdkPixbuf as _GdkPixbuf
            from gi.repository import GLib as _GLib
            from gi.repository import Gtk as _Gtk
        except (ImportError, ValueError):
            return False
        if not _Gtk.init_check(None)[0]:
            return False
        try:
            gi.require_foreign("cairo")
            CAN_DRAW = True
        except ImportError:
            print("No live preview: PyGObject's cairo support (python3-gi-cairo) is missing.", file=sys.stderr)
    Gtk, GLib, GdkPixbuf, Gdk = _Gtk, _GLib, _GdkPixbuf, _Gdk
    return True


def _duration(seconds: float) -> str:
    if seconds >= 90:
        return f"about {round(seconds / 60)} min left"
    return f"about {max(1, round(seconds))} s left"


def preview_pixbuf(path: str, size: int = 320) -> Any:
    """The image as shown under the preview's strokes, upright: the engine's pixel frame follows the EXIF
    orientation (a camera JPEG stored sideways), so the preview must too. None where GdkPixbuf cannot read it."""
    try:
        pixbuf = GdkPixbuf.Pixbuf.new_from_file_at_scale(path, size, size, True)
    except Exception:  # GLib.Error for a format GdkPixbuf cannot read: the preview shows strokes on white
        return None
    return pixbuf.apply_embedded_orientation() or pixbuf


class ProgressWindow:
    """Runs the jobs one after another, showing progress and the current best strokes of each."""

    def __init__(self, jobs: list[tuple[str, str]], start: Callable[[int], EngineRun], color: tuple[float, ...]):
        self.jobs = jobs  # (label, image file) per image
        self.start = start
        self.color = color
        self.results: list[dict[str, Any]] = []
        self.failure: BaseException | None = None
        self.run: EngineRun | None = None
        self.buffer = b""
        self.watch: int | None = None
        self.stopping = False
        self.pixbuf: Any = None
        self.levels: list[int] = []  # the run's abstraction ladder, from its "started" settings

        self.window = Gtk.Window(title="CLIPasso Sketch")
        self.window.set_default_size(420, 520)
        self.window.connect("delete-event", self.on_cancel)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8, margin=12)
        self.title = Gtk.Label(xalign=0)
        self.status = Gtk.Label(xalign=0, label="Starting the engine…")
        self.bar = Gtk.ProgressBar(show_text=True)
        self.area = Gtk.DrawingArea()
        self.area.set_size_request(320, 320 if CAN_DRAW else 1)
        if CAN_DRAW:
            self.area.connect("draw", self.on_draw)
        buttons = Gtk.Box(spacing=8)
        self.stop_button = Gtk.Button.new_with_mnemonic("_Stop and use current")
        self.stop_button.connect("clicked", self.on_stop)
        cancel = Gtk.Button.new_with_mnemonic("_Cancel")
        cancel.connect("clicked", self.on_cancel)
        buttons.pack_end(cancel, False, False, 0)
        buttons.pack_end(self.stop_button, False, False, 0)
        for widget, expand in ((self.title, False), (self.status, False), (self.bar, False), (self.area, True)):
            box.pack_start(widget, expand, expand, 0)
        box.pack_end(buttons, False, False, 0)
        self.window.add(box)

    def execute(self) -> list[dict[str, Any]]:
        """Show the window, run every job, and return one result per image (fewer after Stop)."""
        self.window.show_all()
        self.next_job()
        Gtk.main()
        self.window.destroy()
        while Gtk.events_pending():
            Gtk.main_iteration()
        if self.failure is not None:
            raise self.failure
        return self.results

    def next_job(self) -> None:
        index = len(self.results)
        if self.stopping or index >= len(self.jobs):
            Gtk.main_quit()
            return
        label, path = self.jobs[index]
        self.title.set_text(f"Image {index + 1} of {len(self.jobs)}: {label}")
        self.bar.set_fraction(0.0)
        self.bar.set_text("Starting…")
        self.pixbuf = preview_pixbuf(path)
        try:
            self.run = self.start(index)
        except BaseException as err:
            self.finish_with(err)
            return
        assert self.run.proc.stdout is not None
        self.buffer = b""
        self.watch = GLib.io_add_watch(
            self.run.proc.stdout.fileno(), GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP, self.on_output
        )

    def on_output(self, fd: int, _condition: int) -> bool:
        assert self.run is not None
        chunk = os.read(fd, 65536)
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            message = self.run.parse(line)
            if message is None:
                continue
            kind = message.get("type")
            if kind in ("result", "error"):
                self.final(message)
                return False
            if kind == "started":
                self.levels = ladder_of(message)
            if kind == "status":
                self.status.set_text(str(message.get("message", "")))
                if isinstance(message.get("done"), int) and isinstance(message.get("total"), int) and message["total"]:
                    self.bar.set_fraction(min(1.0, message["done"] / message["total"]))  # a set-up stage's steps
            elif kind == "progress":
                self.show_progress(message)
            elif kind == "preview":
                self.area.queue_draw()
        if not chunk:
            self.final(None)
            return False
        return True

    def final(self, message: dict[str, Any] | None) -> None:
        assert self.run is not None
        self.watch = None
        try:
            result = self.run.outcome(message)
            self.run.finish()
        except Cancelled as err:
            if self.stopping and self.results:
                # "Stop and use current" before this image had strokes: keep the images already sketched.
                self.run.kill()
                Gtk.main_quit()
            else:
                self.finish_with(err)
            return
        except BaseException as err:
            self.finish_with(err)
            return
        self.results.append(result)
        self.next_job()

    def finish_with(self, err: BaseException) -> None:
        """End the whole run with this failure (or Cancelled); nothing is inserted."""
        self.failure = err
        if self.watch is not None:
            GLib.source_remove(self.watch)
            self.watch = None
        if self.run is not None:
            self.run.kill()
        Gtk.main_quit()

    def show_progress(self, message: dict[str, Any]) -> None:
        done, total = int(message.get("iteration", 0)), int(message.get("iterations", 0) or 1)
        self.bar.set_fraction(min(1.0, done / total))
        text = f"Iteration {done} of {total}"
        if message.get("eta_s") is not None:
            text += f", {_duration(float(message['eta_s']))}"
        self.bar.set_text(text)
        self.status.set_text("Optimising the strokes…" if not self.stopping else "Stopping…")
        losses = message.get("level_losses")
        if not self.stopping and isinstance(losses, list) and len(losses) == len(self.levels):
            self.status.set_text("Loss by level: " + level_text(self.levels, losses))

    def on_stop(self, _button: Any) -> None:
        self.stopping = True
        self.stop_button.set_sensitive(False)
        self.status.set_text("Stopping…")
        if self.run is not None:
            self.run.send({"type": "stop"})

    def on_cancel(self, *_args: Any) -> bool:
        self.finish_with(Cancelled())
        return True  # keep GTK from destroying the window under us; execute() does it

    def on_draw(self, area: Any, cr: Any) -> None:
        width, height = area.get_allocated_width(), area.get_allocated_height()
        cr.set_source_rgb(1, 1, 1)
        cr.paint()
        preview = self.run.last_preview if self.run is not None else None
        size = preview.get("image_size") if preview else None
        if not size and self.pixbuf is None:
            return
        pw, ph = size or (self.pixbuf.get_width(), self.pixbuf.get_height())
        scale = min(width / pw, height / ph)
        cr.translate((width - pw * scale) / 2, (height - ph * scale) / 2)
        if self.pixbuf is not None:
            cr.save()
            cr.scale(pw * scale / self.pixbuf.get_width(), ph * scale / self.pixbuf.get_height())
            Gdk.cairo_set_source_pixbuf(cr, self.pixbuf, 0, 0)
            cr.paint_with_alpha(0.35)  # faint, so the strokes stand out
            cr.restore()
        if not preview:
            return
        cr.scale(scale, scale)
        cr.set_line_width(max(float(preview.get("width", 1.0)), 1.0 / scale))
        cr.set_line_cap(1)  # round
        for index, stroke in enumerate(preview.get("strokes", [])):
            cr.set_source_rgba(*level_color(self.color, self.levels, index))
            (x0, y0), (x1, y1), (x2, y2), (x3, y3) = stroke
            cr.move_to(x0, y0)
            cr.curve_to(x1, y1, x2, y2, x3, y3)
            cr.stroke()


def ladder_of(started: dict[str, Any]) -> list[int]:
    """The ladder levels of a "started" message's settings ([] for none or anything unreadable)."""
    settings = started.get("settings")
    ladder = settings.get("ladder") if isinstance(settings, dict) else None
    if not isinstance(ladder, list) or not all(isinstance(k, int) and not isinstance(k, bool) for k in ladder):
        return []
    return list(ladder)


def level_text(levels: list[int], losses: list[Any]) -> str:
    """ "4: 0.812 · 8: 0.770": each level's stroke count and loss (— where the loss is not a number)."""
    shown = [f"{v:.3f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "—" for v in losses]
    return " · ".join(f"{k}: {v}" for k, v in zip(levels, shown))


def level_color(color: tuple[float, ...], levels: list[int], index: int) -> tuple[float, ...]:
    """The preview colour of stroke ``index``: the lowest level in the full colour, each higher one fainter, so
    the preview shows the levels as the inserted groups will hold them (the first k strokes are level k)."""
    if len(levels) < 2:
        return color
    level = sum(1 for top in levels[:-1] if index >= top)
    return (*color[:3], color[3] * (1.0 - 0.6 * level / (len(levels) - 1)))


def run_with_window(
    jobs: list[tuple[str, str]], start: Callable[[int], EngineRun], color: inkex.Color, log: str
) -> list[dict[str, Any]]:
    """Run the jobs under the progress window; raises ``Cancelled`` or the first job's ``AbortExtension``."""
    rgb = [c / 255.0 for c in color.to_rgb()]
    with stderr_to(log), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ProgressWindow(jobs, start, (*rgb, float(color.alpha))).execute()

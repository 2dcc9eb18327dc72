"""When Inkscape dies mid-run, end the engine's process group and this script within a second.

Inkscape killed or crashed leaves this script orphaned: blocked on the engine's stdout, or inside ``Gtk.main``, with
the engine's stdin still open, so neither would ever notice. A daemon thread watches Inkscape instead (standard
library only). Inkscape 1.2 on Linux starts extensions through GLib's double fork, so our parent is init from the
start and neither ``getppid()`` nor a parent-death signal (``PR_SET_PDEATHSIG``) can see it die; what does see it
is our stdout, the pipe Inkscape reads the new document from: when Inkscape ends, the pipe loses its reader
(``poll`` reports an error on Linux, ``kqueue`` an end of file on macOS). Where the parent is Inkscape itself, a
change of ``getppid()`` counts too; on Windows, a handle of the parent process, signalled when it ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from typing import Any, Callable

#: How often the parent's pid is checked (POSIX): well inside the 3 s the engine may keep running.
POLL_S = 0.2

_lock = threading.Lock()
_engines: list[subprocess.Popen[bytes]] = []
_folders: list[str] = []
_started = False
_orphaned = False


def watch_parent() -> None:
    """Start the watching thread (once per process)."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
    if os.name == "nt":
        handle = _open_parent_windows()
        if handle:
            threading.Thread(target=_wait_windows, args=(handle,), name="clipasso-parent", daemon=True).start()
        return
    parent = os.getppid()
    reader_gone = _reader_gone_check(sys.__stdout__.fileno() if sys.__stdout__ is not None else -1)
    if parent > 1 or reader_gone is not None:
        threading.Thread(target=_poll_posix, args=(parent, reader_gone), name="clipasso-parent", daemon=True).start()


def start_engine(args: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(args, **popen)``, registered so that the parent's death kills it (never started after)."""
    with _lock:
        if _orphaned:
            os._exit(1)
        proc: subprocess.Popen[bytes] = subprocess.Popen(args, **popen)
        _engines.append(proc)
        return proc


def remove_on_death(folder: str) -> None:
    """Delete ``folder`` (the decoded images) if the parent dies; normal exits clean up themselves."""
    with _lock:
        _folders.append(folder)


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` and everything it started, unless it has been reaped (its pid may be another's by now)."""
    if proc.returncode is not None:
        return
    if os.name == "nt":
        # Windows has no process groups to signal: end the engine's whole process tree.
        subprocess.run(
            ["taskkill", "/T", "/F", "/PID", str(proc.pid)],
            capture_output=True,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the engine leads its own session: its group is its pid


def _orphan() -> None:
    """The parent is gone: nobody will read our result. Kill the engines, clean up, exit at once."""
    global _orphaned
    with _lock:
        _orphaned = True
        for proc in _engines:
            kill_tree(proc)
        for folder in _folders:
            shutil.rmtree(folder, ignore_errors=True)
    os._exit(1)  # from this thread: the main one may be blocked in a read or in Gtk.main


def _poll_posix(parent: int, reader_gone: Callable[[], bool] | None) -> None:
    # ppid 1 (or a subreaper) from the start says nothing: only a change does.
    while os.getppid() == parent and not (reader_gone is not None and reader_gone()):
        time.sleep(POLL_S)
    _orphan()


def _reader_gone_check(fd: int) -> Callable[[], bool] | None:
    """A check that the pipe on ``fd`` (our stdout) has lost its reader, or None where ``fd`` is no pipe."""
    try:
        if fd < 0 or not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None  # a terminal or a file (a test, a shell): no reader to lose
    except OSError:
        return None
    if sys.platform == "darwin" and hasattr(select, "kqueue"):
        queue = select.kqueue()
        event = select.kevent(fd, filter=select.KQ_FILTER_WRITE, flags=select.KQ_EV_ADD)

        def kqueue_eof() -> bool:
            return any(e.flags & select.KQ_EV_EOF for e in queue.control([event], 1, 0))

        return kqueue_eof
    if not hasattr(select, "poll"):
        return None
    poller = select.poll()
    poller.register(fd, 0)  # no events asked: only the error and hang-up conditions are reported

    def poll_error() -> bool:
        return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in poller.poll(0))

    return poll_error


def _open_parent_windows() -> int:
    """A handle that is signalled when the parent process ends, or 0 where it cannot be opened."""
    if sys.platform != "win32":
        return 0
    import ctypes

    synchronize = 0x00100000
    try:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        return int(kernel32.OpenProcess(synchronize, False, os.getppid()) or 0)
    except (OSError, AttributeError):
        return 0


def _wait_windows(handle: int) -> None:
    if sys.platform != "win32":
        return
    import ctypes

    infinite, wait_object_0 = 0xFFFFFFFF, 0
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    if kernel32.WaitForSingleObject(ctypes.c_void_p(handle), infinite) == wait_object_0:
        _orphan()

"""Starts the CLIPasso engine in its private Python and speaks protocol 1 with it (``docs/protocol.md``).

The engine runs in its own process group, so Cancel can kill it and anything it started; its stderr goes to a log
file, because any byte on our stderr opens a dialog in Inkscape.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from typing import IO, Any

import inkex
from clipasso_lifeline import kill_tree, start_engine

PROTOCOL = 1
#: Environment variable naming the engine's interpreter; wins over the installer's record.
ENGINE_PYTHON_ENV = "CLIPASSO_ENGINE_PYTHON"
#: The installer's record of the engine's interpreter, next to this file.
CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clipasso_engine.json")
#: Variables that would make the engine's Python load Inkscape's modules instead of its own.
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__")

#: Seconds the engine's Python may take to start and exit (a cold disk, an antivirus scan).
STARTUP_TIMEOUT_S = 20.0
#: Log files: one per run, the newest few kept.
LOG_PREFIX = "inkscape-engine-"
KEPT_LOGS = 10

NOT_INSTALLED = (
    "The CLIPasso engine is not installed; run `python3 install.py` from the CLIPasso folder, then try again."
)


class Cancelled(Exception):
    """The user cancelled: leave the document unchanged and show nothing."""


def engine_python() -> str:
    """The engine's interpreter: ``$CLIPASSO_ENGINE_PYTHON``, else the one ``install.py`` recorded."""
    python = os.environ.get(ENGINE_PYTHON_ENV, "")
    if not python:
        try:
            with open(CONFIG_FILE, encoding="utf-8") as f:
                python = str(json.load(f).get("python", ""))
        except (OSError, ValueError, AttributeError):
            python = ""
    if not python or not os.path.isfile(python):
        raise inkex.AbortExtension(NOT_INSTALLED)
    problem = _does_not_run(python)
    if problem:
        raise inkex.AbortExtension(
            f"The CLIPasso engine's Python {python} {problem}; re-run `python3 install.py` from the CLIPasso folder "
            "to repair it, then try again."
        )
    return python


def _does_not_run(python: str) -> str:
    """Why ``python`` cannot start (a venv whose base interpreter was removed or upgraded), or "" when it runs."""
    try:
        done = subprocess.run(
            [python, "-c", "pass"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=engine_env(),
            timeout=STARTUP_TIMEOUT_S,
            **_no_console(),
        )
    except subprocess.TimeoutExpired:
        return f"did not start within {STARTUP_TIMEOUT_S:g} s"
    except OSError as err:
        return f"cannot be started ({err.strerror or err})"
    return f"does not run (exit status {done.returncode})" if done.returncode else ""


def engine_env() -> dict[str, str]:
    """Our environment minus Inkscape's Python settings; ``CLIPASSO_*`` model settings pass through."""
    return {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}


def log_path() -> str:
    """A new log for this run's engine stderr, in the user cache folder (else the temporary folder).

    Each run gets its own file (two runs at once would otherwise truncate or interleave each other's), named by
    time so the newest sorts last; only the newest ``KEPT_LOGS`` are kept.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "clipasso")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        folder = tempfile.gettempdir()
    old = sorted(n for n in os.listdir(folder) if n.startswith(LOG_PREFIX) and n.endswith(".log"))
    for name in old[: max(0, len(old) - KEPT_LOGS + 1)]:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(folder, name))
    handle, path = tempfile.mkstemp(prefix=f"{LOG_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log", dir=folder)
    os.close(handle)
    return path


def _own_group() -> dict[str, Any]:
    """Popen arguments that give the engine its own process group, so Cancel can end everything it started
    (and, on Windows, no console window)."""
    if os.name == "nt":
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def _no_console() -> dict[str, Any]:
    return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)} if os.name == "nt" else {}


class EngineRun:
    """One engine process sketching one image; read its messages with ``read()``."""

    def __init__(self, python: str, request: dict[str, Any], log: IO[bytes]) -> None:
        self.log_name = log.name
        self.python = python
        self.last_progress: dict[str, Any] | None = None
        self.last_preview: dict[str, Any] | None = None
        self.proc = start_engine(
            [python, "-m", "clipasso_engine", "serve", "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=engine_env(),
            cwd=tempfile.gettempdir(),  # never the extension folder: ``-m`` puts the cwd on sys.path
            **_own_group(),
        )
        self.send({"type": "sketch", **request})

    def send(self, message: dict[str, Any]) -> None:
        """Write one control line; a dead engine is noticed when its stdout ends."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"protocol": PROTOCOL, **message}) + "\n").encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):  # a closed pipe: BrokenPipeError, or EINVAL on Windows
            pass

    def parse(self, line: bytes) -> dict[str, Any] | None:
        """One stdout line as a message, or None for anything that is not a protocol-1 object."""
        try:
            message = json.loads(line)
        except ValueError:
            return None
        if not isinstance(message, dict) or message.get("protocol") != PROTOCOL:
            return None
        if message.get("type") == "progress":
            self.last_progress = message
        elif message.get("type") == "preview":
            self.last_preview = message
        return message

    def read(self) -> dict[str, Any] | None:
        """The next message (blocking), or None once stdout has ended."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = self.parse(line)
            if message is not None:
                return message
        return None

    def kill(self) -> None:
        """Kill the engine's whole process group and reap it (Cancel, or any failure on our side)."""
        kill_tree(self.proc)
        self.proc.wait()
        self._close_pipes()

    def finish(self) -> None:
        """After the final message: close stdin (the engine exits on EOF) and reap it, killing a straggler."""
        self._close_pipes()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def outcome(self, message: dict[str, Any] | None) -> dict[str, Any]:
        """The final message turned into a result, ``Cancelled``, or an ``AbortExtension`` naming the fix."""
        if message is not None and message.get("type") == "result":
            return message
        self.finish()
        if message is None:
            status = self.proc.returncode
            if "No module named clipasso_engine" in _tail(self.log_name):
                raise inkex.AbortExtension(NOT_INSTALLED)
            raise inkex.AbortExtension(
                f"The CLIPasso engine stopped unexpectedly (exit status {status}); see the log {self.log_name}."
            )
        code = message.get("code")
        text = str(message.get("message") or "").strip()
        if code == "cancelled":
            raise Cancelled()
        if code != "internal" and text:
            raise inkex.AbortExtension(text)  # the engine's own sentence names the fix; the log does not
        if code == "weights_missing":
            raise inkex.AbortExtension(
                f"The CLIPasso model weights are not downloaded; run `{self.python} -m clipasso_engine models fetch` "
                "once while online, then try again."
            )
        raise inkex.AbortExtension(f"The CLIPasso engine failed ({code}); see the log {self.log_name}.")


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 8192))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_headless(run: EngineRun) -> dict[str, Any]:
    """Read messages until the final one; used when there is no display or no GTK."""
    try:
        while True:
            message = run.read()
            if message is None or message.get("type") in ("result", "error"):
                result = run.outcome(message)
                run.finish()
                return result
    except BaseException:
        run.kill()
        raise

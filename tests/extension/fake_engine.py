#!/usr/bin/env python3
"""A stand-in for ``python -m clipasso_engine serve --stdio`` that replays a recorded reply (no torch needed).

The replies are recorded from the real engine by ``record_replies.py``.

Point ``CLIPASSO_ENGINE_PYTHON`` at this file: it ignores its arguments (``-c CODE`` runs CODE, as Python
would). ``FAKE_ENGINE_REPLY`` names a JSON-lines file of protocol messages, written out in order, plus directives:
``{"fake": "hold"}`` (send progress every 0.05 s until stop/cancel/EOF), ``{"fake": "sleep", "s": 0.2}``,
``{"fake": "busy", "s": 60}`` (deaf to stop, cancel and end of stdin, like a model that is loading),
``{"fake": "exit", "status": 3}`` (crash), ``{"fake": "stderr", "text": "..."}``, ``{"fake": "spawn_child"}``
(start a sleeping grandchild, to prove Cancel kills the whole group). ``FAKE_ENGINE_PIDS`` collects the pids
of every process started, ``FAKE_ENGINE_REQUESTS`` every request line received, ``FAKE_ENGINE_ENVIRONMENTS``
the ``PYTHON*`` and ``CLIPASSO_*`` variables each run was given, ``FAKE_ENGINE_SENT`` every message written.
Like the real engine: ``stop`` returns the best strokes so far, ``cancel`` answers error ``cancelled``, and end
of stdin ends the run silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

control: list[str] = []  # "stop", "cancel" or "eof", in arrival order


def emit(message: dict[str, Any]) -> None:
    line = json.dumps({"protocol": 1, **message})
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    record("FAKE_ENGINE_SENT", line)


def record(env: str, line: str) -> None:
    if os.environ.get(env):
        with open(os.environ[env], "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")


def read_control() -> None:
    for line in sys.stdin:
        with contextlib.suppress(ValueError):
            control.append(json.loads(line).get("type", ""))
    control.append("eof")


def main() -> int:
    if sys.argv[1:2] == ["-c"]:  # the extension checks that "the interpreter" runs: behave like one
        exec(sys.argv[2])
        return 0
    record("FAKE_ENGINE_PIDS", str(os.getpid()))
    record("FAKE_ENGINE_REQUESTS", sys.stdin.readline())
    record(
        "FAKE_ENGINE_ENVIRONMENTS",
        json.dumps({k: v for k, v in os.environ.items() if k.startswith(("PYTHON", "CLIPASSO_"))}),
    )
    threading.Thread(target=read_control, daemon=True).start()
    with open(os.environ["FAKE_ENGINE_REPLY"], encoding="utf-8") as f:
        script = [json.loads(line) for line in f if line.strip()]
    preview: dict[str, Any] | None = None
    progress: dict[str, Any] = {"type": "progress", "iterations": 1000, "loss": 1.0, "eta_s": 60.0}
    iteration = 0
    for message in script:
        directive = message.get("fake")
        if directive == "hold":
            while not control:
                iteration += 1
                emit(dict(progress, iteration=iteration, iterations=max(1000, iteration)))  # the recorded line's shape
                time.sleep(0.05)
            if control[0] == "stop" and preview is not None:
                result = dict(script[-1], strokes=preview["strokes"], stopped_early=True, iterations_run=iteration)
                emit(result)
                return 0
            if control[0] in ("stop", "cancel"):
                emit({"type": "error", "code": "cancelled", "message": "Cancelled."})
            return 1
        if directive in ("sleep", "busy"):
            time.sleep(float(message["s"]))
        elif directive == "exit":
            return int(message["status"])
        elif directive == "stderr":
            sys.stderr.write(message["text"] + "\n")
        elif directive == "spawn_child":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            record("FAKE_ENGINE_PIDS", str(child.pid))
        else:
            if message.get("type") == "preview":
                preview = message
            elif message.get("type") == "progress":
                progress = message
            emit(message)
            if message.get("type") in ("result", "error"):
                return 0 if message["type"] == "result" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fixtures of the extension tests: the fake engine wired in through the environment, and an X server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
EXT = HERE.parent.parent / "inkscape_ext"
DATA = HERE / "data"
FAKE_ENGINE = HERE / "fake_engine.py"
sys.path.insert(0, str(EXT))


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class FakeEngine:
    """Handle on the fake engine's records for one test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pids = folder / "pids.txt"
        self.requests = folder / "requests.jsonl"
        self.environments = folder / "environments.jsonl"
        self.sent = folder / "sent.jsonl"
        self.cache = folder / "cache"

    def env(self, reply: str) -> dict[str, str]:
        """Variables that make the extension run the fake engine with ``data/replies/<reply>.jsonl``."""
        return {
            "CLIPASSO_ENGINE_PYTHON": str(FAKE_ENGINE),
            "FAKE_ENGINE_REPLY": str(DATA / "replies" / f"{reply}.jsonl"),
            "FAKE_ENGINE_PIDS": str(self.pids),
            "FAKE_ENGINE_REQUESTS": str(self.requests),
            "FAKE_ENGINE_ENVIRONMENTS": str(self.environments),
            "FAKE_ENGINE_SENT": str(self.sent),
            "XDG_CACHE_HOME": str(self.cache),
        }

    def request_log(self) -> list[dict]:
        return [json.loads(line) for line in self.requests.read_text().splitlines()]

    def environment_log(self) -> list[dict]:
        return [json.loads(line) for line in self.environments.read_text().splitlines()]

    def sent_log(self) -> list[dict]:
        """The messages the fake engine has written so far."""
        return [json.loads(line) for line in self.sent.read_text().splitlines()] if self.sent.exists() else []

    def started_pids(self) -> list[int]:
        return [int(p) for p in self.pids.read_text().split()] if self.pids.exists() else []

    @property
    def log(self) -> Path:
        """The newest run's log (one file per run)."""
        logs = sorted((self.cache / "clipasso").glob("inkscape-engine-*.log"))
        assert logs, "no engine log was written"
        return logs[-1]


class FakeEngineCase:
    """Set-up for inkex ``TestCase`` classes (golden comparisons) that run the extension against the fake engine.

    Mix in before ``ComparisonMixin, TestCase``; ``reply`` names the recorded reply, or ``reply_file`` (a method)
    writes one into the test's folder and returns its path.
    """

    reply = "basic"

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self._folder = Path(tempfile.mkdtemp(prefix="clipasso-fake-"))
        self.engine = FakeEngine(self._folder)
        self._saved = dict(os.environ)
        os.environ.update(self.engine.env(self.reply), CLIPASSO_NO_WINDOW="1")
        reply_file = getattr(self, "reply_file", None)
        if reply_file is not None:
            os.environ["FAKE_ENGINE_REPLY"] = str(reply_file(self._folder))

    def tearDown(self) -> None:
        os.environ.clear()
        os.environ.update(self._saved)
        assert not [p for p in self.engine.started_pids() if alive(p)]
        shutil.rmtree(self._folder)
        super().tearDown()  # type: ignore[misc]


@pytest.fixture
def fake_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEngine]:
    """The fake engine, headless (no window), with every process it starts checked dead afterwards."""
    engine = FakeEngine(tmp_path)
    monkeypatch.setenv("CLIPASSO_NO_WINDOW", "1")
    for key, value in engine.env("basic").items():
        monkeypatch.setenv(key, value)
    yield engine
    deadline = time.monotonic() + 5
    while any(alive(p) for p in engine.started_pids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in engine.started_pids() if alive(p)], "an engine process outlived the test"


@pytest.fixture(scope="session")
def xserver() -> Iterator[str]:
    """A private Xvfb display (the real-client and window tests fail, never skip, without one)."""
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is missing: install xvfb (Debian: apt-get install xvfb xauth xdotool).")
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.fail("Xvfb did not start.")
    yield f":{number}"
    proc.terminate()
    proc.wait(timeout=10)

"""``clipasso serve --stdio`` end to end with the tiny models: message order and fields against docs/protocol.md,
stop and cancel, end of stdin, SIGTERM and parent death (no process left), and every error reply."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from skimage import data as skdata
from tiny_models import TinyModels

from clipasso_engine.errors import SettingsError
from clipasso_engine.serve import PROTOCOL_VERSION, BadRequest, parse_request, serve_stdio

ROOT = Path(__file__).resolve().parents[1]
TINY = {"strokes": 4, "seeds": 1, "augmentations": 1}
LONG = {**TINY, "iterations": 100000}


def _env(**changes: str) -> dict[str, str]:
    """The test's environment (``tiny_env`` has set the model variables) for an engine subprocess."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **changes}


def _request(image: Path, settings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"protocol": 1, "type": "sketch", "image": str(image), "settings": settings, **extra}


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "coffee.png"
    Image.fromarray(skdata.coffee()[::2, ::2]).save(path)  # 300×200
    return path


class Engine:
    """One engine subprocess; ``next()`` returns its next stdout line parsed, checking that it is a protocol line."""

    def __init__(self, request: dict[str, Any] | str, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "clipasso_engine", "serve", "--stdio"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                text=True,
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.send(request if isinstance(request, str) else json.dumps(request))

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def next(self, timeout: float = 60.0) -> dict[str, Any] | None:
        line = self.lines.get(timeout=timeout)
        if line is None:
            return None
        message = json.loads(line)  # nothing but protocol lines on stdout
        assert isinstance(message, dict) and message["protocol"] == PROTOCOL_VERSION, line
        return message

    def until(self, kind: str) -> list[dict[str, Any]]:
        """Messages up to and including the first of type ``kind``."""
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["type"] != kind:
            message = self.next()
            assert message is not None, f"stdout ended before {kind!r}: {seen}\n{self.log.read_text()}"
            seen.append(message)
        return seen

    def rest(self) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        while (message := self.next()) is not None:
            seen.append(message)
        return seen

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def engines(tiny_env: TinyModels, tmp_path: Path) -> Iterator[list[Engine]]:
    started: list[Engine] = []
    yield started
    for engine in started:
        engine.close()


def _start(engines: list[Engine], request: dict[str, Any] | str, tmp_path: Path, **env: str) -> Engine:
    engine = Engine(request, _env(**env), tmp_path / f"engine{len(engines)}.log")
    engines.append(engine)
    return engine


def _exits_within(proc: subprocess.Popen[str], seconds: float) -> int:
    start = time.monotonic()
    status = proc.wait(timeout=seconds + 30)  # a hung engine fails the test below rather than hanging it
    assert time.monotonic() - start <= seconds, f"the engine took {time.monotonic() - start:.1f} s to exit"
    return status


def _doc_fields(kind: str) -> set[str]:
    """Field names of the ``kind`` example in docs/protocol.md."""
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    start = doc.index(f'"type": "{kind}"')
    end = doc.index("}`", start)
    return set(re.findall(r'"(\w+)":', doc[start:end])) - {"type"}


def test_a_run_replies_in_the_documented_order_with_the_documented_fields(
    engines: list[Engine], photo: Path, tmp_path: Path
) -> None:
    engine = _start(engines, _request(photo, {**TINY, "iterations": 12, "seed": 2}, preview_interval_s=0.001), tmp_path)
    messages = engine.until("result")
    engine.proc.stdin.close()  # type: ignore[union-attr]
    assert engine.rest() == [] and _exits_within(engine.proc, 10) == 0
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "started" and kinds[-1] == "result"
    stages = [m["stage"] for m in messages if m["type"] == "status"]
    assert stages == ["loading_models", "saliency", "optimising", "targets", "targets"]
    assert kinds.index("progress") > max(i for i, k in enumerate(kinds) if k == "status")
    assert "preview" in kinds and set(kinds) == {"started", "status", "progress", "preview", "result"}

    started, result = messages[0], messages[-1]
    assert started["device"] == "cpu" and started["engine_version"]
    assert started["settings"]["strokes"] == 4 and started["settings"]["loss_model"] == "clipasso-tiny-rn"
    progress = [m for m in messages if m["type"] == "progress"]
    assert all(_doc_fields("progress") <= set(m) for m in progress)
    assert progress[-1]["iteration"] == progress[-1]["iterations"] == 12 and progress[-1]["eta_s"] == 0
    previews = [m for m in messages if m["type"] == "preview"]
    assert all(_doc_fields("preview") <= set(m) for m in previews)
    assert _doc_fields("result") <= set(result)
    assert result["image_size"] == [300, 200] and result["seed"] == 2 and result["iterations_run"] == 12
    assert result["stopped_early"] is False and len(result["strokes"]) == 4
    assert previews[-1]["width"] == pytest.approx(result["width"], abs=1e-4)
    assert previews[-1]["image_size"] == result["image_size"]
    # The preview shows the best strokes so far, which are the result's at the end (3-decimal rounding); the result
    # writes them in importance order, source_index saying where each came from.
    shown = [previews[-1]["strokes"][i] for i in result["source_index"]]
    assert shown == [[[round(v, 3) for v in point] for point in s] for s in result["strokes"]]
    assert result["svg"].startswith("<?xml") and 'viewBox="0 0 300 200"' in result["svg"]
    assert result["svg"].count("<path ") == 4


def test_stop_returns_the_best_strokes_so_far(engines: list[Engine], photo: Path, tmp_path: Path) -> None:
    engine = _start(engines, _request(photo, LONG), tmp_path)
    engine.until("progress")
    engine.send(json.dumps({"protocol": 1, "type": "stop"}))
    result = engine.until("result")[-1]
    assert result["stopped_early"] is True and 0 < result["iterations_run"] < 100000
    assert len(result["strokes"]) == 4
    engine.proc.stdin.close()  # type: ignore[union-attr]
    assert _exits_within(engine.proc, 10) == 0


def test_cancel_replies_cancelled_and_exits(engines: list[Engine], photo: Path, tmp_path: Path) -> None:
    engine = _start(engines, _request(photo, LONG), tmp_path)
    engine.until("progress")
    engine.send("this is not JSON, and is ignored")
    engine.send(json.dumps({"protocol": 1, "type": "cancel"}))
    error = [m for m in engine.rest() if m["type"] != "progress"]
    assert [(m["type"], m["code"]) for m in error] == [("error", "cancelled")]
    assert _exits_within(engine.proc, 5) != 0


def test_end_of_stdin_ends_the_engine(engines: list[Engine], photo: Path, tmp_path: Path) -> None:
    engine = _start(engines, _request(photo, LONG), tmp_path)
    engine.until("progress")
    engine.proc.stdin.close()  # type: ignore[union-attr]
    assert _exits_within(engine.proc, 5) != 0
    assert all(m["type"] in ("progress", "preview", "error") for m in engine.rest())


def test_sigterm_ends_the_engine(engines: list[Engine], photo: Path, tmp_path: Path) -> None:
    engine = _start(engines, _request(photo, LONG), tmp_path)
    engine.until("progress")
    engine.proc.send_signal(signal.SIGTERM)
    assert _exits_within(engine.proc, 5) != 0
    assert [m["code"] for m in engine.rest() if m["type"] == "error"] in ([], ["cancelled"])


PARENT = """
import json, subprocess, sys
engine = subprocess.Popen([sys.executable, "-m", "clipasso_engine", "serve", "--stdio"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
engine.stdin.write(sys.argv[1] + "\\n")
engine.stdin.flush()
holder = 0
if sys.argv[2] == "shared":  # a grandchild keeps the engine's stdin open: end of file will never come
    holder = subprocess.Popen(["sleep", "60"], pass_fds=(engine.stdin.fileno(),)).pid
for line in engine.stdout:
    if json.loads(line)["type"] == "progress":
        break
print(engine.pid, holder, flush=True)
input()  # wait to be killed
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("stdin", ["own", "shared"])
def test_parent_death_leaves_no_engine(tiny_env: TinyModels, photo: Path, stdin: str) -> None:
    """The parent is SIGKILLed; with "shared", another process still holds the engine's stdin, so only the kernel's
    parent-death signal (Linux) can tell the engine."""
    if stdin == "shared" and not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, json.dumps(_request(photo, LONG)), stdin],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_env(),
        text=True,
    )
    engine_pid = holder_pid = 0
    try:
        assert parent.stdout is not None
        engine_pid, holder_pid = (int(v) for v in parent.stdout.readline().split())
        assert _alive(engine_pid)
        parent.kill()  # SIGKILL: no chance to clean up; the engine only sees its stdin end
        parent.wait()
        deadline = time.monotonic() + 8
        while _alive(engine_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(engine_pid)
    finally:
        parent.kill()
        parent.wait()
        for pid in (engine_pid, holder_pid):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"protocol": 1, "type": "draw"}', '"type": "sketch"'),
        ('{"protocol": 2, "type": "sketch", "image": "a.png"}', "speaks protocol 1"),
        ('{"protocol": 1, "type": "sketch"}', 'needs "image"'),
        ('{"protocol": 1, "type": "sketch", "image": "a.png", "settings": []}', '"settings" must be'),
        ('{"protocol": 1, "type": "sketch", "image": "a.png", "preview_interval_s": -1}', "from 0 to 86400"),
        ('{"protocol": 1, "type": "sketch", "image": "a.png", "preview_interval_s": Infinity}', "from 0 to 86400"),
        ('{"protocol": 1, "type": "sketch", "image": "a.png", "preview_interval_s": true}', "from 0 to 86400"),
        ("[" * 200_000, "nested too deeply"),
    ],
)
def test_bad_requests(line: str, message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        parse_request(line)


@pytest.mark.parametrize(
    "settings",
    [{"strokes": 0}, {"colour": "red"}, {"preset": "slow"}, {"width": "thick"}, {"geometric_layers": 3}],
)
def test_bad_settings_are_bad_settings_not_crashes(settings: dict[str, Any]) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_request(json.dumps({"protocol": 1, "type": "sketch", "image": "a.png", "settings": settings}))
    assert caught.value.code == "bad_settings" and str(caught.value).endswith(".")


def test_a_bad_request_gets_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    out = io.StringIO()
    try:
        status = serve_stdio(io.StringIO("{not json\n"), out)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert status != 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {
        "protocol": 1,
        "type": "error",
        "code": "bad_request",
        "message": json.loads(lines[0])["message"],
    }


def test_errors_after_start_are_one_error_line(engines: list[Engine], photo: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(photo.read_bytes()[:300])
    bad_image = _start(engines, _request(truncated, TINY), tmp_path)
    # Real model names with no cached weights and downloads off: the message names both models and both fixes.
    no_weights = _start(
        engines,
        _request(photo, TINY),
        tmp_path,
        CLIPASSO_LOSS_MODEL="RN50",
        CLIPASSO_LOSS_WEIGHTS="openai",
        CLIPASSO_SALIENCY_MODEL="",
        CLIPASSO_SALIENCY_WEIGHTS="",
        CLIPASSO_MODEL_CONFIG="",
        HF_HUB_OFFLINE="1",
    )
    image_error, weights_error = bad_image.rest(), no_weights.rest()
    assert [m["type"] for m in image_error] == ["started", "error"] and image_error[1]["code"] == "bad_image"
    assert "truncated" in image_error[1]["message"]
    assert weights_error[-1]["type"] == "error" and weights_error[-1]["code"] == "weights_missing"
    assert [m["type"] for m in weights_error[:-1]] in (["started"], ["started", "status"])
    text = weights_error[-1]["message"]
    assert "-m clipasso_engine models fetch" in text and "local checkpoint" in text
    assert "RN50" in text and "ViT-B-32-quickgelu" in text
    assert bad_image.proc.wait(timeout=10) != 0 and no_weights.proc.wait(timeout=10) != 0


def _serve_in_process(line: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[dict[str, Any]]]:
    """``serve_stdio`` on one request line; its replies parsed (each must be standard JSON).

    The stdin watcher ends the process a few seconds after end of input (a dead parent's engine must not linger):
    in-process, that would end pytest, so the watchdog is switched off here and only here.
    """
    import clipasso_engine.serve as serve_module

    monkeypatch.setattr(serve_module, "_exit_soon", lambda status: None)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    out = io.StringIO()
    try:
        status = serve_stdio(io.StringIO(line + "\n"), out)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    def strict(token: str) -> None:
        raise AssertionError(f"non-standard JSON literal {token} in a reply")

    return status, [json.loads(text, parse_constant=strict) for text in out.getvalue().splitlines()]


def _sketch_line(settings: dict[str, Any] | str, image: str = "a.png") -> str:
    raw = settings if isinstance(settings, str) else json.dumps(settings)
    return f'{{"protocol": 1, "type": "sketch", "image": {json.dumps(image)}, "settings": {raw}}}'


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("[" * 200_000, "bad_request"),
        ("{" * 200_000, "bad_request"),
        (_sketch_line('{"width": Infinity}'), "bad_settings"),
        (_sketch_line('{"semantic_weight": NaN}'), "bad_settings"),
        (_sketch_line('{"geometric_weights": [NaN, 1.0]}'), "bad_settings"),
        (_sketch_line('{"lr": Infinity}'), "bad_settings"),
        (_sketch_line({f"unknown_{i}": 1 for i in range(300_000)}), "bad_settings"),
        (_sketch_line({"x" * 5_000_000: 1}), "bad_settings"),
        (_sketch_line({"preset": "p" * 5_000_000}), "bad_settings"),
    ],
)
def test_every_request_ends_with_exactly_one_short_error_line(
    line: str, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8 items 3 and 4: a RecursionError, a non-finite setting, or a huge echo used to end without an error
    line, as internal, or with a message of megabytes."""
    status, replies = _serve_in_process(line, monkeypatch)
    assert status != 0 and [r["type"] for r in replies] == ["error"], replies
    assert replies[0]["code"] == code and len(replies[0]["message"]) <= 400, replies[0]["message"][:500]


def test_a_huge_missing_path_is_echoed_short(tiny_env: TinyModels, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = "/no/such/" + "d" * 50_000_000 + ".png"
    status, replies = _serve_in_process(_sketch_line({"seeds": 1}, image=huge), monkeypatch)
    assert status != 0 and replies[-1]["type"] == "error" and replies[-1]["code"] == "bad_image"
    assert [r["type"] for r in replies if r["type"] in ("result", "error")] == ["error"]
    assert len(replies[-1]["message"]) <= 400


def test_a_bug_during_the_run_is_one_internal_error_line(
    tiny_env: TinyModels, photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clipasso_engine.api as api_module

    def broken(*_args: object, **_kwargs: object) -> None:
        raise TypeError("a programming error")

    monkeypatch.setattr(api_module, "sketch", broken)
    status, replies = _serve_in_process(_sketch_line(TINY, image=str(photo)), monkeypatch)
    assert status == 70 and [r["type"] for r in replies] == ["started", "error"]
    assert replies[-1]["code"] == "internal" and "TypeError: a programming error" in replies[-1]["message"]


def test_an_explicit_request_value_beats_the_environment(
    engines: list[Engine], photo: Path, tmp_path: Path, tiny_env: TinyModels
) -> None:
    """Issue 8 item 8: CLIPASSO_LOSS_MODEL=RN50 used to override a request naming the model explicitly, even one
    equal to the default. The CLI's twin is test_an_explicit_option_equal_to_a_default_beats_the_environment."""
    request = _request(photo, {**TINY, "iterations": 2, "loss_model": tiny_env.loss_model})
    engine = _start(engines, request, tmp_path, CLIPASSO_LOSS_MODEL="RN50")
    replies = engine.rest()
    assert replies[0]["type"] == "started" and replies[0]["settings"]["loss_model"] == tiny_env.loss_model
    assert replies[-1]["type"] == "result", replies[-1]
    # And a request value equal to the default beats the environment too (RN101's weights are not here: the
    # error names RN101, not the environment's tiny model).
    request = _request(photo, {**TINY, "iterations": 2, "loss_model": "RN101", "loss_weights": "openai"})
    engine = _start(engines, request, tmp_path, HF_HUB_OFFLINE="1")
    replies = engine.rest()
    assert replies[0]["settings"]["loss_model"] == "RN101" and replies[-1]["code"] == "weights_missing"
    assert "RN101" in replies[-1]["message"]


def test_set_up_passes_are_reported_before_the_first_iteration(
    engines: list[Engine], photo: Path, tmp_path: Path
) -> None:
    """Issue 8 item 21: a pooled preset's target passes used to run silently for up to a minute."""
    request = _request(photo, {**TINY, "iterations": 3, "augmentation_pool": 3}, preview_interval_s=0)
    replies = _start(engines, request, tmp_path).rest()
    targets = [r for r in replies if r["type"] == "status" and r["stage"] == "targets"]
    assert [(r["done"], r["total"]) for r in targets] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    kinds = [r["type"] for r in replies]
    assert kinds.index("progress") > replies.index(targets[-1]) and kinds[-1] == "result"
    assert replies[-1]["precision"] in ("fp32", "bf16")

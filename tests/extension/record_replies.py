"""Records the engine replies that the fake engine replays, from the REAL engine with the tiny test models.

``python tests/extension/record_replies.py`` rewrites ``data/replies/*.jsonl`` (needs torch: this is engine-side;
the extension tests that replay the files do not). ``test_recorded_replies.py`` re-records and compares the
structure, so a protocol change in the engine breaks a test instead of leaving the fakes stale.

Each reply file is the engine's own lines for one scenario, plus ``{"fake": ...}`` directives for what a real
engine cannot be made to do on demand (hold until Stop, crash, spawn a child). The only lines not from the engine
are marked ``SYNTHETIC`` below: error codes the engine cannot be driven to (``internal``, ``out_of_memory``,
``output_failed``), built from a recorded error line, and one message of an unknown type (forward compatibility).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REPLIES = HERE / "data" / "replies"
IMAGE = HERE / "data" / "images" / "photo.png"
#: Stands for the tiny models' folder and the image's folder in recorded strings (stable files, no temp paths).
TINY, IMAGES = "/tiny-models", "/images"
#: Fast enough for a test, long enough for a few progress and preview lines.
SETTINGS = {"preset": "fast", "strokes": 3, "iterations": 6, "seeds": 1, "seed": 0, "device": "cpu"}
SETTINGS["width_fraction"] = 0.0134
Message = dict[str, Any]


def run_engine(env: dict[str, str], request: Message | str, cancel_after_start: bool = False) -> list[Message]:
    """The engine's stdout for one request, stdin held open until the final line (end of stdin cancels)."""
    line = request if isinstance(request, str) else json.dumps({"protocol": 1, "type": "sketch", **request})
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipasso_engine", "serve", "--stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    messages = []
    for out in proc.stdout:
        message = json.loads(out)
        messages.append(message)
        if cancel_after_start and message["type"] == "started":
            proc.stdin.write('{"protocol": 1, "type": "cancel"}\n')
            proc.stdin.flush()
        if message["type"] in ("result", "error"):
            break
    proc.stdin.close()
    proc.wait(timeout=60)
    return messages


def _clean(value: Any, places: list[tuple[str, str]]) -> Any:
    """Machine-specific paths replaced by stable placeholders, recursively."""
    if isinstance(value, str):
        for place, placeholder in places:
            value = value.replace(place, placeholder)
        return value
    if isinstance(value, list):
        return [_clean(v, places) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v, places) for k, v in value.items()}
    return value


def record(tiny_env: dict[str, str], tiny_folder: Path) -> dict[str, list[Message]]:
    """Every scenario's reply script, recorded now."""
    with tempfile.TemporaryDirectory() as cache:
        base = {k: v for k, v in os.environ.items() if not k.startswith("CLIPASSO_")}
        base.update(CLIPASSO_CACHE_DIR=cache, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
        env = dict(base, **tiny_env)
        sketch = {"image": str(IMAGE), "mask": None, "settings": SETTINGS, "preview_interval_s": 1e-6}

        def rec(environment: dict[str, str], request: Message | str, cancel: bool = False) -> list[Message]:
            places = [
                (str(tiny_folder), TINY),
                (cache, "/cache"),
                (str(IMAGE.parent), IMAGES),
                (sys.executable, "python3"),
            ]
            return [_clean(m, places) for m in run_engine(environment, request, cancel)]

        run = rec(env, sketch)
        cancelled = rec(env, dict(sketch, settings=dict(SETTINGS, iterations=100000)), cancel=True)
        no_weights = rec(base, sketch)  # the default RN101, not cached, offline
        gone_file = rec(dict(env, CLIPASSO_LOSS_WEIGHTS=str(tiny_folder / "gone.pt")), sketch)
        bad_image = rec(env, dict(sketch, image=str(IMAGE.parent / "gone.png")))
        bad_settings = rec(env, dict(sketch, settings=dict(SETTINGS, strokes=0)))
        bad_request = rec(env, "{not json")
        # Abstraction ladder (issue 12): levels 2, 4 of 6 strokes; and levels out of order.
        ladder = rec(env, dict(sketch, settings=dict(SETTINGS, strokes=6, ladder=[2, 4])))
        bad_ladder = rec(env, dict(sketch, settings=dict(SETTINGS, strokes=6, ladder=[4, 2])))
        # Refine (issue 14): the very request the extension sends for the edited ladder sketch (refine_request).
        refine = rec(env, dict(sketch, **edited_refine_request()))
        # Shapes (issue 13): path data the engine cannot parse, and a shape that lies outside the image.
        bad_paths = rec(env, dict(sketch, mask_paths=[{"d": "M 10,10 L 20,zz Z", "fill_rule": "nonzero"}]))
        outside = [{"d": "M 500,500 L 600,500 L 600,600 Z", "fill_rule": "nonzero"}]
        bad_shapes = rec(env, dict(sketch, mask_paths=outside))
    started, result = run[0], run[-1]
    assert started["type"] == "started" and result["type"] == "result", run
    progress = next(m for m in run if m["type"] == "progress")
    preview = next(m for m in run if m["type"] == "preview")  # the earliest: it differs from the result
    error = bad_image[-1]

    def synthetic_error(code: str, message: str) -> Message:  # SYNTHETIC: codes the engine cannot be driven to
        return dict(error, code=code, message=message)

    loading = {"protocol": 1, "type": "status", "stage": "loading_models", "message": "Loading the models…"}
    loading = next((m for m in run if m.get("stage") == "loading_models"), loading)
    future = {"protocol": 1, "type": "future_kind", "x": 1}  # SYNTHETIC: readers must ignore unknown types
    return {
        "basic": [*run[:-1], future, result],
        "hold": [started, progress, preview, {"fake": "hold"}, result],
        "hold_before_strokes": [started, progress, {"fake": "hold"}, result],
        "loading": [started, loading, {"fake": "busy", "s": 120}],
        "cancel_children": [started, {"fake": "spawn_child"}, progress, preview, {"fake": "hold"}, result],
        "cancelled": cancelled,
        "weights_missing": no_weights,
        "weights_file_missing": gone_file,
        "bad_image": bad_image,
        "bad_settings": bad_settings,
        "bad_request": bad_request,
        "ladder": ladder,
        "ladder_hold": [ladder[0], first(ladder, "progress"), first(ladder, "preview"), {"fake": "hold"}, ladder[-1]],
        "bad_ladder": bad_ladder,
        "refine": refine,
        "bad_paths": bad_paths,
        "bad_shapes": bad_shapes,
        "crash": [started, {"fake": "stderr", "text": "Traceback: boom"}, {"fake": "exit", "status": 3}],
        "internal": [started, synthetic_error("internal", "An unexpected error; the details are in the log.")],
        "out_of_memory": [started, synthetic_error("out_of_memory", "The CPU ran out of memory; use fewer strokes.")],
        "output_failed": [started, synthetic_error("output_failed", "Cannot write /x/out.svg: disk full; free space.")],
    }


def first(lines: list[Message], kind: str) -> Message:
    return next(m for m in lines if m.get("type") == kind)


def edited_refine_request() -> Message:
    """The refine fields the extension sends for ``data/svg/edited.svg`` (``make_edited.py``), add 1."""
    sys.path.insert(0, str(ROOT / "inkscape_ext"))
    import inkex
    from clipasso_refine import read_sketch, refine_request

    svg = inkex.load_svg(str(HERE / "data" / "svg" / "edited.svg")).getroot()
    sketch = read_sketch(svg, [svg.getElementById("clipasso-photo")])
    # Long enough, with evaluations often enough, for the best strokes to be moved ones rather than the start.
    request = refine_request(sketch, {"settings": dict(SETTINGS, iterations=12, eval_every=3)}, 1)
    return {k: request[k] for k in ("settings", "init_strokes", "locked", "add")}


def write(scripts: dict[str, list[Message]], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in scripts.items():
        text = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in lines)
        (folder / f"{name}.jsonl").write_text(text, encoding="utf-8")


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_tiny_models

    with tempfile.TemporaryDirectory() as folder:
        tiny = build_tiny_models(Path(folder))
        write(record(tiny.env(), Path(folder)), REPLIES)


if __name__ == "__main__":
    main()

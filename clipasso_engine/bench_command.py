"""The ``clipasso bench`` command: its options, the real ``clipasso sketch`` run beside the prediction, the table.

The measuring itself is in ``bench.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .bench import bench_preset, cat_image, peak_memory_mb, reset_peak_memory, timed, write_random_checkpoints
from .cli_settings import ladder_settings
from .config import PRESETS, SketchSettings, preset_settings
from .environment import resolve_device, settings_from_env
from .errors import SettingsError
from .image_io import prepare_image
from .ladder_cut import ESTIMATE_EVERY
from .model_cache import loss_network, release_models, saliency_tower
from .precision import PRECISIONS, flush_denormals, resolve_precision
from .saliency import saliency_probabilities


def startup_seconds() -> float:
    """Seconds a fresh ``clipasso sketch`` process spends importing the engine (torch, open_clip) before any work."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import clipasso_engine.cli, clipasso_engine.api"], check=True)
    return time.perf_counter() - start


def _vm_hwm_mb(pid: int) -> float | None:
    """The process's own peak RSS (Linux ``VmHWM``) in MiB, or None where /proc does not tell."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return None


def _wait(child: subprocess.Popen[bytes]) -> float | None:
    """Wait for ``child``; its own peak RSS in MiB where the OS tells, else None.

    On Linux the child's ``ru_maxrss`` (``wait4``) is at least the parent's peak at the time of the fork, because
    exec keeps the high-water mark of the memory it replaces: after the bench's own rows it read 3.2 GB for a run
    that peaked at 2.2 GB. ``VmHWM`` is the new program's own, so it is polled until the child exits (a high-water
    mark: only growth in the last 0.2 s could be missed).
    """
    if Path(f"/proc/{child.pid}/status").exists():
        peak = None
        while child.poll() is None:
            peak = _vm_hwm_mb(child.pid) or peak
            time.sleep(0.2)
        return peak
    if not hasattr(os, "wait4"):
        child.wait()
        return None
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return usage.ru_maxrss * scale / 2**20


def real_run(settings: SketchSettings, image: Path, folder: Path, device: str, threads: int) -> dict[str, Any]:
    """Run the real ``clipasso sketch`` command with ``--early-stop 0`` (every iteration) and time it end to end.

    Random weights give a flat loss that would stop a run early and make any time look good, hence early stop 0.
    The engine's own stage timings come from its JSON output.
    """
    svg, facts_path = folder / f"{settings.preset}-{settings.precision}.svg", folder / "real-run.json"
    shown = ["--preset", settings.preset, "--early-stop", "0", "--strokes", str(settings.strokes)]
    shown += ["--device", device, "--precision", settings.precision]
    if settings.iterations != preset_settings(settings.preset).iterations:
        shown += ["--iterations", str(settings.iterations)]
    command = [sys.executable, "-m", "clipasso_engine", "sketch", str(image), "-o", str(svg), "--json", str(facts_path)]
    command += [*shown, "--loss-model", settings.loss_model, "--loss-weights", settings.loss_weights]
    command += ["--saliency-model", settings.saliency_model, "--saliency-weights", settings.saliency_weights]
    if settings.model_config:
        command += ["--model-config", settings.model_config]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    svg.unlink(missing_ok=True)
    with open(folder / "real-run.err", "w+b") as errors:
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        peak = _wait(child)
        wall = time.perf_counter() - start
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
    if child.returncode != 0 or not svg.is_file():
        raise RuntimeError(f"the real run failed with status {child.returncode}: {message[0]}")
    facts = json.loads(facts_path.read_text(encoding="utf-8"))
    return {
        "command": "clipasso sketch cat.png -o cat.svg " + " ".join(shown) + " --loss-weights … --saliency-weights …",
        "wall_s": wall,
        "peak_memory_mb": peak,
        "iterations_run": facts["iterations_run"],
        "engine_timings": facts["timings"],
    }


def _names(text: str, known: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names or any(n not in known for n in names):
        raise SettingsError(f"{what} must name one or more of {', '.join(known)}, got {text[:60]!r}.")
    return names


def _model_fields(settings: SketchSettings) -> dict[str, Any]:
    keys = ("strokes", "device", "loss_model", "loss_weights", "saliency_model", "saliency_weights", "model_config")
    return {key: getattr(settings, key) for key in keys}


def run_bench(args: argparse.Namespace) -> int:
    if not (0 <= args.measure <= 10_000 and 1 <= args.repeats <= 1000 and 0 <= args.threads <= 4096):
        raise SettingsError("--measure must be 0 to 10000, --repeats 1 to 1000 and --threads 0 to 4096.")
    names = _names(args.presets, list(PRESETS), "--presets")
    real_names = _names(args.real_run, list(PRESETS), "--real-run") if args.real_run else []
    chosen = _names(args.precisions, PRECISIONS, "--precisions") if args.precisions else []
    base = settings_from_env(SketchSettings(device=args.device)).replace(strokes=args.strokes)  # checks the strokes
    # The ladder's levels are checked here too, before any model loads: the top level is the bench's --strokes.
    levels = base.replace(**ladder_settings(args.ladder, args.strokes, args.strokes)).ladder
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    measure = args.measure or (3 if device.type == "cpu" else 50)
    auto = resolve_precision(device, "auto")
    precisions = chosen or sorted({"fp32", auto})
    report: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "precision_auto": auto,
        "weights": "random (full-size architectures; timing does not depend on weight values)",
        "image": "scikit-image chelsea (the cat), 451×300",
        "loss_model": base.loss_model,
        "saliency_model": base.saliency_model,
        "predicted": "predicted_wall_s = start-up + image + loads + saliency + init + target passes + iterations",
        "presets": {},
        "ladder": {"levels": list(levels), "presets": {}} if levels else None,
        "real_runs": [],
    }
    print(
        f"clipasso bench on {report['device_name']} ({device}), torch {torch.__version__}; {report['weights']}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="clipasso-bench-") as tmp:
        folder = Path(tmp)
        paths = write_random_checkpoints(folder, [base.loss_model, base.saliency_model], base.model_config)
        base = base.replace(loss_weights=str(paths[base.loss_model]), saliency_weights=str(paths[base.saliency_model]))
        image = folder / "cat.png"
        cat_image().save(image)
        stages: dict[str, float] = {"startup_s": startup_seconds()}
        release_models()  # a cold load, as in a new process
        reset_peak_memory(device)
        with flush_denormals():
            prepared, stages["prepare_image_s"] = timed(lambda: prepare_image(image), device)
            network, stages["load_loss_network_s"] = timed(lambda: loss_network(base, device), device)
            _, stages["load_saliency_model_s"] = timed(lambda: saliency_tower(base, device), device)
            report["load_peak_memory_mb"] = peak_memory_mb(device)[0]
            probabilities, stages["saliency_s"] = timed(
                lambda: saliency_probabilities(prepared.image, prepared.mask, base, device), device
            )
            report["setup"] = stages
            target = prepared.image.to(device)
            for name in names:
                settings = preset_settings(name).replace(**_model_fields(base))
                report["presets"][name] = bench_preset(
                    settings, network, probabilities, target, precisions, measure, args.repeats, sum(stages.values())
                )
                for precision, row in report["presets"][name].items():  # as it goes: a long bench shows progress
                    print(f"{name} {precision}: {row['s_per_iteration']:.3f} s/iteration", flush=True)
                if levels:  # the same preset with the ladder, right after its plain rows (issue 12's cost bound)
                    # Over one live estimate of the levels at least (ladder_cut.py): a ladder's iterations differ,
                    # a plain run's do not.
                    cycles = max(measure, ESTIMATE_EVERY)
                    rows = bench_preset(
                        settings.replace(ladder=levels), network, probabilities, target, precisions, cycles,
                        args.repeats, sum(stages.values()),
                    )  # fmt: skip
                    for precision, row in rows.items():
                        row["ratio_to_plain"] = (
                            row["s_per_iteration"] / report["presets"][name][precision]["s_per_iteration"]
                        )
                        print(f"{name} {precision} ladder: {row['s_per_iteration']:.3f} s/iteration", flush=True)
                    report["ladder"]["presets"][name] = rows
        release_models()  # the real runs are other processes: give their memory back
        del network
        for name in real_names:
            for precision in precisions:
                settings = preset_settings(name).replace(**_model_fields(base), precision=precision)
                print(f"real run: clipasso sketch --preset {name} --precision {precision} --early-stop 0 …", flush=True)
                outcome = real_run(settings, image, folder, args.device, args.threads)
                predicted = report["presets"].get(name, {}).get(precision, {}).get("predicted_wall_s")
                report["real_runs"].append(
                    {"preset": name, "precision": precision, **outcome, "predicted_wall_s": predicted}
                )
    print(format_table(report))
    if args.json:
        from .files import json_text, write_atomic

        write_atomic(args.json, json_text(report, "the bench's JSON output"))
    return 0


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def format_table(report: dict[str, Any]) -> str:
    s = report["setup"]
    loads = s["load_loss_network_s"] + s["load_saliency_model_s"]
    lines = [
        f"Every sketch first pays: start-up (imports) {s['startup_s']:.1f} s, image {s['prepare_image_s']:.2f} s, "
        f"loading the models {loads:.1f} s (loss {s['load_loss_network_s']:.1f} + saliency "
        f"{s['load_saliency_model_s']:.1f}; peak {_mb(report['load_peak_memory_mb'])} MB), saliency map "
        f"{s['saliency_s']:.2f} s.",
        "",
        "| preset | precision | seeds×(1+augs) | s/iter | floor s/iter | ×floor | render + augment | init "
        "| target passes | predicted wall | peak MB |",
        "|" + "---|" * 11,
    ]
    for name, rows in report["presets"].items():
        for r in rows.values():
            b = r["breakdown"]
            lines.append(
                f"| {name} | {r['precision']} | {r['seeds']}×(1+{r['augmentations']}) | {r['s_per_iteration']:.3f} | "
                f"{r['floor_s_per_iteration']:.3f} | {r['ratio_to_floor']:.2f} | "
                f"{b['render_s'] * 1e3:.1f} + {b['augmentation_s'] * 1e3:.1f} ms | {r['init_s']:.2f} s | "
                f"{r['target_passes']} in {r['targets_s']:.1f} s | {_clock(r['predicted_wall_s'])} "
                f"({r['iterations']} it) | {_mb(r['peak_memory_mb'])} |"
            )
    if report.get("ladder"):
        levels = ",".join(str(level) for level in report["ladder"]["levels"])
        lines += [
            "",
            f"| preset + ladder {levels} | precision | s/iter | × plain | predicted wall | peak MB |",
            "|---|---|---|---|---|---|",
        ]
        for name, rows in report["ladder"]["presets"].items():
            for r in rows.values():
                lines.append(
                    f"| {name} + ladder | {r['precision']} | {r['s_per_iteration']:.3f} | {r['ratio_to_plain']:.2f} | "
                    f"{_clock(r['predicted_wall_s'])} ({r['iterations']} it) | {_mb(r['peak_memory_mb'])} |"
                )
    if report["real_runs"]:
        lines += ["", "| real run | wall | predicted | iterations run | peak MB |", "|---|---|---|---|---|"]
        for run in report["real_runs"]:
            lines.append(
                f"| `{run['command']}` | {_clock(run['wall_s'])} | {_clock(run['predicted_wall_s'])} | "
                f"{run['iterations_run']} | {_mb(run['peak_memory_mb'])} |"
            )
    return "\n".join(lines)

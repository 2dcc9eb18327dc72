#!/usr/bin/env python3
"""Install CLIPasso for Inkscape: the engine into a private virtual environment, the extension into Inkscape.

    python3 install.py --fetch-models  install (or upgrade in place) and download the model weights
    python3 install.py --dry-run       print what would be done, change nothing
    python3 install.py --check         check the installed engine: imports, device, a tiny sketch
    python3 install.py --uninstall     remove what the installer put on this machine

PyTorch: without an NVIDIA GPU the CPU-only build is installed (about 0.2 GB to download instead of 3 GB);
macOS gets its only build (CPU and Apple GPU). --torch cpu or --torch cuda overrides the choice.

Standard library only. Inkscape runs extensions with its own Python, which never has torch; the engine therefore
lives in its own environment, and the extension starts it as a subprocess from the interpreter path recorded in
``clipasso_engine.json`` next to the extension. Inkscape's global ``python-interpreter`` preference is never
touched: changing it would break every other extension.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import venv
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXTENSION_FILES = (
    "clipasso_sketch.inx",
    "clipasso_sketch.py",
    "clipasso_client.py",
    "clipasso_image.py",
    "clipasso_lifeline.py",
    "clipasso_place.py",
    "clipasso_progress.py",
    "clipasso_refine.py",
    "clipasso_pixelsize.py",
    "clipasso_shapes.py",
)
#: Subfolder of Inkscape's user extensions folder that holds ours (removed whole by --uninstall).
FOLDER = "clipasso"
RECORD = "clipasso_engine.json"
FLATPAK_DIR = Path.home() / ".var" / "app" / "org.inkscape.Inkscape" / "config" / "inkscape"
SNAP_DIR = Path.home() / "snap" / "inkscape" / "common"
#: Where Linux's NVIDIA kernel driver lists the GPUs it drives.
NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: torch and torchvision as pyproject.toml requires them (a test keeps the two in step).
TORCH_REQUIREMENTS = ("torch>=2.1", "torchvision>=0.16")
#: torch with its own dependencies, measured from the wheels for Linux x86-64 and CPython 3.11: torch 2.14.1 from
#: PyPI (555 MB, plus 2.15 GB of NVIDIA CUDA 13 libraries and 248 MB of triton; 5.2 GB installed) and torch
#: 2.13.0+cpu from PyTorch's CPU index (192 MB, 0.7 GB unpacked).
SIZES = {"cuda": "about 3 GB to download, 5 GB installed", "cpu": "about 0.2 GB to download, 0.7 GB installed"}
WEIGHTS_SIZE = "about 0.7 GB"


class UsageError(Exception):
    """A request the installer cannot carry out; the message says what to do instead."""


def tiny_png(size: int = 32) -> bytes:
    """A grey square with a dark disc, as PNG bytes (the --check sketch needs a picture, not an imaging library)."""
    rows = b""
    for y in range(size):
        inside = [(x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 3) ** 2 for x in range(size)]
        rows += b"\x00" + bytes(v for x in inside for v in ((30, 30, 30) if x else (220, 220, 220)))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def say(message: str) -> None:
    print(message, flush=True)


def shell_command(args: list[str], platform: str = sys.platform) -> str:
    """``args`` as one line the user can paste into a terminal (cmd.exe's quoting on Windows, POSIX elsewhere)."""
    return subprocess.list2cmdline(args) if platform == "win32" else shlex.join(args)


def clean_env() -> dict[str, str]:
    """Our environment without Python settings that would make another interpreter load the wrong packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def default_venv() -> Path:
    """Per-platform home of the engine's environment."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "clipasso" / "venv"


def venv_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def fetch_command(python: Path | str) -> list[str]:
    """The weights download through the environment's interpreter: installer users have no ``clipasso`` on PATH."""
    return [str(python), "-m", "clipasso_engine", "models", "fetch"]


def engine_log_dir() -> Path:
    """The folder of the extension's engine log (the same rule as ``clipasso_client.log_path``; a test compares)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clipasso"


def inkscape_user_dir() -> Path:
    """Inkscape's user data folder: as Inkscape reports it, else the platform's default."""
    inkscape = shutil.which("inkscape")
    if inkscape:
        try:
            out = subprocess.run(
                [inkscape, "--user-data-directory"], capture_output=True, text=True, timeout=60, check=True
            ).stdout.strip()
            if out:
                return Path(out.splitlines()[-1])
        except (OSError, subprocess.SubprocessError):
            pass
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "inkscape"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "org.inkscape.Inkscape" / "config" / "inkscape"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "inkscape"


def sandbox_notes() -> list[str]:
    """Advice for sandboxed Inkscape builds, which may not be able to start a Python outside their sandbox."""
    notes = []
    inkscape = shutil.which("inkscape") or ""
    if FLATPAK_DIR.exists():
        notes.append(
            f"A Flatpak Inkscape is installed ({FLATPAK_DIR}). Its sandbox cannot start the engine's Python (the "
            "environment's interpreter lives outside the sandbox), so the extension will not work there: use "
            "Inkscape from your distribution or the AppImage."
        )
    if SNAP_DIR.exists() or inkscape.startswith("/snap/"):
        notes.append(
            f"A Snap Inkscape is installed ({SNAP_DIR}). Strict confinement cannot run a Python outside the snap: "
            "use Inkscape from your distribution or the AppImage, or rerun with "
            f"`--extensions-dir {SNAP_DIR / 'extensions'}` if your snap is installed in classic mode."
        )
    return notes


#: Each part the progress window needs from Inkscape's Python, probed separately so the note names only what is
#: missing: (probe, what it is, Debian/Ubuntu package).
WINDOW_PARTS = (
    ("import gi", "PyGObject", "python3-gi"),
    ("import gi; gi.require_version('Gtk', '3.0'); from gi.repository import Gtk", "GTK 3", "gir1.2-gtk-3.0"),
    ("import gi; gi.require_foreign('cairo')", "PyGObject's cairo support", "python3-gi-cairo"),
)


def window_note_for(missing: list[str]) -> str | None:
    """The note for the parts of ``WINDOW_PARTS`` (by name) that Inkscape's Python lacks."""
    if not missing:
        return None
    parts = [part for part in WINDOW_PARTS if part[1] in missing]
    names = " and ".join(name for _, name, _ in parts)
    packages = " ".join(package for _, _, package in parts)
    also = ""
    if "PyGObject" in missing:  # the other parts cannot be probed without it: offer their packages, claim nothing
        packages = " ".join(package for _, _, package in WINDOW_PARTS)
        also = " (the last two hold GTK 3 and its cairo support, which can be checked only once PyGObject is there)"
    if missing == ["PyGObject's cairo support"]:
        effect = "with its progress window but without the live preview"
    else:
        effect = "without its progress window or live preview"
    return (
        f"Inkscape's Python lacks {names}, so the extension will run {effect}. "
        f"On Debian/Ubuntu: `sudo apt install {packages}`{also}."
    )


def window_note() -> str | None:
    """Advice when Inkscape's Python (Linux: /usr/bin/python3) lacks what the progress window needs."""
    python = Path("/usr/bin/python3")
    if not sys.platform.startswith("linux") or not python.exists() or not shutil.which("inkscape"):
        return None
    missing = []
    for probe, name, _ in WINDOW_PARTS:
        done = subprocess.run([str(python), "-c", probe], capture_output=True, env=clean_env())
        if done.returncode != 0:
            missing.append(name)
            if name == "PyGObject":  # the other probes need it
                break
    return window_note_for(missing)


def nvidia_gpu() -> bool:
    """Whether an NVIDIA driver is present: its ``nvidia-smi`` (on PATH, or where Windows' driver puts it), or a
    GPU listed by Linux's kernel driver."""
    if shutil.which("nvidia-smi"):
        return True
    if sys.platform == "win32":
        return Path(os.environ.get("SYSTEMROOT") or r"C:\Windows", "System32", "nvidia-smi.exe").exists()
    try:
        return NVIDIA_PROC.is_dir() and any(NVIDIA_PROC.iterdir())
    except OSError:
        return False


def torch_plan(requested: str, platform: str, nvidia: bool, python: str = "python") -> tuple[list[str], str]:
    """The pip arguments that install torch, and one sentence saying which build, why, and how large.

    ``requested`` is ``auto``, ``cpu`` or ``cuda``. PyPI's Linux torch is the CUDA build (3 GB); PyTorch's own CPU
    index has the CPU-only one. PyPI's macOS torch is the only macOS build (CPU and the Apple GPU through MPS), and
    PyPI's Windows torch is CPU-only.
    """
    if platform == "darwin":
        if requested == "cuda":
            raise UsageError("macOS has no CUDA: rerun with `--torch auto` (the Apple GPU is used through MPS).")
        return list(TORCH_REQUIREMENTS), "PyTorch: PyPI's macOS build, which runs on the CPU and the Apple GPU (MPS)."
    build = requested if requested != "auto" else ("cuda" if nvidia else "cpu")
    why = f"--torch {requested}" if requested != "auto" else ("NVIDIA GPU found" if nvidia else "no NVIDIA GPU found")
    if build == "cpu":
        other = "" if platform == "win32" else f"; `--torch cuda` installs the CUDA build instead ({SIZES['cuda']})"
        return (
            [*TORCH_REQUIREMENTS, "--index-url", TORCH_CPU_INDEX],
            f"PyTorch: the CPU-only build from PyTorch's CPU wheel index ({why}), {SIZES['cpu']}{other}.",
        )
    if platform == "win32":  # PyPI has no CUDA build for Windows, and its CUDA index changes with each release
        pip = shell_command([python, "-m", "pip"], platform)
        return list(TORCH_REQUIREMENTS), (
            f"PyTorch: PyPI's Windows build ({why}), which is CPU-only. For the NVIDIA GPU, afterwards take the "
            f"`pip3 install ...` line that https://pytorch.org/get-started/locally/ gives for CUDA and run it as "
            f"`{pip} install --upgrade ...`."
        )
    return list(TORCH_REQUIREMENTS), (
        f"PyTorch: the CUDA build from PyPI ({why}), {SIZES['cuda']}; "
        f"`--torch cpu` installs the CPU-only build instead ({SIZES['cpu']})."
    )


def installed_torch(python: Path) -> str | None:
    """The torch version ``python`` sees (its own, or this Python's with --system-site-packages), else None."""
    if not python.exists():
        return None
    probe = (
        "import importlib.metadata as m\ntry:\n    print(m.version('torch'))\nexcept m.PackageNotFoundError:\n    pass"
    )
    try:
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=clean_env(), timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def keeps_torch(present: str, requested: str, platform: str) -> bool:
    """Whether torch ``present`` (a version such as ``2.14.1+cpu``) stays: always for ``auto`` and on macOS (one
    build), else when it already is the ``requested`` build (PyPI's untagged build is CUDA on Linux, CPU on Windows)."""
    if requested == "auto" or platform == "darwin":
        return True
    tag = present.partition("+")[2]
    if tag:
        build = "cpu" if tag == "cpu" else "cuda" if tag.startswith("cu") else ""
    else:
        build = "cuda" if platform.startswith("linux") else "cpu" if platform == "win32" else ""
    return build == requested


def new_folders(path: Path) -> list[Path]:
    """``path``'s ancestors that do not exist yet, nearest first: the folders that creating ``path`` will make."""
    return [parent for parent in path.parents if not parent.exists()]


def read_record(target: Path) -> dict[str, Any]:
    try:
        record = json.loads((target / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def run(command: list[str], dry_run: bool) -> None:
    say("$ " + shell_command(command))
    if not dry_run:
        subprocess.run(command, check=True)


def install(env: Path, ext_dir: Path, system_site: bool, torch: str, dry_run: bool) -> None:
    if sys.version_info < (3, 10):  # the engine's environment is made from this Python
        raise UsageError(
            f"The engine needs Python 3.10 or newer; this is {sys.version.split()[0]}. "
            "Run the installer with a newer Python, for example `python3.11 install.py`."
        )
    target = ext_dir / FOLDER
    python = venv_python(env)
    # Folders this run makes, kept in the record so --uninstall can remove them again (only when empty).
    created = [str(p) for p in (*new_folders(env), *new_folders(target))]
    created += [c for c in read_record(target).get("created", []) if isinstance(c, str) and c not in created]
    torch_args, sentence = torch_plan(torch, sys.platform, nvidia_gpu(), str(python))  # may refuse: before any change
    if python.exists():
        say(f"Upgrading the engine's environment {env}")
    else:
        say(f"Creating the engine's environment {env}")
        if not dry_run:
            venv.EnvBuilder(with_pip=True, system_site_packages=system_site).create(env)
    pip = [str(python), "-m", "pip", "install", "--upgrade", "--disable-pip-version-check"]
    if python.exists():
        present = installed_torch(python)
    else:  # a dry run before the environment exists: it will see this Python's packages with --system-site-packages
        present = installed_torch(Path(sys.executable)) if system_site else None
    if present and keeps_torch(present, torch, sys.platform):
        say(f"PyTorch: keeping torch {present}, which the environment already has (`--torch cpu|cuda` replaces it).")
    else:
        say(sentence)
        if present and python.exists():  # switching builds: an upgrade would keep a same-numbered other build
            run([str(python), "-m", "pip", "uninstall", "--yes", "torch", "torchvision"], dry_run)
        run([*pip, *torch_args], dry_run)
    run([*pip, str(HERE)], dry_run)  # torch is already satisfied, so this takes only the engine and the rest
    say(f"Copying the extension to {target}")
    if not dry_run:
        if target.exists():
            shutil.rmtree(target)  # upgrade in place: no stale files from an older version
        target.mkdir(parents=True)
        for name in EXTENSION_FILES:
            shutil.copy2(HERE / "inkscape_ext" / name, target / name)
        record = {"python": str(python), "venv": str(env), "source": str(HERE), "created": created}
        (target / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    note = window_note()
    if note:
        say("Note: " + note)


def check(ext_dir: Path, installer: list[str]) -> int:
    """Imports, device, and a tiny sketch through the protocol, as the extension would run it. ``installer`` is the
    command that installs into ``ext_dir``, for the advice."""
    record_file = ext_dir / FOLDER / RECORD
    try:
        python = json.loads(record_file.read_text(encoding="utf-8"))["python"]
    except (OSError, ValueError, KeyError, TypeError):
        say(f"Not installed: {record_file} is missing; run `{shell_command(installer)}`.")
        return 1
    env = clean_env()
    probe = "import clipasso_engine, torch; print(torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=env)
    except OSError as err:
        say(f"The engine's interpreter {python} does not start ({err.strerror}); run `{shell_command(installer)}`.")
        return 1
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        say(f"The engine does not import in {python} ({last}); run `{shell_command(installer)}`.")
        return 1
    say(f"Engine imports: torch {done.stdout.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "tiny.png"
        image.write_bytes(tiny_png())
        settings = {"preset": "fast", "strokes": 2, "iterations": 2, "seeds": 1, "device": "cpu"}
        request = {"protocol": 1, "type": "sketch", "image": str(image), "settings": settings, "preview_interval_s": 0}
        log = Path(tmp) / "engine.log"
        with log.open("w") as log_file, subprocess.Popen(
            [python, "-m", "clipasso_engine", "serve", "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            env=env,
            cwd=tmp,
        ) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()  # stdin stays open until the result: end of file would cancel the run
            final: dict[str, Any] = {}
            for line in proc.stdout:
                message = json.loads(line) if line.startswith("{") else {}
                if message.get("type") in ("result", "error"):
                    final = message
                    break
            proc.stdin.close()
        errors = log.read_text(errors="replace").strip()[-500:]
    if final.get("type") == "result":
        say(f"Tiny sketch: {len(final['strokes'])} strokes on {final.get('device')}. All good.")
        return 0
    if final.get("code") == "weights_missing":
        say(f"The model weights are missing ({final.get('message', '')}). While online, run:")
        say("    " + shell_command(fetch_command(python)))
        return 1
    say(f"The tiny sketch failed: {final.get('message') or errors}")
    return 1


def remove_if_empty(folder: Path, removing: set[Path], dry_run: bool) -> None:
    """Remove ``folder`` when nothing is left in it but what is being removed (so a dry run can tell too)."""
    try:
        if not folder.is_dir() or any(child not in removing for child in folder.iterdir()):
            return
    except OSError:
        return
    say(f"Removing {folder} (empty)")
    removing.add(folder)
    if not dry_run:
        with contextlib.suppress(OSError):  # something arrived meanwhile: it stays
            folder.rmdir()


def uninstall(env: Path, ext_dir: Path, dry_run: bool) -> None:
    """Remove what the installer made: the extension folder, the environment, the folders made for them and the
    extension's engine log. A folder with anything else in it, and the shared model caches, stay."""
    target = ext_dir / FOLDER
    created = [Path(p) for p in read_record(target).get("created", []) if isinstance(p, str)]
    removing: set[Path] = set()
    for path in (target, env):
        # Only remove what is ours: our folder with its record, and a directory that really is a venv.
        ours = (path / RECORD).exists() if path == target else (path / "pyvenv.cfg").exists()
        if ours:
            say(f"Removing {path}")
            removing.add(path)
            if not dry_run:
                shutil.rmtree(path)
        elif path.exists():
            say(f"Leaving {path}: it does not look like a CLIPasso installation.")
    logs = engine_log_dir()
    for log in sorted(logs.glob("inkscape-engine*.log")) if logs.is_dir() else []:
        say(f"Removing {log}")
        removing.add(log)
        if not dry_run:
            log.unlink()
    # The default environment's data folder is ours even when the record that lists it is gone.
    folders = [*created, *([env.parent] if env == default_venv() else []), logs]
    for folder in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):  # deepest first
        remove_if_empty(folder, removing, dry_run)
    if not removing:
        say(f"Nothing to remove: no CLIPasso installation at {target} or {env}.")
    say(
        "The model weights are kept: they live in the shared Hugging Face and open_clip caches "
        "(~/.cache/huggingface/hub, ~/.cache/clip, or CLIPASSO_CACHE_DIR), which other programs may use too."
    )
    if dry_run:
        say("Dry run: nothing was removed.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\nStandard library")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--venv", type=Path, default=None, help=f"engine environment (default: {default_venv()})")
    parser.add_argument("--extensions-dir", type=Path, default=None, help="Inkscape's user extensions folder")
    parser.add_argument(
        "--torch",
        type=str.lower,
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help=(
            "which PyTorch build to install (sizes measured for Linux x86-64):\n"
            "  auto  the default: cuda where an NVIDIA GPU is found, else cpu; macOS gets its only build\n"
            f"  cpu   CPU-only wheels from PyTorch's index, {SIZES['cpu']}\n"
            f"  cuda  PyPI's CUDA build, {SIZES['cuda']}"
        ),
    )
    parser.add_argument(
        "--system-site-packages",
        action="store_true",
        help="let the environment reuse this Python's packages (an existing torch)",
    )
    parser.add_argument(
        "--fetch-models",
        action="store_true",
        help=f"also download the model weights ({WEIGHTS_SIZE}, needs the internet)",
    )
    parser.add_argument("--check", action="store_true", help="check the installed engine and stop")
    parser.add_argument(
        "--uninstall",
        action="store_true",
        help="remove what the installer made: the extension, the engine environment, the log",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    args = parser.parse_args(argv)
    for option in ("venv", "extensions_dir"):
        if getattr(args, option) == Path(""):  # Path("") is the current folder: never what an empty value meant
            parser.error(f"--{option.replace('_', '-')} needs a folder; leave the option out for the default.")
    env = (args.venv or default_venv()).expanduser().absolute()
    ext_dir = (args.extensions_dir or inkscape_user_dir() / "extensions").expanduser().absolute()
    if args.extensions_dir is None:
        for note in sandbox_notes():
            say("Note: " + note)
    installer = [sys.executable, str(HERE / "install.py")]
    if args.extensions_dir is not None:
        installer += ["--extensions-dir", str(ext_dir)]
    if args.check:
        return check(ext_dir, installer)
    if args.uninstall:
        uninstall(env, ext_dir, args.dry_run)
        return 0
    python = venv_python(env)
    try:
        install(env, ext_dir, args.system_site_packages, args.torch, args.dry_run)
    except UsageError as err:
        say(str(err))
        return 2
    except subprocess.CalledProcessError as err:
        if TORCH_CPU_INDEX in err.cmd:
            say(
                f"Installing PyTorch's CPU-only build failed (exit status {err.returncode}; see pip's messages "
                f"above): {TORCH_CPU_INDEX} must be reachable, or rerun with `--torch cuda` to take PyPI's build."
            )
        else:
            say(f"Installing the engine failed (exit status {err.returncode}); see pip's messages above.")
        return 1
    if args.fetch_models:
        try:
            run(fetch_command(python), args.dry_run)
        except subprocess.CalledProcessError:
            say("The engine and the extension are installed, but fetching the model weights failed (see above).")
            say("When online, fetch them with:")
            say("    " + shell_command(fetch_command(python)))
            return 1
    if args.dry_run:
        say("Dry run: nothing was changed. Without --dry-run the commands above would run.")
        return 0
    menu = "select an image, then choose Extensions ▸ Images ▸ CLIPasso Sketch…"
    if args.fetch_models:
        say(f"Done: restart Inkscape, {menu}")
    else:
        say(f"Done. Before the first sketch, download the model weights once ({WEIGHTS_SIZE}, needs the internet):")
        say("    " + shell_command(fetch_command(python)))
        say(f"Then restart Inkscape, {menu}")
    say("To check the installation at any time: " + shell_command([*installer, "--check"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

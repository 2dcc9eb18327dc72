#!/usr/bin/env python3
"""Install CLIPasso for Inkscape: the engine into a private virtual environment, the extension into Inkscape.

    python3 install.py                 install, or upgrade in place when run again
    python3 install.py --check         check the installed engine: imports, device, a tiny sketch
    python3 install.py --uninstall     remove the extension and the engine's environment

Standard library only. Inkscape runs extensions with its own Python, which never has torch; the engine therefore
lives in its own environment, and the extension starts it as a subprocess from the interpreter path recorded in
``clipasso_engine.json`` next to the extension. Inkscape's global ``python-interpreter`` preference is never
touched: changing it would break every other extension.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import venv
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXTENSION_FILES = (
    "clipasso_sketch.inx",
    "clipasso_sketch.py",
    "clipasso_client.py",
    "clipasso_image.py",
    "clipasso_progress.py",
)
#: Subfolder of Inkscape's user extensions folder that holds ours (removed whole by --uninstall).
FOLDER = "clipasso"
RECORD = "clipasso_engine.json"
FLATPAK_DIR = Path.home() / ".var" / "app" / "org.inkscape.Inkscape" / "config" / "inkscape"
SNAP_DIR = Path.home() / "snap" / "inkscape" / "common"


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


def window_note() -> str | None:
    """Advice when Inkscape's Python (Linux: /usr/bin/python3) lacks GTK 3 or its cairo bridge for the window."""
    python = Path("/usr/bin/python3")
    if not sys.platform.startswith("linux") or not python.exists() or not shutil.which("inkscape"):
        return None
    probe = "import gi; gi.require_version('Gtk', '3.0'); from gi.repository import Gtk; gi.require_foreign('cairo')"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    if subprocess.run([str(python), "-c", probe], capture_output=True, env=env).returncode == 0:
        return None
    return (
        "Inkscape's Python lacks GTK 3 or its cairo support, so the extension will run without its progress window "
        "or live preview. On Debian/Ubuntu: `sudo apt install gir1.2-gtk-3.0 python3-gi-cairo`."
    )


def run(command: list[str], dry_run: bool) -> None:
    say("$ " + " ".join(command))
    if not dry_run:
        subprocess.run(command, check=True)


def install(env: Path, ext_dir: Path, system_site: bool, dry_run: bool) -> None:
    if sys.version_info < (3, 10):  # the engine's environment is made from this Python
        raise SystemExit(
            f"The engine needs Python 3.10 or newer; this is {sys.version.split()[0]}. "
            "Run the installer with a newer Python, for example `python3.11 install.py`."
        )
    python = venv_python(env)
    if python.exists():
        say(f"Upgrading the engine's environment {env}")
    else:
        say(f"Creating the engine's environment {env}")
        if not dry_run:
            venv.EnvBuilder(with_pip=True, system_site_packages=system_site).create(env)
    pip = [str(python), "-m", "pip", "install", "--upgrade", "--disable-pip-version-check"]
    run([*pip, str(HERE)], dry_run)
    target = ext_dir / FOLDER
    say(f"Copying the extension to {target}")
    if not dry_run:
        if target.exists():
            shutil.rmtree(target)  # upgrade in place: no stale files from an older version
        target.mkdir(parents=True)
        for name in EXTENSION_FILES:
            shutil.copy2(HERE / "inkscape_ext" / name, target / name)
        record = {"python": str(python), "venv": str(env), "source": str(HERE)}
        (target / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    note = window_note()
    if note:
        say("Note: " + note)
    say("Done: restart Inkscape, select an image, then Extensions ▸ Images ▸ CLIPasso Sketch…")
    say(f"Model weights are fetched once with `{python} -m clipasso_engine models fetch` (needs the internet).")


def check(ext_dir: Path) -> int:
    """Imports, device, and a tiny sketch through the protocol, as the extension would run it."""
    record_file = ext_dir / FOLDER / RECORD
    try:
        python = json.loads(record_file.read_text(encoding="utf-8"))["python"]
    except (OSError, ValueError, KeyError):
        say(f"Not installed: {record_file} is missing; run `python3 install.py`.")
        return 1
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    probe = "import clipasso_engine, torch; print(torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        say(f"The engine does not import in {python}: {done.stderr.strip().splitlines()[-1:]}")
        return 1
    say(f"Engine imports: torch {done.stdout.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "tiny.png"
        image.write_bytes(tiny_png())
        settings = {"preset": "fast", "strokes": 2, "iterations": 2, "seeds": 1, "device": "cpu"}
        request = {"protocol": 1, "type": "sketch", "image": str(image), "settings": settings, "preview_interval_s": 0}
        log = Path(tmp) / "engine.log"
        with log.open("w") as err, subprocess.Popen(
            [python, "-m", "clipasso_engine", "serve", "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            cwd=tmp,
        ) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()  # stdin stays open until the result: end of file would cancel the run
            final: dict = {}
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
        say(f"The model weights are missing: run `{python} -m clipasso_engine models fetch` while online.")
        return 1
    say(f"The tiny sketch failed: {final.get('message') or errors}")
    return 1


def uninstall(env: Path, ext_dir: Path, dry_run: bool) -> None:
    target = ext_dir / FOLDER
    for path in (target, env):
        # Only remove what is ours: our folder with its record, and a directory that really is a venv.
        ours = (path / RECORD).exists() if path == target else (path / "pyvenv.cfg").exists()
        if ours:
            say(f"Removing {path}")
            if not dry_run:
                shutil.rmtree(path)
        elif path.exists():
            say(f"Leaving {path}: it does not look like a CLIPasso installation.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--venv", type=Path, default=None, help=f"engine environment (default: {default_venv()})")
    parser.add_argument("--extensions-dir", type=Path, default=None, help="Inkscape's user extensions folder")
    parser.add_argument(
        "--system-site-packages",
        action="store_true",
        help="let the environment reuse this Python's packages (an existing torch)",
    )
    parser.add_argument(
        "--fetch-models", action="store_true", help="also download the model weights (~0.7 GB, needs the internet)"
    )
    parser.add_argument("--check", action="store_true", help="check the installed engine and stop")
    parser.add_argument("--uninstall", action="store_true", help="remove the extension and the engine environment")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    args = parser.parse_args(argv)
    env = (args.venv or default_venv()).expanduser().absolute()
    ext_dir = (args.extensions_dir or inkscape_user_dir() / "extensions").expanduser().absolute()
    if args.extensions_dir is None:
        for note in sandbox_notes():
            say("Note: " + note)
    if args.check:
        return check(ext_dir)
    if args.uninstall:
        uninstall(env, ext_dir, args.dry_run)
        return 0
    try:
        install(env, ext_dir, args.system_site_packages, args.dry_run)
    except subprocess.CalledProcessError as err:
        say(f"Installing the engine failed (exit status {err.returncode}); see pip's messages above.")
        return 1
    if args.fetch_models:
        try:
            run([str(venv_python(env)), "-m", "clipasso_engine", "models", "fetch"], args.dry_run)
        except subprocess.CalledProcessError:
            say("Fetching the weights failed (see above); the rest is installed. Run the command again when online.")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

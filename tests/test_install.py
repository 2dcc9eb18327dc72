"""install.py: a private engine environment, the extension copied into Inkscape's profile, check, upgrade, removal.

One real install into a throwaway venv (``--system-site-packages``, so torch is reused, never downloaded).
"""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "install.py"
sys.path.insert(0, str(ROOT))

import install  # noqa: E402


def run_install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(INSTALL), *args], capture_output=True, text=True, timeout=300, env=env or dict(os.environ)
    )


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    done = run_install("--venv", str(tmp_path / "venv"), "--extensions-dir", str(tmp_path / "ext"), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "-m pip install --upgrade" in done.stdout and str(ROOT) in done.stdout
    assert str(tmp_path / "ext" / "clipasso") in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_install_check_upgrade_uninstall(tmp_path: Path, tiny_env: object) -> None:
    profile = tmp_path / "profile"
    venv = tmp_path / "venv"
    env = dict(os.environ, INKSCAPE_PROFILE_DIR=str(profile))  # Inkscape reports this as its user data folder
    done = run_install("--venv", str(venv), "--system-site-packages", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    target = profile / "extensions" / "clipasso"
    record = json.loads((target / "clipasso_engine.json").read_text())
    assert Path(record["python"]) == venv / "bin" / "python" and Path(record["python"]).exists()
    for name in install.EXTENSION_FILES:
        assert filecmp.cmp(target / name, ROOT / "inkscape_ext" / name, shallow=False)
    # Asking Inkscape for its folder makes it write default preferences; ours must not be among them.
    preferences = profile / "preferences.xml"
    text = preferences.read_text() if preferences.exists() else ""
    assert "python-interpreter" not in text and "clipasso" not in text.lower()

    (target / "stale.py").write_text("# from an older version\n")
    again = run_install("--venv", str(venv), "--system-site-packages", env=env)
    assert again.returncode == 0 and "Upgrading" in again.stdout
    assert not (target / "stale.py").exists() and (target / "clipasso_sketch.inx").exists()

    check = run_install("--check", env=env)  # the tiny models come through the CLIPASSO_* variables
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Engine imports" in check.stdout and "All good" in check.stdout

    gone = run_install("--uninstall", "--venv", str(venv), env=env)
    assert gone.returncode == 0
    assert not target.exists() and not venv.exists()


def test_check_reports_missing_installation(tmp_path: Path) -> None:
    done = run_install("--check", "--extensions-dir", str(tmp_path))
    assert done.returncode == 1 and "run `python3 install.py`" in done.stdout


def test_uninstall_leaves_foreign_folders(tmp_path: Path) -> None:
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "precious.txt").write_text("not a venv")
    done = run_install("--uninstall", "--venv", str(tmp_path / "venv"), "--extensions-dir", str(tmp_path / "ext"))
    assert done.returncode == 0 and (tmp_path / "venv" / "precious.txt").exists()
    assert "does not look like a CLIPasso installation" in done.stdout


def test_sandboxed_builds_are_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flatpak, snap = tmp_path / "flatpak", tmp_path / "snap"
    flatpak.mkdir()
    snap.mkdir()
    monkeypatch.setattr(install, "FLATPAK_DIR", flatpak)
    monkeypatch.setattr(install, "SNAP_DIR", snap)
    notes = " ".join(install.sandbox_notes())
    assert "Flatpak Inkscape is installed" in notes and "will not work there" in notes and "AppImage" in notes
    assert "Snap Inkscape" in notes and "AppImage" in notes


def test_user_data_dir_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install.shutil, "which", lambda _name: None)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert install.inkscape_user_dir() == tmp_path / "inkscape"
    assert install.default_venv().name == "venv"

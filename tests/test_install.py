"""install.py: a private engine environment, the extension copied into Inkscape's profile, check, upgrade, removal.

One real install into a throwaway venv (``--system-site-packages``, so torch is reused, never downloaded).
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
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
    # Inkscape reports INKSCAPE_PROFILE_DIR as its user data folder; the cache holds the log --uninstall removes.
    env = dict(os.environ, INKSCAPE_PROFILE_DIR=str(profile), XDG_CACHE_HOME=str(tmp_path / "cache"))
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
    again = install.shell_command([sys.executable, str(INSTALL), "--extensions-dir", str(tmp_path)])
    assert done.returncode == 1 and f"run `{again}`" in done.stdout


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


# --- PyTorch build, fetch order, printed commands, uninstall: through a fake engine environment --------------------

LINUX = sys.platform.startswith("linux")
FAKE_PYTHON = """#!/bin/sh
# Stands in for the engine environment's python: logs its arguments, answers the probes, fails what FAIL names.
echo "$*" >> "$(dirname "$0")/calls.log"
case "$*" in
  *"$FAIL"*) echo "simulated failure: $*" >&2; exit 1;;
  "-c import importlib.metadata"*) [ -n "$TORCH_VERSION" ] && echo "$TORCH_VERSION";;
  "-c import clipasso_engine, torch"*) echo "2.14.1 cpu";;
  "-m clipasso_engine serve --stdio")
    echo '{"type": "error", "code": "weights_missing", "message": "the weights of RN101 are not downloaded"}';;
esac
exit 0
"""


def make_fake_venv(env: Path, torch_version: str = "") -> Path:
    python = install.venv_python(env)
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return python


class FakeBuilder:
    """venv.EnvBuilder that makes the fake environment instead of a real one (seconds, and no pip)."""

    def __init__(self, **_kwargs: object) -> None:
        pass

    def create(self, env: str | Path) -> None:
        make_fake_venv(Path(env))


@pytest.fixture
def fake_system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No real environment, no GPU, no window probe; commands run through the fake python. Returns a folder."""
    if not LINUX:
        pytest.skip("the fake environment is a POSIX shell script; the pure functions are tested on every platform")
    monkeypatch.setattr(install.venv, "EnvBuilder", FakeBuilder)
    monkeypatch.setattr(install, "nvidia_gpu", lambda: False)
    monkeypatch.setattr(install, "window_note", lambda: None)
    monkeypatch.setenv("FAIL", "no command fails")
    monkeypatch.setenv("TORCH_VERSION", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "my home"  # a space: every printed command must quote it
    root.mkdir()
    return root


def calls(env: Path) -> list[str]:
    return (install.venv_python(env).parent / "calls.log").read_text().splitlines()


def test_torch_plan_per_platform() -> None:
    cpu_args, cpu_text = install.torch_plan("auto", "linux", nvidia=False)
    assert cpu_args[-2:] == ["--index-url", "https://download.pytorch.org/whl/cpu"] and "0.2 GB" in cpu_text
    assert "no NVIDIA GPU found" in cpu_text and "--torch cuda" in cpu_text
    cuda_args, cuda_text = install.torch_plan("auto", "linux", nvidia=True)
    assert "--index-url" not in cuda_args and "3 GB" in cuda_text and "--torch cpu" in cuda_text
    assert install.torch_plan("cpu", "linux", nvidia=True)[0] == cpu_args  # the flag beats the detection
    assert install.torch_plan("cuda", "linux", nvidia=False)[0] == cuda_args
    mac_args, mac_text = install.torch_plan("auto", "darwin", nvidia=False)
    assert "--index-url" not in mac_args and "MPS" in mac_text
    assert install.torch_plan("cpu", "darwin", nvidia=False)[0] == mac_args  # macOS has one build
    with pytest.raises(install.UsageError, match="macOS has no CUDA"):
        install.torch_plan("cuda", "darwin", nvidia=False)
    win_args, win_text = install.torch_plan("auto", "win32", nvidia=True, python=r"C:\A B\python.exe")
    assert "--index-url" not in win_args and "CPU-only" in win_text and "pytorch.org" in win_text
    assert r'"C:\A B\python.exe" -m pip install' in win_text
    assert install.torch_plan("auto", "win32", nvidia=False)[0] == cpu_args


def test_torch_requirements_match_pyproject() -> None:
    import tomllib

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(install.TORCH_REQUIREMENTS) <= set(dependencies)


def test_nvidia_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install.sys, "platform", "linux")
    monkeypatch.setattr(install.shutil, "which", lambda _name: None)
    monkeypatch.setattr(install, "NVIDIA_PROC", tmp_path / "missing")
    assert not install.nvidia_gpu()
    monkeypatch.setattr(install, "NVIDIA_PROC", tmp_path)
    assert not install.nvidia_gpu()  # the driver's folder without a GPU in it
    (tmp_path / "0000:01:00.0").mkdir()
    assert install.nvidia_gpu()
    monkeypatch.setattr(install, "NVIDIA_PROC", tmp_path / "missing")
    monkeypatch.setattr(install.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    assert install.nvidia_gpu()


@pytest.mark.parametrize(
    ("present", "requested", "platform", "kept"),
    [
        ("2.14.1+cpu", "auto", "linux", True),
        ("2.14.1", "auto", "linux", True),
        ("2.14.1+cpu", "cpu", "linux", True),
        ("2.14.1+cpu", "cuda", "linux", False),
        ("2.14.1", "cuda", "linux", True),  # PyPI's Linux build is the CUDA one
        ("2.14.1", "cpu", "linux", False),
        ("2.14.1+cu128", "cuda", "win32", True),
        ("2.14.1", "cuda", "win32", False),  # PyPI's Windows build is CPU-only
        ("2.14.1", "cpu", "darwin", True),
        ("2.14.1+rocm6.4", "cuda", "linux", False),
    ],
)
def test_keeps_torch(present: str, requested: str, platform: str, kept: bool) -> None:
    assert install.keeps_torch(present, requested, platform) is kept


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--torch", ""], "invalid choice: ''"),
        (["--torch", "gpu"], "invalid choice: 'gpu' (choose from"),
        (["--torch", "cuda12"], "invalid choice: 'cuda12'"),
        (["--torch"], "expected one argument"),
        (["--venv", ""], "--venv needs a folder"),
        (["--extensions-dir", ""], "--extensions-dir needs a folder"),
    ],
)
def test_bad_options_are_refused(
    option: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # an empty value taken as the current folder would put the installation here
    with pytest.raises(SystemExit) as stop:
        install.main(["--dry-run", "--venv", str(tmp_path / "v"), "--extensions-dir", str(tmp_path / "e"), *option])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_dry_run_cpu_wheels_without_gpu(fake_system: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env, ext = fake_system / "venv", fake_system / "ext"
    assert install.main(["--venv", str(env), "--extensions-dir", str(ext), "--dry-run", "--torch", "CPU"]) == 0
    out = capsys.readouterr().out
    python = install.shell_command([str(install.venv_python(env))])
    assert f"$ {python} -m pip install --upgrade --disable-pip-version-check 'torch>=2.1' 'torchvision>=0.16' " in out
    assert "--index-url https://download.pytorch.org/whl/cpu" in out and "0.2 GB to download" in out
    assert "Done" not in out and out.splitlines()[-1].startswith("Dry run: nothing was changed")
    assert list(fake_system.iterdir()) == []


def test_dry_run_cuda_wheels_with_gpu(
    fake_system: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(install, "nvidia_gpu", lambda: True)
    env = fake_system / "venv"
    assert install.main(["--venv", str(env), "--extensions-dir", str(fake_system / "ext"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "'torch>=2.1' 'torchvision>=0.16'\n" in out and "--index-url" not in out
    assert "CUDA build from PyPI (NVIDIA GPU found), about 3 GB to download" in out


def test_switching_torch_build(fake_system: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = fake_system / "venv"
    make_fake_venv(env)
    monkeypatch.setenv("TORCH_VERSION", "2.14.1")  # PyPI's CUDA build, untagged
    assert install.main(["--venv", str(env), "--extensions-dir", str(fake_system / "ext")]) == 0
    assert not any("torch>=2.1" in call for call in calls(env))  # auto keeps what is there
    (install.venv_python(env).parent / "calls.log").unlink()
    assert install.main(["--venv", str(env), "--extensions-dir", str(fake_system / "ext"), "--torch", "cpu"]) == 0
    pip_calls = [call for call in calls(env) if call.startswith("-m pip")]
    assert pip_calls[0] == "-m pip uninstall --yes torch torchvision"  # an upgrade would keep 2.14.1 (< 2.14.1+cpu)
    assert pip_calls[1].endswith("torch>=2.1 torchvision>=0.16 --index-url https://download.pytorch.org/whl/cpu")
    assert pip_calls[2].endswith(str(ROOT))


def test_fetch_failure_names_the_command(
    fake_system: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAIL", "models fetch")
    env = fake_system / "venv"
    argv = ["--venv", str(env), "--extensions-dir", str(fake_system / "ext"), "--fetch-models"]
    assert install.main(argv) == 1
    lines = capsys.readouterr().out.splitlines()
    fetch = install.shell_command([str(install.venv_python(env)), "-m", "clipasso_engine", "models", "fetch"])
    assert "'" in fetch  # the space in the path is quoted
    assert not any("Done" in line or "restart Inkscape" in line for line in lines), lines
    assert lines[-1].strip() == fetch and "fetching the model weights failed" in lines[-3]
    assert calls(env)[-1] == "-m clipasso_engine models fetch"


def test_success_order_and_printed_commands(fake_system: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env, ext = fake_system / "venv", fake_system / "ext"
    assert install.main(["--venv", str(env), "--extensions-dir", str(ext), "--fetch-models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    fetched = next(i for i, line in enumerate(lines) if line.endswith("-m clipasso_engine models fetch"))
    done = next(i for i, line in enumerate(lines) if line.startswith("Done: restart Inkscape"))
    assert fetched < done  # "Done" only once the weights are there
    check = install.shell_command([sys.executable, str(INSTALL), "--extensions-dir", str(ext), "--check"])
    assert lines[-1] == "To check the installation at any time: " + check

    assert install.main(["--venv", str(env), "--extensions-dir", str(ext)]) == 0  # without --fetch-models
    lines = capsys.readouterr().out.splitlines()
    fetch = install.shell_command([str(install.venv_python(env)), "-m", "clipasso_engine", "models", "fetch"])
    assert lines[-3] == "    " + fetch and lines[-2].startswith("Then restart Inkscape")


def test_check_prints_a_runnable_fetch_command(fake_system: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env, ext = fake_system / "venv", fake_system / "ext"
    assert install.main(["--venv", str(env), "--extensions-dir", str(ext)]) == 0
    capsys.readouterr()
    assert install.main(["--check", "--extensions-dir", str(ext)]) == 1  # the fake engine reports weights_missing
    lines = capsys.readouterr().out.splitlines()
    assert "RN101 are not downloaded" in lines[-2]
    assert lines[-1] == "    " + install.shell_command(install.fetch_command(install.venv_python(env)))


def test_shell_command_quoting() -> None:
    args = ["/home/a b/venv/bin/python", "-m", "clipasso_engine", "models", "fetch"]
    assert install.shell_command(args, "linux") == "'/home/a b/venv/bin/python' -m clipasso_engine models fetch"
    win = [r"C:\Users\A B\AppData\Local\clipasso\venv\Scripts\python.exe", "-m", "clipasso_engine"]
    assert (
        install.shell_command(win, "win32")
        == r'"C:\Users\A B\AppData\Local\clipasso\venv\Scripts\python.exe" -m clipasso_engine'
    )


def test_uninstall_removes_what_install_made(fake_system: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = fake_system / "data" / "clipasso" / "venv"
    ext = fake_system / "profile" / "extensions"
    assert install.main(["--venv", str(env), "--extensions-dir", str(ext)]) == 0
    cache = Path(os.environ["XDG_CACHE_HOME"])
    log = cache / "clipasso" / "inkscape-engine.log"  # the extension writes it on its first run
    log.parent.mkdir(parents=True)
    log.write_text("engine output\n")
    before = sorted(fake_system.rglob("*"))
    assert install.main(["--uninstall", "--dry-run", "--venv", str(env), "--extensions-dir", str(ext)]) == 0
    assert sorted(fake_system.rglob("*")) == before and log.exists()
    planned = capsys.readouterr().out
    assert f"Removing {fake_system / 'data' / 'clipasso'} (empty)" in planned and f"Removing {log}" in planned

    assert install.main(["--uninstall", "--venv", str(env), "--extensions-dir", str(ext)]) == 0
    assert list(fake_system.iterdir()) == []  # the environment, its data folders, the profile folders we made
    assert not log.parent.exists() and cache.exists()  # the cache folder itself is not ours
    assert "model weights are kept" in capsys.readouterr().out


def test_uninstall_keeps_the_users_files(fake_system: Path) -> None:
    env = fake_system / "data" / "clipasso" / "venv"
    ext = fake_system / "profile" / "extensions"
    assert install.main(["--venv", str(env), "--extensions-dir", str(ext)]) == 0
    mine = [fake_system / "data" / "clipasso" / "notes.txt", ext / "other_extension.inx"]
    log_dir = Path(os.environ["XDG_CACHE_HOME"]) / "clipasso"
    log_dir.mkdir(parents=True)
    (log_dir / "inkscape-engine.log").write_text("engine output\n")
    mine.append(log_dir / "my-sketch.svg")
    for path in mine:
        path.write_text("the user's\n")
    assert install.main(["--uninstall", "--venv", str(env), "--extensions-dir", str(ext)]) == 0
    assert all(path.exists() for path in mine)
    assert not env.exists() and not (ext / "clipasso").exists() and not (log_dir / "inkscape-engine.log").exists()


def test_default_data_folder_goes_without_a_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(install.sys, "platform", "linux")
    env = install.default_venv()
    env.mkdir(parents=True)
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    assert install.main(["--uninstall", "--extensions-dir", str(tmp_path / "ext")]) == 0
    assert not (tmp_path / "data" / "clipasso").exists() and (tmp_path / "data").exists()


def test_log_folder_matches_the_extension(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("inkex")
    monkeypatch.syspath_prepend(str(ROOT / "inkscape_ext"))
    import clipasso_client

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert Path(clipasso_client.log_path()).parent == install.engine_log_dir()
    assert Path(clipasso_client.log_path()).name.startswith("inkscape-engine")


def test_window_note_names_only_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    if not (LINUX and Path("/usr/bin/python3").exists()):
        pytest.skip("the note is for Linux, where Inkscape's Python is /usr/bin/python3")
    real_run = subprocess.run
    monkeypatch.setattr(install.shutil, "which", lambda name: "/usr/bin/inkscape" if name == "inkscape" else None)

    def no_cairo(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        if "require_foreign" in command[-1]:
            return subprocess.CompletedProcess(command, 1, b"", b"ImportError: cairo")
        return subprocess.CompletedProcess(command, 0, b"", b"")

    monkeypatch.setattr(install.subprocess, "run", no_cairo)
    note = install.window_note() or ""
    assert "lacks PyGObject's cairo support" in note and "without the live preview" in note
    assert "GTK 3" not in note and "`sudo apt install python3-gi-cairo`" in note
    monkeypatch.setattr(install.subprocess, "run", lambda command, **kwargs: real_run(["false"]))
    note = install.window_note() or ""
    assert "lacks PyGObject, so" in note and "without its progress window" in note
    assert "python3-gi gir1.2-gtk-3.0 python3-gi-cairo" in note and "checked only once PyGObject is there" in note

    def no_gtk(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(command, 1 if "Gtk" in command[-1] else 0, b"", b"")

    monkeypatch.setattr(install.subprocess, "run", no_gtk)
    note = install.window_note() or ""
    assert "lacks GTK 3, so" in note and "without its progress window or live preview" in note
    assert "`sudo apt install gir1.2-gtk-3.0`." in note
    assert install.window_note_for([]) is None


def test_runs_on_python_3_8(tmp_path: Path) -> None:
    """install.py runs on whatever python3 the user has: 3.8 gets the help and one sentence, not a traceback."""
    import ast

    ast.parse(INSTALL.read_text(), feature_version=(3, 8))
    candidates = [*Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"), shutil.which("python3.8")]
    runs = [str(c) for c in candidates if c and subprocess.run([str(c), "-c", ""], capture_output=True).returncode == 0]
    if not runs:
        pytest.skip("no Python 3.8 on this machine (the syntax check above still ran)")
    python38 = runs[0]
    done = subprocess.run([str(python38), str(INSTALL), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--torch {auto,cpu,cuda}" in done.stdout, done.stderr
    done = subprocess.run(
        [
            str(python38),
            str(INSTALL),
            "--dry-run",
            "--venv",
            str(tmp_path / "v"),
            "--extensions-dir",
            str(tmp_path / "e"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "needs Python 3.10 or newer" in done.stdout and not done.stderr
    done = subprocess.run(
        [
            str(python38),
            str(INSTALL),
            "--uninstall",
            "--dry-run",
            "--venv",
            str(tmp_path / "v"),
            "--extensions-dir",
            str(tmp_path / "e"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")),
    )
    assert done.returncode == 0 and "model weights are kept" in done.stdout, done.stderr


def test_every_extension_file_is_installed() -> None:
    """A module added to the extension but not to the installer's list made the installed extension fail to import."""
    shipped = {p.name for p in (ROOT / "inkscape_ext").iterdir() if p.suffix in (".py", ".inx")}
    assert set(install.EXTENSION_FILES) == shipped

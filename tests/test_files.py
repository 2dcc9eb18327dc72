"""Output files: atomic and durable writes, strict JSON text, and which paths name the same file."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from clipasso_engine import files as files_module
from clipasso_engine.errors import OutputError
from clipasso_engine.files import json_text, same_file, write_atomic

# --- write_atomic ------------------------------------------------------------------------------------------------


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name not in keep)


def test_writes_text_and_bytes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.svg"
    write_atomic(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    write_atomic(str(target), b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path, {"out.svg"}) == []


def test_new_file_gets_the_usual_mode_and_an_old_file_keeps_its_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new.svg", "x")
        assert stat.S_IMODE((tmp_path / "new.svg").stat().st_mode) == 0o644  # not mkstemp's private 0600
        old = tmp_path / "old.svg"
        old.write_text("old")
        old.chmod(0o640)
        write_atomic(old, "new")
        assert stat.S_IMODE(old.stat().st_mode) == 0o640
    finally:
        os.umask(umask)


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_failure_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    target = tmp_path / "out.svg"
    target.write_text("precious")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "write":
        monkeypatch.setattr(files_module.os, "fdopen", lambda fd, mode: _FailingFile(fd))
    else:
        monkeypatch.setattr(files_module.os, failing, boom)
    with pytest.raises(OutputError, match=r"Cannot write .*out\.svg: the disk is full") as caught:
        write_atomic(target, "new content")
    assert str(caught.value).count(". ") == 0 and str(caught.value).endswith(".")
    assert target.read_text() == "precious"
    assert _leftovers(tmp_path, {"out.svg"}) == []


class _FailingFile(io.FileIO):
    """A real file object on the temp file's descriptor whose write fails halfway, like a full disk."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd, "wb")

    def write(self, data: object) -> int:
        super().write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")


def test_interrupt_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.svg"
    target.write_text("precious")

    def interrupt(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files_module.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is not turned into an OutputError
        write_atomic(target, "new content")
    assert target.read_text() == "precious"
    assert _leftovers(tmp_path, {"out.svg"}) == []


def test_missing_folder_and_folder_target(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"the folder .*nowhere does not exist"):
        write_atomic(tmp_path / "nowhere" / "out.svg", "x")
    with pytest.raises(OutputError, match="it is a folder"):
        write_atomic(tmp_path, "x")
    assert not (tmp_path / "nowhere").exists()


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, which ignores folder permissions, so the refusal is simulated where it would occur.
    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files_module.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match="permission denied"):
        write_atomic(tmp_path / "out.svg", "x")
    assert not (tmp_path / "out.svg").exists()


def test_the_file_and_its_folder_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Durable: the data is flushed before the rename, and the folder after it, so a power cut keeps one of the two.
    synced: list[str] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(files_module.os, "fsync", record)
    write_atomic(tmp_path / "out.svg", "x")
    assert synced == ["file", "folder"]


def test_an_existing_files_setuid_free_mode_is_kept_exactly(tmp_path: Path) -> None:
    target = tmp_path / "exec.sh"
    target.write_text("old")
    target.chmod(0o751)
    write_atomic(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o751 and target.read_text() == "new"


# --- json_text -----------------------------------------------------------------------------------------------


def test_json_text_is_indented_json_with_a_final_newline() -> None:
    text = json_text({"loss": 0.5, "strokes": [[[1.0, 2.0]]], "settings": {"lr": 1.0}})
    assert text.endswith("}\n") and text.count("\n") > 3
    assert json.loads(text) == {"loss": 0.5, "strokes": [[[1.0, 2.0]]], "settings": {"lr": 1.0}}


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_json_text_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(OutputError, match=r"Cannot write the JSON output: settings\.lr is (-?inf|nan)"):
        json_text({"loss": 0.5, "settings": {"lr": value}})


# --- same_file -----------------------------------------------------------------------------------------------


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "cat.png"
    path.write_bytes(b"photo")
    return path


def test_same_path_and_other_spellings(photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert same_file(photo, photo)
    assert same_file("cat.png", "./cat.png")
    assert same_file("cat.png", str(photo))
    (tmp_path / "sub").mkdir()
    assert same_file("sub/../cat.png", Path("cat.png"))
    assert same_file("./sub//../cat.png", photo)


def test_different_files_are_different(photo: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin.png"
    twin.write_bytes(photo.read_bytes())  # same content, another file
    assert not same_file(photo, twin)
    assert not same_file(photo, tmp_path / "cat.svg")  # does not exist yet
    assert not same_file(photo, tmp_path)  # its folder


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_symbolic_links(photo: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.png"
    link.symlink_to(photo)
    chain = tmp_path / "chain.png"
    chain.symlink_to("link.png")  # relative, through another link
    assert same_file(link, photo) and same_file(photo, chain) and same_file(chain, link)
    # A dangling link names the file that writing through it would create.
    dangling = tmp_path / "dangling.svg"
    dangling.symlink_to(tmp_path / "future.svg")
    assert same_file(dangling, tmp_path / "future.svg")
    assert not same_file(dangling, photo)
    # A linked folder: the output does not exist yet, but both spellings would write one file.
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    assert same_file(tmp_path / "alias" / "out.svg", real / "out.svg")
    assert not same_file(tmp_path / "alias" / "out.svg", real / "out.json")


@pytest.mark.skipif(not hasattr(os, "link"), reason="no hard links")
def test_hard_links(photo: Path, tmp_path: Path) -> None:
    hard = tmp_path / "hard.png"
    os.link(photo, hard)
    assert same_file(hard, photo)
    assert os.path.realpath(hard) != os.path.realpath(photo)  # only the file's identity tells them apart


def test_paths_that_do_not_exist(tmp_path: Path) -> None:
    assert same_file(tmp_path / "a.svg", tmp_path / "a.svg")
    assert same_file(tmp_path / "a.svg", tmp_path / "x" / ".." / "a.svg")
    assert not same_file(tmp_path / "a.svg", tmp_path / "b.svg")
    assert same_file(tmp_path / "no" / "dir" / "a.svg", tmp_path / "no" / "dir" / "a.svg")
    assert not same_file(tmp_path / "no" / "a.svg", tmp_path / "other" / "a.svg")
    assert not same_file("bad\0name", tmp_path / "a.svg")  # a NUL byte: no such file, and no crash
    assert same_file("bad\0name", "bad\0name")


def _case_sensitive(folder: Path) -> bool:
    probe = folder / "Probe"
    probe.write_text("")
    try:
        return not (folder / "pROBE").exists()
    finally:
        probe.unlink()


def test_case_is_compared_as_the_file_system_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if _case_sensitive(out):
        assert not same_file(out / "Sketch.svg", out / "sketch.svg")
        (out / "Sketch.svg").write_text("")
        assert not files_module._case_insensitive(str(out))  # decided from the existing entry
    else:  # macOS, Windows: both names reach one file
        assert same_file(out / "Sketch.svg", out / "sketch.svg")
    # On a case-insensitive folder names that differ in case or Unicode normalisation are one file.
    monkeypatch.setattr(files_module, "_case_insensitive", lambda folder: True)
    assert same_file(out / "Sketch.SVG", out / "sketch.svg")
    assert same_file(out / "caf\u00e9.svg", out / "cafe\u0301.svg")  # é composed vs e + combining accent
    assert not same_file(out / "sketch.svg", out / "sketch.json")


def test_case_insensitivity_falls_back_to_the_platform_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A folder with no cased entry and no cased name cannot be probed without writing.
    uncased = tmp_path / "2024"
    uncased.mkdir()
    (uncased / "123").write_text("")
    if _case_sensitive(tmp_path):
        monkeypatch.setattr(files_module.sys, "platform", "darwin")
        assert files_module._case_insensitive(str(uncased))
        monkeypatch.setattr(files_module.sys, "platform", "linux")
        assert not files_module._case_insensitive(str(uncased))

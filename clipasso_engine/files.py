"""Output files: atomic and durable writes, strict JSON text, and telling whether two paths name the same file.

``write_atomic`` never leaves a half-written file: readers see the old file or the whole new one, even after a
crash or a full disk. ``same_file`` lets the CLI refuse an output path that would overwrite its own input.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
import unicodedata

from .errors import OutputError
from .strict_json import json_dumps_strict


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` so that readers see the old file or the whole new one.

    The bytes go to a temporary file in the same folder, are fsynced, then renamed over ``path``, and the folder is
    fsynced so the rename survives a power cut. On any failure (including Ctrl-C) the temporary file is removed and
    an existing ``path`` is left untouched; an ``OSError`` becomes one ``OutputError`` sentence. An existing file
    keeps its permission bits.
    """
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if os.path.isdir(target):
        raise OutputError(f"Cannot write {target}: it is a folder; give a file name.")
    if not os.path.isdir(folder):
        raise OutputError(f"Cannot write {target}: the folder {folder} does not exist; create it first.")
    temp_path: str | None = None
    try:
        fd, temp_path = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would, or the old file's mode.
        os.chmod(temp_path, _target_mode(target))
        os.replace(temp_path, target)
        temp_path = None
        _fsync_folder(folder)
    except OSError as exc:
        raise OutputError(f"Cannot write {target}: {_os_reason(exc)}.") from exc
    finally:
        if temp_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp_path)


def json_text(obj: object, what: str = "the JSON output") -> str:
    """The text of a JSON output file: indented, one final newline, and never ``NaN`` or ``Infinity``.

    Raises ``OutputError`` naming the first non-finite number (``json_dumps_strict``).
    """
    return json_dumps_strict(obj, what=what, indent=2) + "\n"


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether writing ``b`` would replace the file ``a`` names (or the file ``a`` would become), and vice versa.

    Both existing: ``os.path.samefile`` (device and inode), so symbolic and hard links to one file are the same.
    Otherwise the paths are compared after resolving links and relative parts (``./x``, ``d/../x``): the folders
    by identity where they exist, the names exactly, or ignoring case (and Unicode normalisation) where the folder
    is on a case-insensitive file system (macOS and Windows defaults), since ``X.svg`` and ``x.svg`` would then
    be one file.
    """
    path_a, path_b = os.fspath(a), os.fspath(b)
    with contextlib.suppress(OSError, ValueError):  # ValueError: a NUL byte in a path
        if os.path.exists(path_a) and os.path.exists(path_b):
            return os.path.samefile(path_a, path_b)
    try:
        real_a, real_b = os.path.realpath(path_a), os.path.realpath(path_b)
    except ValueError:  # a NUL byte: no such file can exist, so only the spelling can match
        return os.path.abspath(path_a) == os.path.abspath(path_b)
    if os.path.normcase(real_a) == os.path.normcase(real_b):
        return True
    (folder_a, name_a), (folder_b, name_b) = os.path.split(real_a), os.path.split(real_b)
    try:
        if not os.path.samefile(folder_a, folder_b):
            return False
    except (OSError, ValueError):
        return False  # a folder that does not exist: the resolved paths (compared above) differ
    if name_a == name_b:
        return True  # one folder reached through two spellings (a bind mount, a case-insensitive folder name)
    return _case_insensitive(folder_a) and _fold(name_a) == _fold(name_b)


def _fold(name: str) -> str:
    # APFS and HFS+ also match names that differ only in Unicode normalisation (é as one or two code points).
    return unicodedata.normalize("NFC", name).casefold()


def _case_insensitive(folder: str) -> bool:
    """Whether names in ``folder`` match regardless of case; decided without writing anything.

    A cased name (its first cased entry, else the folder's own name) is looked up with its case swapped. Where no such
    name exists the platform's default is assumed: insensitive on macOS and Windows, sensitive elsewhere.
    """
    probes = []
    # An entry of the folder first: it lives on the folder's own file system, which the folder's name (an entry of
    # the parent) may not, at a mount point.
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name != entry.name.swapcase():
                probes.append((folder, entry.name))
                break
    parent, own = os.path.split(folder)
    if own:
        probes.append((parent, own))
    for where, name in probes:
        if name == name.swapcase():
            continue
        original, swapped = os.path.join(where, name), os.path.join(where, name.swapcase())
        try:
            return os.path.samefile(original, swapped)
        except OSError:
            return False  # the swapped name does not exist, so case matters here
    return sys.platform in ("darwin", "win32")


def _target_mode(target: str) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        # The umask can only be read by setting it; this runs once per output file.
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable where the OS allows opening a folder (POSIX; not Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the data itself is already on disk
    finally:
        os.close(fd)


def _os_reason(exc: OSError) -> str:
    reasons = {
        errno.EACCES: "permission denied; choose a folder you can write to",
        errno.EPERM: "permission denied; choose a folder you can write to",
        errno.ENOSPC: "the disk is full; free some space",
        errno.EROFS: "the file system is read-only; choose another folder",
        errno.ENOENT: "the folder does not exist; create it first",
    }
    return reasons.get(exc.errno or -1, f"{exc.strerror or exc}; check the path and try again")


__all__ = ["json_text", "same_file", "write_atomic"]

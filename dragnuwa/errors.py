"""User-facing errors and atomic file output.

Every error a user can cause (bad file, bad JSON, bad option) is raised as
``UserError``; the CLI turns it into one line on stderr and exit code 2.
Every file the project writes goes through ``atomic_path`` so a failure never
leaves a half-written file or destroys one that was already there; what a killed run left
(a kill cannot be caught) is removed by the next run that writes to that folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterator


class UserError(Exception):
    """Bad input the user can fix. The message is one line and names the problem."""


def check_output(path: str | os.PathLike, folder: bool = False, what: str = "output") -> None:
    """Refuse (``UserError``) an output file (or, with ``folder``, an output folder) that cannot be
    created: an existing entry of the other kind, a file where a parent folder should be, or a
    read-only folder. Commands call it before their work, so nothing is computed for nothing."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"{what} {path} is an existing {'file' if folder else 'folder'}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {path}: the folder {parent} is not writable")


# When this run began writing (nothing is written before this module loads). psutil's process start
# time is no better: it rests on the boot time in whole seconds.
_RUN_START = time.time()
# atomic_path's temporary names: ".<stem>.tmp.<pid>.<8 chars of mkstemp><suffix>" (older ones lack the pid).
_TMP_NAME = re.compile(r"^\..+\.tmp\.(?:(\d+)\.)?[a-z0-9_]{8}(?:\.[A-Za-z0-9]+)?$")
_swept: set[str] = set()


def sweep_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove, silently, the temporary files ``atomic_path`` left in ``folder`` when a run was killed
    mid-write (a kill cannot be caught): files of its naming pattern, older than this run's start,
    whose writing process is gone. Once per folder per run; returns what it removed."""
    key = os.path.realpath(folder)
    if key in _swept:
        return []
    _swept.add(key)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        m = _TMP_NAME.match(entry.name)
        if not m:
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_mtime >= _RUN_START:
                continue
            if m.group(1) and _alive(int(m.group(1))):
                continue  # another run, still writing (started before this one)
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        import psutil

        return psutil.pid_exists(pid)
    except Exception:
        return True  # cannot tell: keep the file


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file keeps the suffix of ``path`` (encoders such as PyAV pick
    the container from it). On any exception the temporary file is removed and
    an existing ``path`` is left untouched.
    """
    path = Path(path)
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp.{os.getpid()}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 (and some writers replace the file, e.g. safetensors); give the final
        # file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))

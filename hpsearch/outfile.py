"""Output files (exports, checkpoints): checked before the work, written whole or not at all.

A file is written to a temporary name in its own directory and renamed over the target, so a
reader (or a crash) never sees half of it. Two kinds of target are not replaced: a symbolic
link is followed and the file it points to is replaced (the link stays), and a target that
exists but is no regular file (``/dev/stdout``, a FIFO, a terminal) is written through, since
there is nothing to rename over and replacing a device would need root and break the system.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from hpsearch.errors import UsageError


def check_writable(path: Path) -> None:
    """Raise UsageError now if ``path`` could not be written later (before hours of work)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give the name of a file in it")
    target = _target(path)
    if target.exists() and not target.is_file():
        if not os.access(target, os.W_OK):
            raise UsageError(f"{path}: cannot write: permission denied")
        return
    ancestor = target.parent
    while not ancestor.exists():  # missing directories are created when the file is written
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{path}: cannot write: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: cannot write in {ancestor}: permission denied")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see the module docstring."""

    def write(target: Path) -> None:
        with open(target, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)

    write_with(path, write)


def write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a temporary file, then rename it to ``path`` (or write through a
    device). OS errors become one UsageError naming ``path``; no temporary file is left."""
    path = Path(path)
    check_writable(path)
    target = _target(path)
    if target.exists() and not target.is_file():
        try:
            write(target)
        except OSError as exc:
            raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None
        return
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        # mkstemp makes the file private (0o600); the output gets what open() would give it.
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, target)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _target(path: Path) -> Path:
    """The file to replace: a symbolic link's destination (even a dangling one), else path.
    A link to something that is no regular file (``/dev/stdout``) is written through as is."""
    if path.is_symlink() and not (path.exists() and not path.is_file()):
        return Path(os.path.realpath(path))
    return path


def umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere it can only be read by setting
    it, which other threads could see for an instant (so the placeholder is the strict 0o077)."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask

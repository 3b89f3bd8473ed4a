"""Output files: atomic replacement, links followed, devices and FIFOs written through,
unwritable targets refused before any work."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from hpsearch import files as outfile
from hpsearch.errors import UsageError


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def test_a_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "new" / "best.json"  # missing directories are created
    outfile.write_text(path, "one\n")
    outfile.write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert _leftovers(path.parent) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_text("old")

    def fail(target: Path) -> None:
        target.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(UsageError, match=r"ckpt.pt: cannot write: No space left on device"):
        outfile.write_with(path, fail)
    assert path.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_a_link_is_followed_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    outfile.write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "made.json")
    outfile.write_text(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "made.json").read_text() == "made"


def test_a_fifo_is_written_through_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    outfile.write_text(fifo, "through\n")
    reader.join(timeout=10)
    assert received == ["through\n"]
    assert fifo.is_fifo()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d, "is a directory; give the name of a file in it"),
        (lambda d: d / "file" / "x.json", "cannot write: {d}/file is a file, not a directory"),
    ],
)
def test_unwritable_targets_are_refused_up_front(
    tmp_path: Path, make: Callable[[Path], Path], expected: str
) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError) as exc:
        outfile.check_writable(make(tmp_path))
    assert expected.format(d=tmp_path) in str(exc.value)

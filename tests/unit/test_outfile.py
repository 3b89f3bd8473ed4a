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
    path = tmp_path / "best.json"
    outfile.write_text(path, "one\n")
    outfile.write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert _leftovers(path.parent) == []


@pytest.mark.parametrize("write", [outfile.check_writable, lambda p: outfile.write_text(p, "x")])
def test_a_missing_directory_is_refused_and_not_created(
    tmp_path: Path, write: Callable[[Path], None]
) -> None:
    # An output's directory must exist, as a SQLite database's must: a typo in -o or --save
    # used to make a new directory tree.
    path = tmp_path / "typo" / "deeper" / "best.json"
    with pytest.raises(UsageError) as info:
        write(path)
    assert str(info.value) == (
        f"{path}: cannot write: directory {path.parent} does not exist (create it first)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_new_directory_is_removed_when_its_command_fails(tmp_path: Path) -> None:
    refused = pytest.raises(UsageError, match=r"typo/out: cannot create the report directory: ")
    with refused, outfile.new_directory(tmp_path / "typo" / "out", what="report directory"):
        raise AssertionError("not reached")
    failed = pytest.raises(RuntimeError)
    with failed, outfile.new_directory(tmp_path / "a" / "b", parents=True) as made:
        assert made.is_dir()
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    with outfile.new_directory(tmp_path / "kept") as made:
        (made / "file").write_text("x")
    assert (tmp_path / "kept" / "file").is_file()


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

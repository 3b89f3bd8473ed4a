"""TREC-6 downloads from a local HTTP server: verified, saved whole, or a data error. The
loading, split and vocabulary are in tests/unit/test_data.py."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hpsearch import files as outfile
from hpsearch.config import TrainConfig
from hpsearch.errors import DataError
from hpsearch.training._data import (
    SHA256,
    TEST_FILE,
    TRAIN_FILE,
    ensure_data,
)
from hpsearch.training._datasets import load_dataset


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """Serve a directory over local HTTP and point HPSEARCH_TREC_URL at it."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("HPSEARCH_TREC_URL", f"http://127.0.0.1:{server.server_port}/qc")

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _mirror(tmp_path: Path, trec_dir: Path, corrupt: str | None = None) -> Path:
    root = tmp_path / "mirror"
    (root / "qc").mkdir(parents=True)
    for name in SHA256:
        content = (trec_dir / name).read_bytes()
        if name == corrupt:
            content = content.replace(b"NUM:", b"LOC:", 1)
        (root / "qc" / name).write_bytes(content)
    return root


def test_download_verifies_and_saves(
    serve: Callable[[Path], None], tmp_path: Path, trec_dir: Path
) -> None:
    serve(_mirror(tmp_path, trec_dir))
    target = tmp_path / "trec"  # made: its parent exists
    assert ensure_data(target) == target
    assert sorted(p.name for p in target.iterdir()) == sorted(SHA256)
    for name in SHA256:
        assert (target / name).read_bytes() == (trec_dir / name).read_bytes()
        # What open() would give it, not mkstemp's private 0o600: a shared data directory.
        assert (target / name).stat().st_mode & 0o777 == 0o666 & ~outfile.umask()
    assert ensure_data(target, download=False) == target
    ds = load_dataset(TrainConfig(), target)
    assert len(ds.train) == 4362


def test_download_with_wrong_checksum_leaves_nothing(
    serve: Callable[[Path], None], tmp_path: Path, trec_dir: Path
) -> None:
    serve(_mirror(tmp_path, trec_dir, corrupt=TEST_FILE))
    target = tmp_path / "trec"
    with pytest.raises(DataError) as info:
        ensure_data(target)
    message = str(info.value)
    assert TEST_FILE in message and SHA256[TEST_FILE] in message
    assert f"/qc/{TEST_FILE}" in message and "\n" not in message
    # The good file is kept; the bad one and its temporary file are gone.
    assert [p.name for p in target.iterdir()] == [TRAIN_FILE]


def test_download_missing_on_server_is_a_data_error(
    serve: Callable[[Path], None], tmp_path: Path
) -> None:
    (tmp_path / "empty" / "qc").mkdir(parents=True)
    serve(tmp_path / "empty")
    target = tmp_path / "trec"
    with pytest.raises(DataError, match=f"cannot download {TRAIN_FILE} from http://.*404"):
        ensure_data(target)
    assert not target.exists()  # the directory it made is removed with the failure

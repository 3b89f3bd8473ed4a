"""hpsearch.spawn: workers forked from the fork server behave like started ``hpsearch worker``s.

Each test forks real workers (the fork server is started once for this pytest process).
"""

from __future__ import annotations

import importlib.machinery
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from hpsearch import spawn, storage
from hpsearch.cli import app
from hpsearch.errors import UsageError

pytestmark = pytest.mark.skipif(not spawn.forkserver_available(), reason="no fork server")
FORKED = spawn.StartMethod.forkserver  # explicit: the default also depends on __main__

STUDY_YAML = """\
name: forked
config: {cell: rnn, hidden_dim: 8, embedding_dim: 8, batch_size: 256}
space:
  lr: {low: 1.0e-3, high: 1.0e-2, log: true}
budget: {trials: 1, epochs: 400}
"""


def _env(trec_dir: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    return env | {"HPSEARCH_DATA_DIR": str(trec_dir), "HPSEARCH_STORAGE": url}


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def _study_file(tmp_path: Path) -> Path:
    path = tmp_path / "forked.yaml"
    path.write_text(STUDY_YAML)
    return path


def _no_socket(*args: object, **kwargs: object) -> None:
    raise OSError(24, "Too many open files")  # the fork server cannot be reached


def _stderr(worker: spawn.WorkerHandle) -> str:
    assert worker.stderr is not None
    return worker.stderr.read().decode()


def test_a_forked_worker_reports_usage_errors_like_the_cli(
    tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bad.yaml").write_text("name: bad\nspace: {lr: {low: 0.1, high: 0.01}}\n")
    monkeypatch.chdir(tmp_path)  # a relative path resolves against the launcher's directory
    url = _url(tmp_path)
    worker = spawn.start_worker(["--study", "bad.yaml"], _env(trec_dir, url), FORKED)
    assert isinstance(worker, spawn.ForkedWorker)
    err = _stderr(worker)
    assert worker.wait(timeout=60) == 2, err
    assert worker.returncode == 2
    assert "bad.yaml: space.lr: low (0.1) must be < high (0.01)" in err
    assert not (tmp_path / "db.sqlite").exists()  # nothing written


def test_a_forked_worker_trains_shows_its_name_and_stops_on_sigint(
    tmp_path: Path, trec_dir: Path
) -> None:
    path = _study_file(tmp_path)
    url = _url(tmp_path)
    args = ["--study", str(path), "--worker-id", "fw1", "--threads", "1"]
    worker = spawn.start_worker(args, _env(trec_dir, url), FORKED)
    try:
        deadline = time.monotonic() + 90
        running: list[optuna.trial.FrozenTrial] = []
        while not running and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
            try:
                # Through hpsearch's storage, which takes the schema-creation lock: Optuna's
                # own would race the worker creating the tables (a duplicate alembic_version).
                study = optuna.load_study(
                    study_name="forked", storage=storage.open_storage(url, heartbeat=False)
                )
            except KeyError:  # not created yet
                continue
            running = [t for t in study.trials if t.intermediate_values]
        assert running, "the forked worker never reported an epoch"
        assert running[0].user_attrs["worker"] == "fw1"
        title = Path(f"/proc/{worker.pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
        assert title[:4] == [b"hpsearch", b"worker", b"--study", str(path).encode()]
        with pytest.raises(subprocess.TimeoutExpired):
            worker.wait(timeout=0.01)

        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=30) == 130
        assert "fw1: interrupted" in _stderr(worker)
        (trial,) = optuna.load_study(study_name="forked", storage=url).trials
        assert trial.state == optuna.trial.TrialState.FAIL  # no trial left RUNNING
        worker.send_signal(signal.SIGINT)  # an exited worker: nothing to signal, no error
    finally:
        worker.kill()
        worker.wait(timeout=30)


def test_a_killed_forked_worker_reports_the_signal(tmp_path: Path, trec_dir: Path) -> None:
    path = _study_file(tmp_path)
    url = _url(tmp_path)
    worker = spawn.start_worker(["--study", str(path)], _env(trec_dir, url), FORKED)
    worker.kill()
    assert worker.wait(timeout=30) == -signal.SIGKILL  # as subprocess.Popen reports it


def test_start_method_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(spawn.ENV_START, raising=False)
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))  # a REPL
    assert spawn.start_method() is spawn.StartMethod.forkserver
    monkeypatch.setenv(spawn.ENV_START, " Subprocess ")
    assert spawn.start_method() is spawn.StartMethod.subprocess
    monkeypatch.setenv(spawn.ENV_START, "thread")
    with pytest.raises(UsageError, match=r"HPSEARCH_WORKER_START: must be forkserver or "):
        spawn.start_method()


def test_subprocess_start_method_starts_a_fresh_interpreter(tmp_path: Path, trec_dir: Path) -> None:
    url = _url(tmp_path)
    env = _env(trec_dir, url)
    worker = spawn.start_worker(["--study", "missing.yaml"], env, spawn.StartMethod.subprocess)
    assert isinstance(worker, subprocess.Popen)
    err = _stderr(worker)
    assert worker.wait(timeout=60) == 2
    assert "missing.yaml: study file not found" in err


def test_a_bad_start_method_stops_run_before_anything_is_written(
    tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _study_file(tmp_path)
    db = tmp_path / "db.sqlite"
    monkeypatch.setenv(spawn.ENV_START, "thread")
    args = ["run", "-s", str(path), "--storage", f"sqlite:///{db}", "--data-dir", str(trec_dir)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "HPSEARCH_WORKER_START: must be forkserver or subprocess, got 'thread'" in result.output
    assert not db.exists()


def test_workers_start_as_subprocesses_when_the_fork_server_cannot_start(
    tmp_path: Path,
    trec_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(spawn, "_fallback_reason", None)
    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", _no_socket)
    spawn.warm_up(spawn.StartMethod.forkserver)
    assert "Too many open files" in caplog.text
    url = _url(tmp_path)
    worker = spawn.start_worker(["--study", "missing.yaml"], _env(trec_dir, url), FORKED)
    assert isinstance(worker, subprocess.Popen)
    assert worker.wait(timeout=60) == 2
    assert "missing.yaml: study file not found" in _stderr(worker)
    assert caplog.text.count("cannot use a fork server") == 1


def test_a_worker_that_cannot_be_forked_starts_as_a_subprocess(
    tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spawn, "_fallback_reason", None)
    monkeypatch.setattr(multiprocessing.forkserver, "connect_to_new_process", _no_socket)
    pipes: list[tuple[int, int]] = []
    closed: list[int] = []
    real_pipe, real_close = os.pipe, os.close

    def pipe() -> tuple[int, int]:
        pipes.append(real_pipe())
        return pipes[-1]

    def close(fd: int) -> None:
        closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(os, "pipe", pipe)
    monkeypatch.setattr(os, "close", close)
    url = _url(tmp_path)
    worker = spawn.start_worker(["--study", "missing.yaml"], _env(trec_dir, url), FORKED)
    monkeypatch.undo()
    assert isinstance(worker, subprocess.Popen)
    assert worker.wait(timeout=60) == 2
    assert "missing.yaml: study file not found" in _stderr(worker)
    assert set(pipes[0]) <= set(closed)  # the failed fork's stderr pipe: both ends closed


def test_a_script_that_could_run_again_in_every_worker_gets_subprocesses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hpsearch import cli

    monkeypatch.delenv(spawn.ENV_START, raising=False)
    script = types.ModuleType("__main__")
    script.__file__ = "/home/user/sweep.py"  # run by path: multiprocessing would re-run it
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert spawn.start_method() is spawn.StartMethod.subprocess
    script.main = cli.main  # type: ignore[attr-defined]  # pip's `hpsearch` script
    assert spawn.start_method() is spawn.StartMethod.forkserver
    package_main = types.ModuleType("__main__")
    package_main.__spec__ = importlib.machinery.ModuleSpec("hpsearch.__main__", None)
    monkeypatch.setitem(sys.modules, "__main__", package_main)
    assert spawn.start_method() is spawn.StartMethod.forkserver  # python -m hpsearch
    package_main.__spec__ = importlib.machinery.ModuleSpec("tools.sweep", None)
    assert spawn.start_method() is spawn.StartMethod.subprocess  # python -m tools.sweep
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    assert spawn.start_method() is spawn.StartMethod.forkserver  # a notebook, a REPL
    monkeypatch.setenv(spawn.ENV_START, "forkserver")
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert spawn.start_method() is spawn.StartMethod.forkserver  # asked for explicitly

"""Malformed input: every mistake is one line on stderr naming the file, field and value and
what is allowed, exit status 2, and nothing written to the database."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from typer.testing import Result

from hpsearch import files, search, storage
from hpsearch import study as studyfile
from tests.helpers.hostile_input import (
    BASE,
    PASSWORD,
    SQLITE,
    edit,
    invoke,
    no_database,
    one_line_error,
    write,
)

pytestmark = pytest.mark.usefixtures("workdir")

SPEC_CASES = {
    "yaml syntax": (
        edit("threads: 1}", "threads: 1"),
        ["study.yaml: invalid YAML at line 3: expected ',' or '}', but got ':'"],
    ),
    "unknown key": (
        edit("space:", "sapce:"),
        ["study.yaml: sapce: unknown key; allowed: name,", "(did you mean 'space'?)"],
    ),
    "wrong type": (
        edit("hidden_dim: 8", "hidden_dim: eight"),
        ["study.yaml: config.hidden_dim: expected an integer, got 'eight'"],
    ),
    "low >= high": (
        edit("low: 1.0e-3", "low: 1.0e-1"),
        ["study.yaml: space.lr: low (0.1) must be < high (0.01)"],
    ),
    "log with low <= 0": (
        edit("low: 1.0e-3", "low: 0.0"),
        ["study.yaml: space.lr.low: log scale needs low > 0, got 0.0"],
    ),
    "empty choices": (
        edit("space:\n", "space:\n  cell: {choices: []}\n"),
        ["study.yaml: space.cell.choices: expected a non-empty list, got []"],
    ),
    "unknown sampler": (
        edit("name: random", "name: randon"),
        ["study.yaml: sampler.name: unknown sampler 'randon'; allowed: tpe,", "'random'?)"],
    ),
    "unknown pruner": (
        edit("pruner: none", "pruner: medain"),
        ["study.yaml: pruner.name: unknown pruner 'medain'; allowed: median,", "'median'?)"],
    ),
    "unknown optimizer": (
        edit("threads: 1}", "threads: 1, optimizer: adamm}"),
        [
            "study.yaml: config.optimizer: 'adamm' is not one of sgd, adam,",
            "(did you mean 'adam'?)",
        ],
    ),
    "unknown cell": (
        edit("space:\n", "space:\n  cell: {choices: [rnn, gruu]}\n"),
        ["study.yaml: space.cell.choices: 'gruu' is not one of rnn, gru, lstm", "'gru'?)"],
    ),
    "no trials": (
        edit("trials: 2", "trials: 0"),
        ["study.yaml: budget.trials: must be >= 1, got 0"],
    ),
    "empty file": ("", ["study.yaml: the file is empty; a study needs at least a space:"]),
    "repeated key": (
        BASE + "space:\n  dropout: {low: 0.0, high: 0.5}\n",
        ["study.yaml: invalid YAML at line 8: found duplicate key 'space' (first at line 3)"],
    ),
    "negative split seed": (
        edit("threads: 1}", "threads: 1, split_seed: -3}"),
        ["study.yaml: config.split_seed: must be in [0, 2**63 - 1], got -3"],
    ),
    "size past any machine": (
        edit("space:\n", "space:\n  head_hidden_dim: {low: 8, high: 99999999999999999999}\n"),
        ["study.yaml: space.head_hidden_dim.high: must be in [1, 65536], got 9999999999"],
    ),
    "device this machine lacks": (  # no Linux machine has Apple's MPS
        edit("threads: 1}", "threads: 1, device: mps}"),
        ["study.yaml: config.device: 'mps' is not available on this machine; use auto or cpu"],
    ),
    "searched device this machine lacks": (
        edit("space:\n", "space:\n  device: {choices: [cpu, mps]}\n"),
        ["study.yaml: space.device.choices[1]: 'mps' is not available on this machine"],
    ),
    "sampler seed past numpy's": (
        edit("seed: 0}", "seed: 4294967296}"),
        ["study.yaml: sampler.seed: must be <= 2**32 - 1, got 4294967296"],
    ),
    # An OverflowError traceback: the step count was infinite and could not be rounded.
    "step too fine": (
        edit("log: true}", "step: 1.0e-320}"),
        ["study.yaml: space.lr.step: 1e-320 divides [0.001, 0.01] into over 1e+09 steps"],
    ),
    "infinite step": (
        edit("log: true}", "step: .inf}"),
        ["study.yaml: space.lr.step: must be a finite number > 0, got inf"],
    ),
    "infinite timeout": (
        edit("epochs: 1}", "epochs: 1, timeout: .inf}"),
        ["study.yaml: budget.timeout: must be a finite number of seconds > 0 (or null), got inf"],
    ),
    "grid over a continuous range": (
        edit("name: random", "name: grid"),
        ["study.yaml: space.lr: grid needs choices or step for lr"],
    ),
}


@pytest.mark.parametrize(("text", "expected"), SPEC_CASES.values(), ids=SPEC_CASES.keys())
def test_malformed_study_file(workdir: Path, text: str, expected: list[str]) -> None:
    path = write(workdir / "study.yaml", text)
    line = one_line_error(invoke("run", "-s", path, "--storage", SQLITE))
    for fragment in expected:
        assert fragment in line
    no_database(workdir)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--trials", "0", "--trials: must be >= 1, got 0"),
        ("--timeout", "-5", "--timeout: must be a finite number of seconds > 0, got -5.0"),
        # "must be > 0 seconds, got inf": infinity is > 0; what is wrong is that it is not finite.
        ("--timeout", "inf", "--timeout: must be a finite number of seconds > 0, got inf"),
        ("--timeout", "nan", "--timeout: must be a finite number of seconds > 0, got nan"),
        ("--workers", "0", "--workers: must be >= 1, got 0"),
    ],
)
def test_run_options_out_of_range(workdir: Path, option: str, value: str, expected: str) -> None:
    path = write(workdir / "study.yaml", BASE)
    line = one_line_error(invoke("run", "-s", path, option, value, "--storage", SQLITE))
    assert expected in line
    no_database(workdir)


@pytest.mark.parametrize(
    ("name", "value"), [("HPSEARCH_HEARTBEAT_INTERVAL", "abc"), ("HPSEARCH_GRACE_PERIOD", "-5")]
)
def test_bad_worker_settings_fail_before_the_study_exists(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    # `run` used to create the study and start workers that each exited on the setting.
    monkeypatch.setenv(name, value)
    path = write(workdir / "study.yaml", BASE)
    line = one_line_error(invoke("run", "-s", path, "--storage", SQLITE))
    assert f"{name} ({value!r})" in line
    no_database(workdir)


URL_CASES = {
    "malformed": (
        f"postgresql://hp:{PASSWORD}@db.example:notaport/hp",
        ["storage URL 'postgresql://hp:***@db.example:notaport/hp' is malformed"],
    ),
    "unsupported dialect": (
        f"oracle://hp:{PASSWORD}@db.example/hp",
        ["unsupported database 'oracle'; expected one of: sqlite:///"],
    ),
    "unsupported driver": (
        "postgresql+asyncpg://hp@db.example/hp",
        ["unsupported driver 'asyncpg'; allowed: postgresql+psycopg, postgresql+psycopg2"],
    ),
    "missing directory": (
        "sqlite:///no/such/dir/study.db",
        ["sqlite:///no/such/dir/study.db: directory", "does not exist"],
    ),
}


@pytest.mark.parametrize(("url", "expected"), URL_CASES.values(), ids=URL_CASES.keys())
def test_bad_storage_url(workdir: Path, url: str, expected: list[str]) -> None:
    path = write(workdir / "study.yaml", BASE)
    line = one_line_error(invoke("run", "-s", path, "--storage", url))
    for fragment in expected:
        assert fragment in line
    assert PASSWORD not in line


# --- data and embeddings ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "worker"])
def test_missing_data_directory_without_network(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    # `worker` used to create the study and fail a budget's worth of trials, which then
    # stopped every correctly set-up worker of the study as well.
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(workdir / "nonexistent"))
    path = write(workdir / "study.yaml", BASE)
    line = one_line_error(invoke(command, "-s", path, "--storage", SQLITE))
    assert "cannot download train_5500.label from http://127.0.0.1:" in line
    assert "HPSEARCH_TREC_URL" in line
    no_database(workdir)


@pytest.mark.parametrize("command", ["run", "worker"])
def test_corrupt_data_file(
    workdir: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    data = workdir / "trec"
    shutil.copytree(trec_dir, data)
    train = data / "train_5500.label"
    train.write_bytes(train.read_bytes()[:-100])  # truncated
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(data))
    path = write(workdir / "study.yaml", BASE)
    line = one_line_error(invoke(command, "-s", path, "--storage", SQLITE))
    assert f"{train}: sha256 " in line and "does not match the official" in line
    no_database(workdir)


def _vectors_study(workdir: Path, vectors: Path) -> Path:
    return write(
        workdir / "study.yaml", edit("threads: 1}", f"threads: 1, embeddings: {vectors}}}")
    )


@pytest.mark.parametrize("command", ["run", "worker"])
def test_missing_embeddings_file(workdir: Path, command: str) -> None:
    path = _vectors_study(workdir, workdir / "missing.txt")
    line = one_line_error(invoke(command, "-s", path, "--storage", SQLITE))
    assert line == f"error: embeddings: {workdir / 'missing.txt'}: file not found"
    no_database(workdir)


def test_corrupt_embeddings_file(workdir: Path) -> None:
    vectors = write(workdir / "vectors.txt", "the 0.1 0.2 zero\nof 0.3\n")
    line = one_line_error(
        invoke("run", "-s", _vectors_study(workdir, vectors), "--storage", SQLITE)
    )
    assert line == (
        f"error: {vectors}: line 1: 'the' has 'zero'; vector values must be finite numbers "
        "within ±3.4e38 (float32)"
    )
    no_database(workdir)


def test_embeddings_of_the_wrong_size(workdir: Path) -> None:
    vectors = write(workdir / "vectors.txt", "the 0.1 0.2 0.3\nof 0.3 0.2 0.1\n")
    line = one_line_error(
        invoke("run", "-s", _vectors_study(workdir, vectors), "--storage", SQLITE)
    )
    assert line == (
        f"error: {workdir / 'study.yaml'}: config.embedding_dim: 8 must equal the size of the "
        f"{str(vectors)!r} vectors (3); set embedding_dim: 3"
    )
    no_database(workdir)


def test_a_searched_embedding_size_the_vectors_lack(workdir: Path) -> None:
    vectors = write(workdir / "vectors.txt", "the 0.1 0.2 0.3\nof 0.3 0.2 0.1\n")
    base = BASE.replace("hidden_dim: 8, embedding_dim: 8,", "hidden_dim: 8,")

    def study(config: str, space: str) -> Path:
        text = base.replace("threads: 1}", f"threads: 1{config}}}")
        return write(workdir / "study.yaml", text.replace("space:\n", f"space:\n{space}"))

    path = study(f", embeddings: {vectors}", "  embedding_dim: {choices: [3, 8]}\n")
    line = one_line_error(invoke("run", "-s", path, "--storage", SQLITE))
    assert line.startswith(
        f'error: {path}: space: a trial can draw {{"embedding_dim": 8}}, but the '
        f"{str(vectors)!r} vectors have 3 dimensions"
    )
    no_database(workdir)
    # A size searched only with random vectors, the default size (100) otherwise: fine with
    # 100-d vectors, not with the 3-d ones.
    searched = "  embeddings: {{choices: [null, {}]}}\n"
    conditional = "  embedding_dim: {choices: [4, 8], when: {embeddings: null}}\n"
    wide = write(workdir / "wide.txt", "the " + " ".join(["0.5"] * 100) + "\n")
    search.check_inputs(studyfile.load_study(study("", searched.format(wide) + conditional)))
    path = study("", searched.format(vectors) + conditional)
    line = one_line_error(invoke("run", "-s", path, "--storage", SQLITE))
    assert f'a trial can draw {{"embeddings": "{vectors}"}}, but' in line
    no_database(workdir)


# --- an existing study -----------------------------------------------------------------------


def test_existing_study_with_a_different_spec(workdir: Path) -> None:
    path = write(workdir / "study.yaml", BASE)
    url = f"sqlite:///{workdir / 'study.db'}"
    original = studyfile.load_study(path)
    search.open_study(original, url, heartbeat=False)
    write(path, edit("high: 1.0e-2", "high: 1.0e-1"))

    line = one_line_error(invoke("run", "-s", path, "--storage", url))
    assert line.startswith(
        "error: study 'bad' exists with a different spec: space.lr.high: 0.01 -> 0.1."
    )
    assert "--force" in line
    study = optuna.load_study(study_name="bad", storage=storage.open_storage(url, heartbeat=False))
    assert study.user_attrs[search.SPEC_ATTR] == original.to_dict()
    assert study.get_trials() == []


# --- a path that is no regular file --------------------------------------------------------


@pytest.fixture
def fifo(workdir: Path) -> Iterator[Path]:
    """A FIFO with no writer: opening it to read would wait for one for ever. A thread opens
    it for writing after the test, so that a reader stuck in open() comes back."""
    path = workdir / "fifo.yaml"
    os.mkfifo(path)
    yield path
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def _within(seconds: float, call: Callable[[], Result]) -> Result:
    """``call``'s result, failing (not hanging) if it blocks longer than ``seconds``."""
    results: list[Result] = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert results, f"still blocked after {seconds} s"
    return results[0]


@pytest.mark.parametrize("kind", ["directory", "FIFO", "character device"])
@pytest.mark.parametrize("command", ["run", "train"])
def test_a_path_that_is_no_regular_file_says_so(
    workdir: Path, fifo: Path, kind: str, command: str
) -> None:
    # A study file that was a directory, a FIFO or /dev/zero was "study file not found";
    # --config on a FIFO waited for a writer for ever, and on /dev/zero read it for ever.
    path = {"directory": workdir, "FIFO": fifo, "character device": Path("/dev/null")}[kind]
    option = "--study" if command == "run" else "--config"
    extra = ["--storage", SQLITE] if command == "run" else []
    line = one_line_error(_within(30, lambda: invoke(command, option, path, *extra)))
    assert line.startswith(f"error: {path}: a {kind}, not a regular file; expected a YAML")
    no_database(workdir)


def test_an_oversized_study_file_is_refused_unread(workdir: Path) -> None:
    path = workdir / "big.yaml"
    with path.open("wb") as handle:  # sparse: no disk used
        handle.truncate(files.MAX_INPUT_BYTES + 1)
    line = one_line_error(invoke("run", "-s", path, "--storage", SQLITE))
    assert line == f"error: {path}: larger than 16 MB; expected a YAML or JSON study file"

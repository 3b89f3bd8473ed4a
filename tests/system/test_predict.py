"""A searched model in use, end to end: `run` stores the best trials' models, the dashboard
lists them and serves the file, `predict --study` classifies new text with the best one
without retraining, `export --model` writes it, and `hpsearch.load_model` loads it in Python."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from typer.testing import CliRunner

import hpsearch
from hpsearch import artifacts, predict
from hpsearch import storage as storage_mod
from hpsearch.cli import _dashboard as dashboard
from tests.helpers.cli import invoke

STUDY = (
    "name: tiny\n"
    "config: {pooling: mean, regularizer: none, hidden_dim: 8, embedding_dim: 8,"
    " batch_size: 256}\n"
    "space:\n"
    "  lr: {choices: [1.0e-2, 3.0e-2]}\n"
    "budget: {trials: 3, epochs: 2}\n"
    "enqueue: [{lr: 3.0e-2}, {lr: 1.0e-2}, {lr: 3.0e-2}]\n"
)
QUESTIONS = ["Who wrote Hamlet ?", "How many people live in Tokyo ?", "What is a cat ?"]


def _get(app: Any, path: str) -> tuple[str, bytes]:
    environ: dict[str, Any] = {"PATH_INFO": path, "wsgi.input": io.BytesIO()}
    if "?" in path:
        environ["PATH_INFO"], environ["QUERY_STRING"] = path.split("?", 1)
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
    return status[0], body


def test_run_then_dashboard_predict_export_and_load_model(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPSEARCH_KEEP_MODELS", "2")
    Path("study.yaml").write_text(STUDY)
    result = invoke(cli, "run", "--study", "study.yaml", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert len(list(Path("hpsearch.artifacts").iterdir())) == 2  # the best two of three

    # The dashboard lists each kept model with its trial and serves the file.
    app = dashboard.make_app("sqlite:///hpsearch.db")
    status, body = _get(app, "/api/studies/1?after=0")
    assert status == "200 OK"
    listed = {t["number"]: t["artifacts"] for t in json.loads(body)["trials"]}
    assert sorted(len(a) for a in listed.values()) == [0, 1, 1]
    number, (artifact,) = next((n, a) for n, a in listed.items() if a)
    assert artifact["filename"] == f"model-trial-{number}.pt"
    trial_id = number + 1  # the study's only trials, in order
    status, served = _get(app, f"/artifacts/1/{trial_id}/{artifact['artifact_id']}")
    assert status == "200 OK" and served[:2] == b"PK"  # torch.save's zip

    Path("q.txt").write_text("\n".join(QUESTIONS) + "\n")
    result = invoke(cli, "predict", "--study", "tiny", "q.txt", "--format", "jsonl", "--top", "2")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == QUESTIONS

    result = invoke(cli, "export", "--study", "tiny", "--model", "best.pt")
    assert result.exit_code == 0, result.output
    from_file = hpsearch.load_model("best.pt")
    from_study = hpsearch.load_model("tiny", storage="sqlite:///hpsearch.db")
    assert from_study.predict(QUESTIONS) == from_file.predict(QUESTIONS)
    assert from_study.predict(QUESTIONS) == [r["label"] for r in records]
    assert from_study.classes == ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
    assert from_study.config.hidden_dim == 8
    exported = json.loads(invoke(cli, "export", "--study", "tiny").stdout)
    assert from_study.config.lr == exported["config"]["lr"]  # the best trial's model


def test_predict_study_without_a_store_says_where_to_look(cli: CliRunner) -> None:
    result = invoke(
        cli, "predict", "--study", "x", "--storage", "postgresql+psycopg://u@127.0.0.1:1/db"
    )
    assert result.exit_code == 2
    assert "give --artifacts (or HPSEARCH_ARTIFACTS)" in result.stderr


def test_importing_hpsearch_does_not_import_torch() -> None:
    code = "import sys, hpsearch; assert 'torch' not in sys.modules; hpsearch.load_model"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


KILLED_MID_UPLOAD = textwrap.dedent(
    """
    import os, shutil, signal, sys
    from pathlib import Path
    import optuna
    from hpsearch import artifacts, storage

    def die_halfway(source, target, *args):
        target.write(source.read(1000))
        target.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    study = optuna.load_study(
        study_name="k", storage=storage.open_storage(sys.argv[1], heartbeat=False)
    )
    store = artifacts.ModelStore(Path(sys.argv[2]))
    shutil.copyfileobj = die_halfway
    trial = study.ask()
    store.keep_if_best(trial, 0.9, lambda path: path.write_bytes(b"m" * 100_000), keep=3)
    """
)


def test_a_worker_killed_mid_upload_leaves_nothing_trusted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    directory = tmp_path / "k.artifacts"
    study = optuna.create_study(
        study_name="k", storage=storage_mod.open_storage(url, heartbeat=False), direction="maximize"
    )
    store = artifacts.ModelStore(directory)
    first = study.ask()
    store.keep_if_best(first, 0.5, lambda path: path.write_bytes(b"first"), keep=3)
    study.tell(first, 0.5)

    proc = subprocess.run(
        [sys.executable, "-c", KILLED_MID_UPLOAD, url, str(directory)], timeout=120
    )
    assert proc.returncode == -9  # SIGKILL, in the middle of writing the file
    names = sorted(p.name for p in directory.iterdir())
    (kept,) = [n for n in names if not n.endswith(".part")]
    assert len(names) == 2 and names[0].startswith(".")  # the half file, under a temp name
    backend = getattr(study._storage, "_backend", study._storage)
    trials = optuna.load_study(study_name="k", storage=backend).trials
    assert [artifacts.stored_model(t) is not None for t in trials] == [True, False]
    _, model, _ = predict.best_stored_model("k", url, directory)
    assert model.artifact_id == kept and model.trial_number == 0
    assert store.fetch(model, tmp_path / "out.pt").read_bytes() == b"first"

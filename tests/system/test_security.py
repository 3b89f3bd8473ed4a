"""The database password never leaves the storage URL: not in console output, logs, process
arguments, exported files or anything stored with the study.

Binding the dashboard to loopback is checked in test_dashboard.py, and the compose file's
private PostgreSQL port and environment-only password in test_compose.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus

import optuna
import pytest
import yaml
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from hpsearch import cli
from tests.helpers.security import PASSWORD, QUERY_PASSWORD, leaked


def process_arguments() -> str:
    """Every process's command line on this machine (what `ps` shows every user)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return "\n".join(found)


@pytest.mark.postgres
def test_password_appears_nowhere(tmp_path: Path, trec_dir: Path, postgres_url: str) -> None:
    name = f"security-{uuid.uuid4().hex[:10]}"
    # Trust authentication on the test server accepts any password.
    url = make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=False)
    assert quote(PASSWORD, safe="") in url
    url += f"?application_name=hp-test&password={quote_plus(QUERY_PASSWORD)}"
    masked = make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=True)
    masked += "?application_name=hp-test&password=***"
    study_file = tmp_path / "study.yaml"
    study_file.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "config": {"hidden_dim": 8, "embedding_dim": 8, "batch_size": 256, "threads": 1},
                "space": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}},
                "sampler": {"name": "random", "seed": 0},
                "pruner": "none",
                "budget": {"trials": 3, "epochs": 1},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    env |= {"HPSEARCH_STORAGE": url, "HPSEARCH_DATA_DIR": str(trec_dir)}
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "hpsearch", "--verbose", "run", "-s", str(study_file)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        arguments = []
        while run.poll() is None:  # the workers' arguments, while they exist
            arguments.append(process_arguments())
            time.sleep(0.2)
        output = run.communicate()[0]
        assert run.returncode == 0, output
        assert re.search(rf"{re.escape(os.uname().nodename)}-\d+-w1", output)  # it reported
        assert leaked(output) == []
        assert leaked("\n".join(arguments)) == []

        runner = CliRunner(env={"HPSEARCH_STORAGE": url})
        outputs = [
            runner.invoke(cli.app, ["export", "-s", name, "-o", str(tmp_path / "best.json")]),
            runner.invoke(
                cli.app, ["export", "-s", name, "-f", "csv", "-o", str(tmp_path / "t.csv")]
            ),
            runner.invoke(cli.app, ["export", "-s", name]),
            runner.invoke(cli.app, ["best", "-s", name]),
            runner.invoke(cli.app, ["studies", "--studies-dir", str(tmp_path)]),
            runner.invoke(cli.app, ["report", "-s", name, "-o", str(tmp_path / "report")]),
            runner.invoke(cli.app, ["export", "-s", f"{name}-missing"]),  # an error message
        ]
        codes = [r.exit_code for r in outputs]
        assert codes == [0, 0, 0, 0, 0, 0, 2], [r.output for r in outputs]
        for result in outputs:
            assert leaked(result.output) == []
        assert masked in outputs[-1].output  # the error names the masked URL
        files = [tmp_path / "best.json", tmp_path / "t.csv", *(tmp_path / "report").iterdir()]
        for path in files:
            assert leaked(path.read_bytes().decode(errors="replace")) == [], path
        for path in (tmp_path / "best.json", tmp_path / "report" / "summary.json"):
            assert json.loads(path.read_text())["storage"] == masked

        study = optuna.load_study(study_name=name, storage=postgres_url)
        stored = [study.user_attrs, study._storage.get_study_system_attrs(study._study_id)]
        for trial in study.get_trials():
            stored += [trial.params, trial.user_attrs, trial.system_attrs]
        assert len(study.get_trials()) == 3
        assert leaked(json.dumps(stored, default=str)) == []
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=postgres_url)

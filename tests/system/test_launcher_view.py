"""What ``hpsearch run`` shows as it runs, as people see it: through a real pipe (``| tee``, CI,
``docker compose logs``) and a real pseudo-terminal (a person's terminal, ``script``,
``docker run -t``), at the end of a run and after Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.helpers.terminal import PtyRun, plain

# Two parameters on a model small enough that an epoch takes a fraction of a second.
STUDY_YAML = """\
name: {name}
config: {{cell: rnn, pooling: mean, hidden_dim: 8, embedding_dim: 8, batch_size: 256}}
space:
  lr: {{low: 1.0e-3, high: 3.0e-2, log: true}}
  dropout: {{low: 0.0, high: 0.5}}
sampler: {{name: random, seed: 0}}
pruner: {{name: none}}
budget: {{trials: {trials}, epochs: {epochs}}}
"""
WORKER_LINE = re.compile(r"^\S+-(w[12]) (\d+) trials? run; budget spent$")


def _env(trec_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    return env | {"HPSEARCH_DATA_DIR": str(trec_dir)}


def _command(directory: Path, *, trials: int, epochs: int, name: str = "view") -> list[str]:
    path = directory / f"{name}.yaml"
    path.write_text(STUDY_YAML.format(name=name, trials=trials, epochs=epochs))
    return [sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--workers", "2"]


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory, trec_dir: Path) -> tuple[Path, str]:
    """A run with its output into a pipe, as `hpsearch run ... 2>&1 | tee run.log` gives."""
    directory = tmp_path_factory.mktemp("piped")
    # A narrow COLUMNS: rich wrapped piped output at 80 columns, or at COLUMNS when set.
    proc = subprocess.run(
        _command(directory, trials=4, epochs=3),
        cwd=directory,
        env=_env(trec_dir) | {"COLUMNS": "60"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout
    return directory, proc.stdout


def test_a_piped_run_logs_one_plain_line_per_finished_trial(piped: tuple[Path, str]) -> None:
    _, log = piped
    assert "\x1b" not in log  # no colour, no cursor movement
    lines = log.splitlines()
    trial_lines = [line for line in lines if re.match(r"^\[\d+:\d\d\] trial \d+ ", line)]
    numbers = sorted(int(line.split()[2]) for line in trial_lines)
    assert numbers == [0, 1, 2, 3], log
    for line in trial_lines:  # whole, never wrapped: every field on the trial's line
        assert re.search(
            r"trial \d complete  validation accuracy 0\.\d{4}  epochs 3/3  [\d.]+ s  "
            r"best 0\.\d{4} \(trial \d\)  finished [1-4]/4  ETA \d+:\d\d ± \d+:\d\d$",
            line,
        ), line
    final = r"^\[\d+:\d\d\] finished 4/4  complete 4  pruned 0  failed 0  running 0  best 0\.\d{4}"
    assert any(re.match(final, line) for line in lines), log


def test_a_piped_run_names_each_worker_once_and_ends_with_a_whole_table(
    piped: tuple[Path, str],
) -> None:
    # A worker's line read "vm-1-w2 vm-[1;36m1[0m-w2: [1;36m5[0m trials run" in a terminal.
    _, log = piped
    workers = [m for line in log.splitlines() if (m := WORKER_LINE.match(line))]
    assert sorted(m[1] for m in workers) == ["w1", "w2"], log
    assert sum(int(m[2]) for m in workers) == 4
    rows = [line for line in log.splitlines() if line.startswith("│")]
    assert len(rows) == 4 and all(re.search(r"lr=\S+, dropout=\S+ +│$", r) for r in rows), log


def test_a_piped_report_prints_its_path_on_one_line(
    piped: tuple[Path, str], trec_dir: Path
) -> None:
    directory, _ = piped
    out = directory / ("a-directory-name-long-enough-to-wrap-" * 3) / "report"
    out.parent.mkdir()  # output directories are made only inside one that exists
    proc = subprocess.run(
        [sys.executable, "-m", "hpsearch", "report", "--study", "view", "-o", str(out)],
        cwd=directory,
        env=_env(trec_dir) | {"COLUMNS": "60"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"open {out / 'index.html'})" in proc.stderr.splitlines()[-1], proc.stderr


def test_the_terminal_view_shows_each_running_trial_and_redraws_once_a_second(
    tmp_path: Path, trec_dir: Path
) -> None:
    run = PtyRun(_command(tmp_path, trials=3, epochs=40), cwd=tmp_path, env=_env(trec_dir))
    assert run.finish() == 0, plain(run.output)
    text = plain(run.output)
    # A row per running trial: number, worker, epoch x/N, its current score, its params.
    row = r"^ +\d +w[12] +(\d+)/40 +0\.\d{4} +lr=\S+ dropout=\S+$"
    assert re.search(row, text, re.MULTILINE), text
    assert re.search(r"ETA \d+:\d\d ± \d+:\d\d", text), text
    assert re.search(r"best 0\.\d{4} \(trial \d\)  lr=", text), text
    workers = [m for line in text.splitlines() if (m := WORKER_LINE.match(line.strip()))]
    assert sorted(m[1] for m in workers) == ["w1", "w2"], text
    # Under a pseudo-terminal nobody may watch (docker run -t, script) every redraw is logged:
    # one a second, and one for each line printed above the view. The bound leaves room for
    # a loaded machine's late polls and for lines the cursor codes hide from the count, and
    # still fails rich's default of four redraws a second.
    redraws = text.count(" elapsed ")
    printed = len(re.findall(r"^(\[\d+:\d\d\] trial|\S+-w\d |study )", text, re.MULTILINE))
    assert redraws <= 2 * (run.seconds + 2) + printed, (redraws, run.seconds, printed)


@pytest.mark.parametrize("moment", ["starting", "started", "training"])
def test_ctrl_c_in_a_terminal_prints_a_line_per_worker_at_most(
    tmp_path: Path, trec_dir: Path, moment: str
) -> None:
    run = PtyRun(_command(tmp_path, trials=2, epochs=400), cwd=tmp_path, env=_env(trec_dir))
    if moment == "starting":  # the workers not started yet
        run.wait_for(lambda text: "study view" in text)
    elif moment == "started":  # the live view is up, no trial has finished
        run.wait_for(lambda text: " elapsed " in text)
    else:
        run.wait_for(lambda text: len(re.findall(r"\d+/400 +0\.\d", text.split("best")[-1])) == 2)
    before = len(plain(run.output))
    run.ctrl_c()
    assert run.finish() == 130, plain(run.output)
    after = plain(run.output)[before:]
    for noise in ("Traceback", "KeyboardInterrupt", "[W ", "failed with", "top 0 of 0"):
        assert noise not in after, after
    assert len(re.findall(r"-w\d interrupted$", after, re.MULTILINE)) <= 2, after


def test_sigterm_to_a_piped_run_prints_no_optuna_warnings(tmp_path: Path, trec_dir: Path) -> None:
    proc = subprocess.Popen(
        _command(tmp_path, trials=2, epochs=400),
        cwd=tmp_path,
        env=_env(trec_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # the log says little while trials run: ask the database
        if line.startswith("study view"):
            break
    _wait_until_both_train(tmp_path)
    proc.send_signal(signal.SIGTERM)  # docker stop, kill
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    for noise in ("Traceback", "[W ", "failed with", "top 0 of 0"):
        assert noise not in rest, rest
    assert [line for line in rest.splitlines() if "-w" in line] == [
        line for line in rest.splitlines() if re.search(r"-w[12] interrupted$", line)
    ], rest


def _wait_until_both_train(directory: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{directory}/hpsearch.db")
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            try:
                study = optuna.load_study(study_name="view", storage=storage)
            except KeyError:
                study = None
            running = [] if study is None else study.get_trials(deepcopy=False)
            if len([t for t in running if t.intermediate_values]) == 2:
                return
            time.sleep(0.2)
        raise AssertionError("the workers did not start training")
    finally:
        storage.engine.dispose()

"""Your own data end to end: a generated CSV searched by ``hpsearch run`` in worker processes,
then ``best`` and ``evaluate`` (which says there is no test set) as separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORDS = {"pos": "good great fine nice lovely", "neg": "bad awful poor sad grim"}


def hpsearch(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    env["HPSEARCH_STORAGE"] = f"sqlite:///{cwd / 'mine.db'}"
    cmd = [sys.executable, "-m", "hpsearch", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_csv_through_run_best_and_evaluate(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    lines = ["text,label"]
    for i in range(60):
        label = "pos" if i % 2 else "neg"
        words = WORDS[label].split()
        lines.append(f'"{words[i % 5]}, {words[(i + 2) % 5]}!",{label}')
    (tmp_path / "data" / "reviews.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "mine.yaml").write_text(
        "data: {train: ../data/reviews.csv, tokenizer: word}\n"
        "config: {hidden_dim: 8, embedding_dim: 8, batch_size: 16, threads: 1, lowercase: true}\n"
        "space:\n  lr: {choices: [3.0e-2]}\n"
        "sampler: {name: random, seed: 0}\npruner: none\nbudget: {trials: 1, epochs: 5}\n"
    )
    run = hpsearch(tmp_path, "run", "--study", "studies/mine.yaml", "--workers", "1")
    assert run.returncode == 0, run.stderr

    best = hpsearch(tmp_path, "export", "--study", "mine", "-o", "-")
    assert best.returncode == 0, best.stderr
    exported = json.loads(best.stdout)
    assert exported["config"]["data"]["train"] == str(tmp_path / "data" / "reviews.csv")
    assert exported["best_value"] > 0.6  # the words give the label away
    (fingerprint,) = exported["data"]["files"].values()
    assert fingerprint["size"] == (tmp_path / "data" / "reviews.csv").stat().st_size
    shown = hpsearch(tmp_path, "best", "--study", "mine")
    assert shown.returncode == 0 and "mine" in shown.stdout, shown.stderr

    evaluated = hpsearch(tmp_path, "evaluate", "--study", "mine", "--seeds", "1")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "no test set" in evaluated.stderr and "no test set" in evaluated.stdout


def test_a_run_with_workers_warns_of_a_small_class_once_and_logs_its_metric(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").mkdir()
    lines = ["text,label", "lonely words,rare"]
    for i in range(40):
        label = "pos" if i % 2 else "neg"
        lines.append(f"{WORDS[label].split()[i % 5]},{label}")
    (tmp_path / "data" / "small.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "mine.yaml").write_text(
        "data: {train: ../data/small.csv}\nmetric: macro_f1\n"
        "config: {hidden_dim: 4, embedding_dim: 4, batch_size: 16, threads: 1}\n"
        "space:\n  lr: {choices: [3.0e-2]}\n"
        "sampler: {name: random, seed: 0}\npruner: none\nbudget: {trials: 2, epochs: 1}\n"
    )
    run = hpsearch(tmp_path, "run", "--study", "studies/mine.yaml", "--workers", "2")
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("class 'rare' has 1 example") == 1, run.stderr
    trial_lines = [line for line in run.stderr.splitlines() if "] trial " in line]
    assert len(trial_lines) == 2, run.stderr
    assert all("validation macro-F1 " in line for line in trial_lines), run.stderr

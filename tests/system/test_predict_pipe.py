"""`hpsearch predict ... | head -1`: a reader that closes the pipe early ends predict quietly
with status 0, as it ends any Unix tool, with no traceback or error message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_predict import tiny_model


@pytest.mark.parametrize("fmt", ["jsonl", "table"])
def test_predict_into_a_pipe_closed_after_one_line_exits_0(tmp_path: Path, fmt: str) -> None:
    texts = tmp_path / "texts.txt"
    # Far more output than a pipe buffers, so that predict is still writing when it closes.
    texts.write_text("what is this sky and why is it blue today\n" * 20000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    cmd = [sys.executable, "-m", "hpsearch", "predict", "-m", str(tiny_model(tmp_path))]
    proc = subprocess.Popen(
        [*cmd, str(texts), "--format", fmt],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what head does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert first.strip() and err == ""

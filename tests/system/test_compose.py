"""docker-compose.yml against the real CLI and a compose client: the services' commands are
`python -m hpsearch` commands with those options, and an installed compose client accepts the
file. The parsing checks are in tests/unit/test_compose.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.compose import (
    APP_SERVICES,
    REPO,
    command,
)


@pytest.mark.parametrize("service", APP_SERVICES)
def test_commands_are_real_cli_commands(service: str) -> None:
    cmd = command(service)
    result = subprocess.run(
        [sys.executable, "-m", "hpsearch", cmd[0], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    for option in (part for part in cmd if part.startswith("--")):
        shown = re.search(rf"{re.escape(option)}(?![\w-])", result.stdout)
        assert shown, f"`hpsearch {cmd[0]}` has no {option}"


def _compose_client() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    path = shutil.which("docker-compose")
    return [path] if path else None


def test_compose_client_accepts_the_file(tmp_path: Path) -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose client installed")
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    args = [*client, "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yml")]
    missing = subprocess.run(
        [*args, "config"], capture_output=True, text=True, env=base, timeout=60, cwd=tmp_path
    )
    assert missing.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in missing.stdout + missing.stderr
    ok = subprocess.run(
        [*args, "config"],
        capture_output=True,
        text=True,
        env={**base, "POSTGRES_PASSWORD": "pw", "DASHBOARD_PASSWORD": "pw"},
        timeout=60,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr

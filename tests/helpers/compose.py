"""Helpers shared by tests/unit/test_compose.py and tests/system/test_compose.py."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")

APP_SERVICES = ("worker", "dashboard")


@functools.cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def with_defaults(text: str) -> str:
    """Interpolate as compose would with an empty environment (required ones as 'x')."""
    return VARIABLE.sub(lambda m: m["arg"] if m["op"] in ("-", ":-") else "x", text)


def command(service: str) -> list[str]:
    cmd = services()[service]["command"]
    assert isinstance(cmd, list), f"{service}: use the list form of command (no shell parsing)"
    return [with_defaults(str(part)) for part in cmd]

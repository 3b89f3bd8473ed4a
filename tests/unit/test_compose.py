"""docker-compose.yml, Dockerfile and .env.example agree with the code and keep secrets out.

There is no Docker engine here, so the compose file is checked by parsing it. The services'
commands run as CLI commands, and a compose client where one is installed, in
tests/system/test_compose.py.
"""

from __future__ import annotations

import re
import tomllib

from hpsearch import study as studyfile
from tests.helpers.compose import (
    APP_SERVICES,
    REPO,
    VARIABLE,
    command,
    compose,
    services,
)


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (REPO / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def published(service: str) -> list[str]:
    ports = services()[service].get("ports", [])
    assert all(isinstance(p, str) for p in ports), "use the short port syntax"
    return list(ports)


def test_services_exist() -> None:
    assert set(services()) == {"postgres", "worker", "dashboard"}
    assert services()["postgres"]["image"].startswith("postgres:16")


def test_database_is_not_published_and_nothing_leaves_loopback() -> None:
    assert "ports" not in services()["postgres"]
    for name in services():
        for port in published(name):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_password_comes_from_the_environment_only() -> None:
    postgres_env = services()["postgres"]["environment"]
    required = VARIABLE.fullmatch(postgres_env["POSTGRES_PASSWORD"])
    assert required and required["name"] == "POSTGRES_PASSWORD" and required["op"] == ":?"
    for name in APP_SERVICES:
        url = services()[name]["environment"]["HPSEARCH_STORAGE"]
        user_info = url.split("://", 1)[1].rsplit("@", 1)[0]
        user, _, password = user_info.partition(":")
        assert user == postgres_env["POSTGRES_USER"]
        assert VARIABLE.fullmatch(password), f"{name}: literal password in HPSEARCH_STORAGE"
        assert url.endswith(f"@postgres:5432/{postgres_env['POSTGRES_DB']}")
    assert env_example()["POSTGRES_PASSWORD"] == ""  # the example must not ship one
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored
    assert ".env" in (REPO / ".dockerignore").read_text().splitlines()


def test_dashboard_signs_in_with_a_password_from_the_environment() -> None:
    # It listens on 0.0.0.0 in its container, where hpsearch requires credentials.
    env = services()["dashboard"]["environment"]
    required = VARIABLE.fullmatch(env["HPSEARCH_DASHBOARD_PASSWORD"])
    assert required and required["name"] == "DASHBOARD_PASSWORD" and required["op"] == ":?"
    user = VARIABLE.fullmatch(env["HPSEARCH_DASHBOARD_USER"])
    assert user and user["arg"] == env_example()["DASHBOARD_USER"]
    assert env_example()["DASHBOARD_PASSWORD"] == ""  # the example must not ship one
    # The dashboard's environment adds to the workers' one; it does not replace it.
    assert services()["worker"]["environment"].items() <= env.items()


def test_postgres_health_gates_the_app_services() -> None:
    assert "pg_isready" in " ".join(services()["postgres"]["healthcheck"]["test"])
    for name in APP_SERVICES:
        assert services()[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_workers_scale() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker
    assert not published("worker")


def test_dashboard_binds_everywhere_inside_but_publishes_on_loopback() -> None:
    cmd = command("dashboard")
    assert cmd[0] == "dashboard"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    port = cmd[cmd.index("--port") + 1]
    assert published("dashboard") == [f"127.0.0.1:{port}:{port}"]


def test_data_and_studies_are_mounted_where_the_code_looks() -> None:
    worker = services()["worker"]
    env = worker["environment"]
    mounts = {m.split(":")[1]: m for m in worker["volumes"]}
    data_mount = mounts[env["HPSEARCH_DATA_DIR"]]
    assert data_mount.split(":")[0] in compose()["volumes"]  # a named, shared volume
    studies_mount = mounts[env["HPSEARCH_STUDIES_DIR"]]
    assert studies_mount.startswith("./hpsearch/studies:") and studies_mount.endswith(":ro")


def test_environment_names_are_ones_the_code_reads() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "hpsearch").rglob("*.py"))
    for name in APP_SERVICES:
        for key in services()[name]["environment"]:
            assert f'"{key}"' in source, f"{name}: nothing in hpsearch/ reads {key}"
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    documented = env_example()
    for match in VARIABLE.finditer(text):
        assert match["name"] in documented, f"${{{match['name']}}} is not in .env.example"
    study_default = VARIABLE.search(services()["worker"]["command"][2])
    assert study_default and study_default["name"] == "STUDY"
    assert documented["STUDY"] == study_default["arg"]


def test_default_study_exists() -> None:
    cmd = command("worker")
    name = cmd[cmd.index("--study") + 1]
    spec = studyfile.load_study(name, REPO / "hpsearch" / "studies")
    assert spec.name == name


def test_dockerfile_matches_compose_and_pyproject() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, re.M)
    assert 'pip install --index-url "${TORCH_INDEX_URL}"' in text
    assert 'ENTRYPOINT ["hpsearch"]' in text
    extras = re.search(r'pip install "\.\[([\w,]+)\]"', text)
    assert extras and extras[1] == "postgres,glove"
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert {"postgres", "glove"} <= set(optional)
    env = services()["worker"]["environment"]
    for key in ("HPSEARCH_DATA_DIR",):
        assert f"{key}={env[key]}" in text, f"Dockerfile and compose disagree on {key}"
    for copied in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in copied.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which does not exist"
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for pattern in (".git", "*.db", "*.label"):
        assert pattern in ignored

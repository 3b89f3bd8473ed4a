"""Exports from a study on the PostgreSQL server never contain its password. The rest of the
export tests are in tests/unit/test_export.py."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from sqlalchemy.engine import make_url

from hpsearch import storage
from hpsearch.errors import StudyError
from hpsearch.results import _export as export
from tests.helpers.export import build_study, write_spec


@pytest.mark.postgres
def test_exports_never_contain_the_password(postgres_url: str, tmp_path: Path) -> None:
    password = "s3cretPW"
    url = make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    name = f"tiny_export_{tmp_path.name}"[:60]
    spec = write_spec(tmp_path / "studies", name)
    build_study(spec, url, error=f"OperationalError: cannot reach {url}")
    try:
        exported = export.best_export(name, url)
        json_path, csv_path = tmp_path / "best.json", tmp_path / "trials.csv"
        export.write_json(exported, json_path)
        csv_path.write_text(export.trials_csv(name, url), encoding="utf-8")
        assert exported["storage"].startswith("postgresql+psycopg://postgres:***@")
        for path in (json_path, csv_path):
            assert password not in path.read_text(encoding="utf-8")
        assert "cannot reach postgresql+psycopg://postgres:***@" in csv_path.read_text()
        with pytest.raises(StudyError) as info:
            export.best_export(name + "x", url)
        assert password not in str(info.value)
    finally:
        optuna.delete_study(study_name=name, storage=storage.open_storage(url, heartbeat=False))

"""The built wheel, installed away from the repository, carries what a user needs: the shipped
study files, found from any working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_wheel_ships_the_studies_and_runs_them_from_any_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO),
         cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("hpsearch-*.whl")
    target = tmp_path / "site"
    _run(sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel), cwd=tmp_path)  # fmt: skip

    home = tmp_path / "elsewhere"  # no studies/ here, and not the repository
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    # The installed copy comes first, ahead of the editable install of the checkout.
    env["PYTHONPATH"] = str(target)
    env["HPSEARCH_STORAGE"] = f"sqlite:///{home / 'h.db'}"
    where = _run(sys.executable, "-c", "import hpsearch; print(hpsearch.__file__)", cwd=home,
                 env=env)  # fmt: skip
    assert Path(where.strip()).is_relative_to(target), where

    listing = _run(sys.executable, "-m", "hpsearch", "studies", cwd=home, env=env)
    shipped = sorted(p.stem for p in (REPO / "hpsearch" / "studies").glob("*.yaml"))
    assert "regularization" in shipped
    for name in shipped:
        assert name in listing, listing
    assert not (home / "h.db").exists()  # listing reads; it creates no database

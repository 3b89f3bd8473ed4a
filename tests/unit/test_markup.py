"""No text a user or a database gave is read as rich markup (issue 16 item 2): study names,
paths, params, error messages and install hints holding ``[...]`` print as they are, through
every path the commands print by, and ``[/]`` is no crash (rich.errors.MarkupError)."""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from rich.table import Table
from typer.testing import CliRunner, Result

from hpsearch import search
from hpsearch import storage as storage_mod
from hpsearch.cli import _common
from hpsearch.errors import UsageError
from hpsearch.results import _evaluate as evaluate
from tests.helpers.cli import invoke
from tests.helpers.export import build_study, write_spec

HOSTILE = "[/]x[red]y[/red] pip install 'hpsearch[postgres]'"
NAME = "[/]m[red]n[/red]"  # a study another program made: hpsearch's own names are plain


def _literal(result: Result, *texts: str) -> None:
    assert "MarkupError" not in result.output and "Traceback" not in result.output
    for text in texts:
        assert text in result.output, (text, result.output)


@pytest.fixture
def url(cli: CliRunner, tmp_path: Path) -> str:
    """A database with hpsearch's ``tiny`` and a study ``NAME`` whose param, value and
    description hold markup."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    spec = write_spec(tmp_path / "studies")
    build_study(spec, url)
    study = optuna.create_study(
        study_name=NAME, storage=storage_mod.open_storage(url), direction="maximize"
    )
    study.set_user_attr(search.SPEC_ATTR, {"description": HOSTILE})
    config = optuna.load_study(study_name="tiny", storage=url).trials[1].user_attrs["config"]
    study.add_trial(
        optuna.trial.create_trial(
            params={"[bold]p": "[red]v[/red]"},
            distributions={"[bold]p": CategoricalDistribution(["[red]v[/red]", "[/]"])},
            value=0.5,
            user_attrs={"config": config, "best_epoch": 1},
            intermediate_values={1: 0.5},
        )
    )
    return url


def test_error_lines_and_install_hints_print_as_they_are(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    result = invoke(cli, "run", "--study", "s[/]t[red]u[/red].yaml")
    assert result.exit_code == 2
    _literal(result, "error: s[/]t[red]u[/red].yaml: study file not found")
    hint = storage_mod.missing_driver("postgresql+psycopg://u@h/db", ImportError(name="psycopg"))
    monkeypatch.setattr("hpsearch.results.study_rows", lambda *a: (_ for _ in ()).throw(hint))
    result = invoke(cli, "studies")
    assert result.exit_code == 2
    _literal(result, "pip install 'hpsearch[postgres]'")
    _literal(invoke(cli, "best", "-s", "x", "-f", HOSTILE), HOSTILE)  # typer's own error box


def test_tables_show_names_params_and_descriptions_as_they_are(cli: CliRunner, url: str) -> None:
    Path("studies", "[red]bad.yaml").write_text("name: [bold]\n")
    studies = invoke(cli, "studies", "--storage", url, "--studies-dir", "studies")
    assert studies.exit_code == 0
    _literal(studies, NAME, HOSTILE[:30], "studies/[red]bad.yaml")
    best = invoke(cli, "best", "-s", NAME, "--storage", url)
    assert best.exit_code == 0
    _literal(best, NAME, "[bold]p", "[red]v[/red]")
    compared = invoke(cli, "compare", NAME, "tiny", "--no-evaluate", "--storage", url)
    assert compared.exit_code == 0
    _literal(compared, NAME)


def test_written_paths_print_as_they_are(cli: CliRunner, url: str, trec_dir: Path) -> None:
    Path("o[").mkdir()
    result = invoke(cli, "export", "-s", "tiny", "--storage", url, "-o", "o[/]x[red].json")
    assert result.exit_code == 0
    _literal(result, "wrote o[/]x[red].json")
    data = Path("d[/]t[red]")
    data.parent.mkdir()
    shutil.copytree(trec_dir, data)
    _literal(invoke(cli, "data", "--data-dir", str(data)), f"TREC data verified in {data}")
    result = invoke(cli, "report", "-s", "tiny", "--storage", url, "-o", "o[/]r[red]")
    assert result.exit_code == 0, result.output
    _literal(result, "to o[/]r[red] (open o[/]r[red]/index.html)")


def test_an_evaluation_shows_its_study_as_it_is(
    cli: CliRunner, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = evaluate.SeedRun(0, 0.5, 0.4, 1, 1, 0.1)
    done = evaluate.Evaluation(NAME, 0, 0.5, {}, [run])

    def evaluate_study(name: str, url_: str, **kwargs: object) -> evaluate.Evaluation:
        kwargs["on_result"](run)  # type: ignore[operator]
        return done

    monkeypatch.setattr("hpsearch.results.evaluate_study", evaluate_study)
    _literal(invoke(cli, "evaluate", "-s", NAME, "--storage", url), f"{NAME}: best trial 0")


@pytest.mark.parametrize("console", [_common.console, _common.err_console])
def test_every_console_of_the_commands_prints_text_as_it_is(
    console: object, capsys: pytest.CaptureFixture[str]
) -> None:
    # The views (run's live status and closing table, train's epochs) print through these.
    table = Table(title=NAME)
    table.add_column(HOSTILE)
    table.add_row(HOSTILE)
    console.print(table)  # type: ignore[attr-defined]
    console.print(HOSTILE)  # type: ignore[attr-defined]
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert out.count(HOSTILE) == 3 and NAME in out


def test_no_console_in_hpsearch_reads_markup() -> None:
    # One rule, one place: every console is a `plain_console`, nothing asks for markup.
    source = Path(_common.__file__).parents[1]
    offenders = []
    for path in sorted(source.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"\bConsole\(|markup=True|Text\.from_markup|\[/[a-z]", text):
            line = text[: match.start()].count("\n") + 1
            offenders.append(f"{path.relative_to(source)}:{line}")
    plain = inspect.getsourcelines(_common.plain_console)
    own = range(plain[1], plain[1] + len(plain[0]))
    assert [
        o
        for o in offenders
        if not (o.startswith("cli/_common.py:") and int(o.split(":")[1]) in own)
    ] == []


def test_a_usage_error_holding_markup_is_printed_as_it_is(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise UsageError(HOSTILE)

    monkeypatch.setattr("hpsearch.results.study_rows", fail)
    result = invoke(cli, "studies")
    assert result.exit_code == 2
    assert result.stderr == f"error: {HOSTILE}\n"

"""Finding a study file: by path, or by name in the studies directory (``--studies-dir``,
``$HPSEARCH_STUDIES_DIR``, ``./studies``, else the studies shipped with hpsearch); and the
stored study a ``--study`` value means, which may be a study file's path in every command."""

from __future__ import annotations

import os
from pathlib import Path

from hpsearch import files, settings
from hpsearch.errors import ConfigError, StudyError, did_you_mean
from hpsearch.study._file import StudySpec, parse_study

# Package data, so an installed hpsearch runs `--study regularization` from any directory.
SHIPPED_STUDIES = Path(__file__).resolve().parents[1] / "studies"


def find_studies_dir(studies_dir: Path | None = None) -> Path:
    """The argument, then $HPSEARCH_STUDIES_DIR, then ./studies, then the shipped studies."""
    from_env = settings.text(settings.STUDIES_DIR)
    for given in (studies_dir, from_env):
        if given:
            if not Path(given).is_dir():
                # The CLI hands the variable's value over as the option: name the variable.
                how = settings.STUDIES_DIR if str(given) == from_env else "--studies-dir"
                what = "not a directory" if Path(given).exists() else "studies directory not found"
                raise StudyError(f"{given}: {what} (from {how})")
            return Path(given)
    if Path("studies").is_dir():
        return Path("studies")
    return SHIPPED_STUDIES


def list_study_files(studies_dir: Path | None = None) -> list[Path]:
    directory = find_studies_dir(studies_dir)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd())) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def _files_naming(directory: Path, name: str) -> list[Path]:
    """Study files whose ``name:`` is ``name`` (``studies`` lists studies by that name)."""
    named = []
    for path in list_study_files(directory):
        try:
            data = files.read_mapping(path, expected="a YAML or JSON study file")
        except ConfigError:
            continue  # a broken file is reported when it is the one asked for
        if data.get("name") == name:
            named.append(path)
    return named


def _is_path(name_or_path: str | Path) -> bool:
    """Whether a ``--study`` value is a file's path rather than a name."""
    text = str(name_or_path)
    return (
        isinstance(name_or_path, Path)
        or "/" in text
        or os.sep in text
        or text.endswith((".yaml", ".yml", ".json"))
    )


def stored_name(name_or_path: str) -> str:
    """The study in the database that ``--study`` names: the study a file declares (its
    ``name:``, else its file name) when the value is a study file's path, as ``run`` reads
    it; otherwise the value itself, a stored name (which another program may have made with
    a ``/`` in it, so a path that is no file stays a name)."""
    if _is_path(name_or_path) and Path(name_or_path).is_file():
        return load_study(Path(name_or_path)).name
    return name_or_path


def load_study(name_or_path: str | Path, studies_dir: Path | None = None) -> StudySpec:
    """Load ``<dir>/<name>.yaml`` (or .yml) for a bare name, else the file there whose
    ``name:`` it is; or the file at a path."""
    text = str(name_or_path)
    if _is_path(name_or_path):
        path = Path(name_or_path)
        if not path.exists():  # anything else there is refused as it is read
            raise StudyError(f"{path}: study file not found")
    else:
        directory = find_studies_dir(studies_dir)
        found = [directory / f"{text}{s}" for s in (".yaml", ".yml")]
        found = [p for p in found if p.is_file()] or _files_naming(directory, text)
        if len(found) > 1 and found[0].stem != text:
            raise StudyError(
                f"study {text!r}: named so by {len(found)} files in {directory}: "
                f"{', '.join(p.name for p in found)}; give one as a path, or rename one"
            )
        if not found:
            names = [p.stem for p in list_study_files(directory)]
            raise StudyError(
                f"study {text!r}: no {text}.yaml in {directory}; "
                f"available: {', '.join(names) or 'none'}{did_you_mean(text, names)}"
            )
        path = found[0]
    data = files.read_mapping(path, expected="a YAML or JSON study file")
    if not data:
        raise ConfigError(
            f"{_display(path)}: the file is empty; a study needs at least a space: section "
            "(README.md, Study files)"
        )
    return parse_study(data, source=_display(path), path=path, default_name=path.stem)

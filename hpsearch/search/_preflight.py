"""Preflight: what a study needs from this machine, checked before the study is created, so
that a bad data file, device or vectors file is one error with nothing written, not a failed
trial each."""

from __future__ import annotations

from pathlib import Path

from hpsearch.config import TrainConfig, from_mapping
from hpsearch.errors import ConfigError
from hpsearch.study import COMBINATIONS_LIMIT, StudySpec, combinations, show
from hpsearch.training import check_data, resolve_device, vectors_dim


def _valid_fractions(spec: StudySpec) -> list[float]:
    """The validation fractions whose splits the study's trials can draw, at their extremes:
    the fewest validation examples at the smallest, the fewest training ones at the largest."""
    searched = spec.space.get("valid_fraction")
    if searched is None:
        return [spec.config.get("valid_fraction", TrainConfig.valid_fraction)]
    if searched.choices is not None:
        values = [float(v) for v in searched.choices]
        return sorted({min(values), max(values)})
    assert searched.low is not None and searched.high is not None  # a range without choices
    return sorted({float(searched.low), float(searched.high)})


def check_inputs(spec: StudySpec, data_dir: Path | None = None) -> None:
    """Read and check the study's data (downloading TREC once here, not in N workers at the
    same time), check its devices and load the pretrained vectors its trials will use; raise
    DataError, ConfigError or EmbeddingsError.

    Run before the study is created, so that a device this machine lacks, a missing or
    corrupt vectors file, or an embedding_dim the vectors do not have is one error with
    nothing written to the database, not a failed trial per trial. The vectors stay cached
    in this process, so a worker's trials do not load them again.
    """
    where = spec.path or spec.name
    data = from_mapping({"data": spec.config.get("data", {})}, source=str(where)).data
    check_data(data, data_dir, valid_fractions=_valid_fractions(spec))
    devices = [("config.device", spec.config.get("device", "auto"))]
    if (searched := spec.space.get("device")) is not None and searched.choices is not None:
        devices += [(f"space.device.choices[{i}]", c) for i, c in enumerate(searched.choices)]
    for field, device in devices:
        try:
            resolve_device(str(device))
        except ConfigError:
            raise ConfigError(
                f"{where}: {field}: {device!r} is not available on this machine; use auto or cpu"
            ) from None
    values = [spec.config.get("embeddings")]
    if (searched := spec.space.get("embeddings")) is not None and searched.choices is not None:
        values += searched.choices
    names = sorted({str(value) for value in values if value is not None})
    if not names:
        return
    dims = {name: vectors_dim(name) for name in names}  # loads each: EmbeddingsError if broken
    fixed_dim = spec.config.get("embedding_dim", TrainConfig.embedding_dim)
    points = combinations(spec.space, ("embeddings", "embedding_dim"), COMBINATIONS_LIMIT) or [{}]
    for point in points:
        name = point.get("embeddings", spec.config.get("embeddings"))
        dim = point.get("embedding_dim", fixed_dim)
        if name is None or dims[str(name)] == dim:
            continue
        size = dims[str(name)]
        if not point:
            raise ConfigError(
                f"{where}: config.embedding_dim: {dim} must equal the size of the {name!r} "
                f"vectors ({size}); set embedding_dim: {size}"
            )
        raise ConfigError(
            f"{where}: space: a trial can draw {show(point)}, but the {name!r} vectors have "
            f"{size} dimensions; give embedding_dim {size}, or search it only with random "
            "vectors (when: {embeddings: null})"
        )

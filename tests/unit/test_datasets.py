"""Datasets named by ``data:``: TREC's coarse and fine classes, and your own files in each
format; every malformed file one line naming file, line and problem, exit 2, nothing written;
labels and vocabulary in checkpoints; data files fingerprinted with the study spec."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from hpsearch import config as config_mod
from hpsearch import search, storage
from hpsearch import study as studyfile
from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, DataError
from hpsearch.training import (
    TREC_COARSE,
    RNNClassifier,
    load_checkpoint,
    load_dataset,
    save_checkpoint,
    tokenize,
)
from hpsearch.training._data import build_vocab
from tests.helpers.hostile_input import invoke, no_database, one_line_error, write

WORDS = {"pos": "good great fine nice", "neg": "bad awful poor sad", "mix": "so so okay"}


def rows(n: int = 30) -> list[tuple[str, str]]:
    """(text, label) pairs, every label with n // 3 texts."""
    labels = list(WORDS)
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = WORDS[label].split()
        out.append((f"{words[i % len(words)]} {words[(i + 1) % len(words)]} item{i}", label))
    return out


def write_csv(path: Path, data: list[tuple[str, str]], sep: str = ",") -> Path:
    lines = [f"text{sep}label", *(f"{text}{sep}{label}" for text, label in data)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, data: list[tuple[str, str]]) -> Path:
    lines = [json.dumps({"text": text, "label": label}) for text, label in data]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_fasttext(path: Path, data: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"__label__{label} {text}\n" for text, label in data))
    return path


def files_config(**data: object) -> TrainConfig:
    return config_mod.from_mapping({"data": data})


# --- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "txt"])
def test_each_format_reads_the_same_dataset(tmp_path: Path, suffix: str) -> None:
    write = {
        "csv": write_csv,
        "tsv": lambda p, d: write_csv(p, d, "\t"),
        "jsonl": write_jsonl,
        "txt": write_fasttext,
    }[suffix]
    path = write(tmp_path / f"train.{suffix}", rows())
    ds = load_dataset(files_config(train=str(path)))
    assert ds.labels == ("mix", "neg", "pos")  # sorted: the same index on every run
    assert (len(ds.train), len(ds.valid), ds.test) == (24, 6, None)
    assert "good" in ds.vocab.stoi
    assert sorted(ds.valid.labels.tolist()) == [0, 0, 1, 1, 2, 2]  # stratified
    assert list(ds.fingerprint) == [str(path)]


def test_format_option_fields_and_encoding(tmp_path: Path) -> None:
    train = tmp_path / "train.dat"
    lines = ["id,sentence,category", *(f"{i},{t} caf\xe9,{c}" for i, (t, c) in enumerate(rows()))]
    train.write_bytes("\n".join(lines).encode("latin-1"))
    fields = {"text_field": "sentence", "label_field": "category"}
    cfg = files_config(train=str(train), format="csv", encoding="latin-1", **fields)
    ds = load_dataset(cfg)
    assert "café" in ds.vocab.stoi and ds.labels == ("mix", "neg", "pos")
    with pytest.raises(DataError, match=r"train.dat:2: bytes b'\\xe9' are not valid utf-8"):
        load_dataset(files_config(train=str(train), format="csv", **fields))


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "excel.csv", rows())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_dataset(files_config(train=str(path))).labels == ("mix", "neg", "pos")


def test_valid_and_test_files_are_used_as_given(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", rows())
    valid = write_jsonl(tmp_path / "valid.jsonl", rows(6))
    test = write_fasttext(tmp_path / "test.txt", rows(9))
    cfg = files_config(train=str(train), valid=str(valid), test=str(test))
    ds = load_dataset(cfg, with_test=True)
    assert ds.test is not None
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (30, 6, 9)
    assert list(ds.fingerprint) == [str(train), str(valid), str(test)]
    assert load_dataset(cfg).test is None  # the test file is read only when asked for


def test_tokenizers_lowercase_and_max_length() -> None:
    data = files_config(train="x.csv").data
    text = "Don't panic, Arthur!"
    assert tokenize(text, data) == ["Don't", "panic,", "Arthur!"]
    word = data.__class__(**{**data.__dict__, "tokenizer": "word", "max_length": 4})
    assert tokenize(text, word) == ["Don", "'", "t", "panic"]
    assert tokenize(text, word, lowercase=True) == ["don", "'", "t", "panic"]


def test_trec_fine_has_the_fifty_fine_classes(trec_dir: Path) -> None:
    fine = load_dataset(config_mod.from_mapping({"data": "trec-fine"}), trec_dir, with_test=True)
    coarse = load_dataset(TrainConfig(), trec_dir, with_test=True)
    assert len(fine.labels) == 50 and fine.labels[0] == "ABBR:abb"
    assert coarse.labels == TREC_COARSE
    assert fine.test is not None and len(fine.test) == len(coarse.test or ()) == 500
    assert fine.fingerprint == coarse.fingerprint


# --- errors: one line naming file, line and problem ---------------------------------------------

HEADER = "text,label\n"
ERRORS = {
    "undecodable bytes": (HEADER + "good one,pos\nbad \xff,neg\n", "latin-1", ":3: bytes"),
    "missing column": ("sentence,label\ngood,pos\n", "utf-8", ":1: no column 'text'"),
    "empty text": (HEADER + "good,pos\n  ,neg\n", "utf-8", ":3: the text is empty"),
    "empty label": (HEADER + "good,pos\nbad,\n", "utf-8", ":3: the label is empty"),
    "ragged row": (HEADER + "good,pos\nbad,neg,extra\n", "utf-8", ":3: 3 columns, the header"),
    "one class": (HEADER + "good,pos\nfine,pos\n", "utf-8", "every example has the label 'pos'"),
    "empty file": ("", "utf-8", "no examples in the file"),
    "header only": (HEADER, "utf-8", "no examples in the file"),
}


@pytest.mark.parametrize(("text", "encoding", "expected"), ERRORS.values(), ids=ERRORS.keys())
def test_bad_training_file_is_one_line_naming_file_and_line(
    workdir: Path, text: str, encoding: str, expected: str
) -> None:
    (workdir / "train.csv").write_bytes(text.encode(encoding))
    write(workdir / "study.yaml", study_text("data: {train: train.csv}"))
    line = one_line_error(invoke("run", "-s", "study.yaml", "--storage", "sqlite:///study.db"))
    assert f"{workdir / 'train.csv'}" in line and expected in line, line
    no_database(workdir)


@pytest.mark.parametrize("role", ["valid", "test"])
def test_a_label_training_lacks_is_one_line(workdir: Path, role: str) -> None:
    write_csv(workdir / "train.csv", rows())
    write_csv(workdir / f"{role}.csv", [("good", "pos"), ("what", "other")])
    write(workdir / "study.yaml", study_text(f"data: {{train: train.csv, {role}: {role}.csv}}"))
    line = one_line_error(invoke("run", "-s", "study.yaml", "--storage", "sqlite:///study.db"))
    assert f"{workdir / role}.csv:3: label 'other' is not in the training file" in line
    no_database(workdir)


def test_jsonl_and_fasttext_errors_name_the_line(tmp_path: Path) -> None:
    cases = [
        ("a.jsonl", '{"text": "x", "label": "a"}\n[1]\n', ":2: expected a JSON object"),
        ("b.jsonl", '{"text": "x", "label": "a"}\n{"label": "b"}\n', ":2: no field 'text'"),
        ("c.jsonl", '{"text": "x", "label": "a"}\n{oops\n', ":2: not a JSON object"),
        ("d.txt", "__label__a x\nno label here\n", ":2: expected '__label__NAME text...'"),
        ("e.txt", "__label__a x\n__label__b __label__c y\n", ":2: 2 labels"),
        ("f.txt", "__label__a x\n__label__b\n", ":2: the text is empty"),
    ]
    for name, text, expected in cases:
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError) as info:
            load_dataset(files_config(train=str(tmp_path / name)))
        assert f"{tmp_path / name}{expected}" in str(info.value), info.value


def test_the_readers_read_texts_alone_with_no_label_field() -> None:
    from hpsearch.training import Fields, parse_examples

    alone = Fields(text="q", label=None, text_hint="give --text-field")
    jsonl = '{"q": "a\u2028b"}\n{"q": ""}\r\n\n{"q": "c", "label": 1}\n'
    # A line separator inside a JSON string splits no line; an empty text is a text.
    assert [e.text for e in parse_examples(Path("t.jsonl"), jsonl, "jsonl", alone)] == [
        "a\u2028b",
        "",
        "c",
    ]
    assert [e.text for e in parse_examples(Path("t.tsv"), "id\tq\n1\tx\n", "tsv", alone)] == ["x"]
    with pytest.raises(DataError, match=r"^t\.csv:1: no column 'q' \(columns: 'text'\); give --"):
        parse_examples(Path("t.csv"), "text\nx\n", "csv", alone)
    with pytest.raises(DataError, match=r"^t\.jsonl:2: q: expected a string, got 3$"):
        parse_examples(Path("t.jsonl"), '{"q": "x"}\n{"q": 3}\n', "jsonl", alone)
    with pytest.raises(ValueError, match="fasttext has no text field"):
        parse_examples(Path("t.txt"), "__label__a x\n", "fasttext", alone)


def test_train_command_bad_file_writes_nothing(workdir: Path) -> None:
    (workdir / "train.csv").write_text(HEADER + "good,pos\n,neg\n")
    line = one_line_error(
        invoke("train", "--set", "data.train=train.csv", "--save", "model.pt", "--set", "epochs=1")
    )
    assert "train.csv:3: the text is empty" in line
    assert not (workdir / "model.pt").exists()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("{train: train.dat}", "data.train: cannot tell the format of"),
        ("{name: trec, train: train.csv}", "data.train: give name: (a built-in dataset) or"),
        ("{name: trec, test: test.csv}", "data.test: only with train:"),
        ("{train: missing.csv}", "data.train: "),
        ("{train: train.csv, encoding: utf9}", "data.encoding: must be a Python codec name"),
        ("{train: train.csv, tokenizer: bpe}", "data.tokenizer: 'bpe' is not one of"),
        ("trec-coarse", "data.name: 'trec-coarse' is not one of trec, trec-fine"),
    ],
)
def test_bad_data_section(workdir: Path, data: str, expected: str) -> None:
    write_csv(workdir / "train.csv", rows())
    write(workdir / "study.yaml", study_text(f"data: {data}"))
    line = one_line_error(invoke("run", "-s", "study.yaml", "--storage", "sqlite:///study.db"))
    assert line.startswith(f"error: study.yaml: {expected}"), line
    no_database(workdir)


def test_data_cannot_be_searched_or_given_twice(workdir: Path) -> None:
    write(workdir / "study.yaml", study_text("space:\n  data: {choices: [trec, trec-fine]}"))
    line = one_line_error(invoke("run", "-s", "study.yaml", "--storage", "sqlite:///study.db"))
    assert "space.data: cannot be searched" in line
    text = study_text("data: trec-fine").replace("threads: 1}", "threads: 1, data: trec}")
    write(workdir / "study.yaml", text)
    line = one_line_error(invoke("run", "-s", "study.yaml", "--storage", "sqlite:///study.db"))
    assert "config.data: the data is given twice" in line


def test_a_class_too_small_for_the_split_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_csv(tmp_path / "train.csv", [*rows(), ("rare words", "rare")])
    with caplog.at_level(logging.WARNING):
        load_dataset(files_config(train=str(path)))
    assert "class 'rare' has 1 example: valid_fraction 0.2 leaves it none in validation" in (
        caplog.text
    )


def test_a_search_worker_loads_the_data_without_the_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_csv(tmp_path / "train.csv", [*rows(), ("rare words", "rare")])
    with caplog.at_level(logging.WARNING):
        load_dataset(files_config(train=str(path)), warn=False)
    assert "rare" not in caplog.text


def test_the_preflight_warns_at_the_extremes_of_a_searched_valid_fraction() -> None:
    from hpsearch.search._preflight import _valid_fractions

    def fractions(text: str) -> list[float]:
        spec = studyfile.parse_study(yaml.safe_load(text), source="s.yaml", default_name="s")
        return _valid_fractions(spec)

    assert fractions("space: {lr: {low: 0.001, high: 0.01}}") == [TrainConfig.valid_fraction]
    assert fractions("space: {valid_fraction: {low: 0.05, high: 0.3}}") == [0.05, 0.3]
    assert fractions("space: {valid_fraction: {choices: [0.2, 0.1, 0.4]}}") == [0.1, 0.4]


# --- study files: relative paths, fingerprint, resuming -----------------------------------------


def study_text(extra: str) -> str:
    return (
        "name: mine\n"
        "config: {hidden_dim: 8, embedding_dim: 8, batch_size: 256, threads: 1}\n"
        f"{extra}\n"
        "space:\n  lr: {low: 1.0e-3, high: 1.0e-2, log: true}\n"
        "sampler: {name: random, seed: 0}\npruner: none\nbudget: {trials: 1, epochs: 1}\n"
    ).replace("space:\n  lr: {low: 1.0e-3, high: 1.0e-2, log: true}\n", "", extra.count("space:"))


def test_study_paths_are_relative_to_the_study_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_csv(tmp_path / "data" / "train.csv", rows())
    path = write(tmp_path / "study.yaml", study_text("data: {train: data/train.csv}"))
    spec = studyfile.load_study(path)
    assert spec.config["data"]["train"] == str(tmp_path / "data" / "train.csv")
    assert spec.build_config({"lr": 1e-3}).data.train == str(tmp_path / "data" / "train.csv")
    (fingerprint,) = spec.to_dict()["data_files"].values()
    assert fingerprint["size"] == (tmp_path / "data" / "train.csv").stat().st_size
    again = studyfile.parse_study(json.loads(json.dumps(spec.to_dict())), source="stored")
    assert again.to_dict() == spec.to_dict()
    plain = studyfile.load_study(write(tmp_path / "plain.yaml", study_text("data: trec")))
    assert "data" not in plain.config and "data_files" not in plain.to_dict()


def test_resuming_against_changed_data_files_is_refused(workdir: Path) -> None:
    train = write_csv(workdir / "train.csv", rows())
    path = write(workdir / "study.yaml", study_text("data: {train: train.csv}"))
    url = f"sqlite:///{workdir / 'study.db'}"
    original = studyfile.load_study(path)
    search.open_study(original, url, heartbeat=False)
    write_csv(train, rows(33))
    line = one_line_error(invoke("run", "-s", path, "--storage", url))
    assert line.startswith("error: study 'mine' exists with a different spec: data_files.")
    assert f"{train}.size: " in line and "--force" in line
    study = optuna.load_study(study_name="mine", storage=storage.open_storage(url, heartbeat=False))
    assert study.user_attrs[search.SPEC_ATTR] == original.to_dict()
    changed = studyfile.load_study(path)
    search.open_study(changed, url, heartbeat=False, force=True)  # --force resumes
    study = optuna.load_study(study_name="mine", storage=storage.open_storage(url, heartbeat=False))
    assert study.user_attrs[search.SPEC_ATTR] == changed.to_dict()


# --- configs and checkpoints -------------------------------------------------------------------


def test_exported_config_round_trips_the_data_section(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write_csv(tmp_path / "sub" / "train.csv", rows())
    written = tmp_path / "sub" / "cfg.yaml"
    written.write_text("data: {train: train.csv, tokenizer: word, max_length: 20}\nlr: 0.01\n")
    cfg = config_mod.load(written)
    assert cfg.data.train == str(tmp_path / "sub" / "train.csv")  # beside the config file
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"config": cfg.to_dict(), "best_value": 0.5}))
    assert config_mod.load(export) == cfg
    assert config_mod.load(export, ["data.max_length=5"]).data.max_length == 5
    assert config_mod.load(None, ["data=trec-fine"]).data.name == "trec-fine"
    with pytest.raises(
        ConfigError, match=r"data.max_length: must be in \[1, 1000000\] or null, got 0"
    ):
        config_mod.load(export, ["data.max_length=0"])


def test_checkpoint_stores_labels_and_vocabulary(tmp_path: Path) -> None:
    cfg = TrainConfig(hidden_dim=4, embedding_dim=4)
    vocab = build_vocab([["a", "b"]])
    labels = ("x", "y", "z")
    model = RNNClassifier(cfg, len(vocab), len(labels))
    save_checkpoint(tmp_path / "m.pt", model, cfg, vocab, labels=labels)
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert (loaded.labels, loaded.itos) == (labels, vocab.itos)
    # A checkpoint from before labels were stored: TREC's six coarse classes.
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    old_model = RNNClassifier(cfg, len(vocab), 6)
    payload.update(
        num_classes=6, state_dict=old_model.state_dict(), labels=None, config=cfg.to_dict()
    )
    del payload["labels"]
    del payload["config"]["data"]
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").labels == TREC_COARSE


def test_without_a_test_set_evaluate_and_compare_say_so() -> None:
    from rich.console import Console

    from hpsearch import results
    from hpsearch.results._evaluate import SeedRun

    run = SeedRun(seed=0, valid_acc=0.8, test_acc=None, best_epoch=2, epochs_run=3, seconds=1.0)
    evaluation = results.Evaluation("mine", 0, 0.8, {}, [run])
    assert evaluation.test is None and evaluation.to_dict()["test"] is None
    row = {
        "study": "mine",
        "best_value": 0.8,
        "best_trial": 0,
        **dict(complete=1, pruned=0, failed=0, epochs=3, seconds=1.0),
        **dict(valid_mean=0.8, valid_std=0.0, test_mean=None, test_std=None, seeds=1),
    }
    for table in (results.render_evaluation(evaluation), results.render_compare([row])):
        console = Console(width=200, record=True)
        console.print(table)
        assert "no test set" in console.export_text()

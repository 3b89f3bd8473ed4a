"""`hpsearch predict` and `hpsearch.load_model` on a hand-built model: checkpoints with their
vocabulary and class names, batched predictions in input order, top-K, the input and output
formats, and every bad input as one line with exit status 2."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import hpsearch
from hpsearch import predict, training
from hpsearch.cli import app
from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, DataError, UsageError
from hpsearch.training import TREC_COARSE, Classifier, RNNClassifier, save_checkpoint
from hpsearch.training._data import UNK, build_vocab

CLASS_NAMES = ("question", "statement", "request")
WORDS = [["what", "is", "this"], ["the", "sky", "is", "blue"], ["please", "help", "me"]] * 3
TEXTS = ["what is this", "please help me now", "", "The sky is blue today !", "what ?"]


def tiny_cfg(**changes: object) -> TrainConfig:
    fields: dict[str, object] = {
        "embedding_dim": 6,
        "hidden_dim": 5,
        "pooling": "mean",
        "device": "cpu",
    }
    return TrainConfig(**(fields | changes))  # type: ignore[arg-type]


def tiny_model(tmp_path: Path, **changes: object) -> Path:
    """A hand-built (untrained, seeded) 3-class model saved as a checkpoint."""
    cfg = tiny_cfg(**changes)
    vocab = build_vocab(WORDS)
    torch.manual_seed(0)
    model = RNNClassifier(cfg, len(vocab), len(CLASS_NAMES))
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, cfg, vocab, {"best_epoch": 1}, labels=CLASS_NAMES)
    return path


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return tiny_model(tmp_path)


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# --- the model ---------------------------------------------------------------------------------


def test_a_checkpoint_carries_vocabulary_and_class_names(model_path: Path) -> None:
    loaded = training.load_checkpoint(model_path)
    assert loaded.labels == CLASS_NAMES
    assert loaded.itos[:2] == ["<pad>", "<unk>"] and "sky" in loaded.itos
    model = hpsearch.load_model(model_path)
    assert model.classes == CLASS_NAMES and model.config == tiny_cfg()


def test_an_old_checkpoint_without_class_names_is_trec(tmp_path: Path) -> None:
    cfg = tiny_cfg()
    vocab = build_vocab(WORDS)
    model = RNNClassifier(cfg, len(vocab), len(TREC_COARSE))
    path = tmp_path / "old.pt"
    save_checkpoint(path, model, cfg, vocab)
    payload = torch.load(path, weights_only=True)
    del payload["labels"]  # as written before class names were stored
    torch.save(payload, path)
    assert hpsearch.load_model(path).classes == TREC_COARSE


@pytest.mark.parametrize("damage", ["config", "itos", "state_dict", "labels"])
def test_a_checkpoint_missing_a_part_is_one_line(model_path: Path, damage: str) -> None:
    payload = torch.load(model_path, weights_only=True)
    if damage == "labels":
        payload["labels"] = ["only", "two"]  # for three outputs
    else:
        del payload[damage]
    torch.save(payload, model_path)
    with pytest.raises(ConfigError, match=r"m\.pt: damaged hpsearch checkpoint: "):
        hpsearch.load_model(model_path)


def test_batched_predictions_come_back_in_input_order(model_path: Path) -> None:
    model = hpsearch.load_model(model_path)
    together = model.predict_proba(TEXTS, batch_size=2)  # sorted by length, several batches
    alone = np.concatenate([model.predict_proba([text]) for text in TEXTS])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(together.sum(axis=1), 1.0, rtol=1e-5)
    assert together.shape == (len(TEXTS), 3)
    assert model.predict(TEXTS) == [CLASS_NAMES[i] for i in together.argmax(axis=1)]


def test_tokens_are_encoded_as_in_training(model_path: Path) -> None:
    model = hpsearch.load_model(model_path)
    stoi = model.vocab.stoi
    assert model.encode("what  is\tthis") == [stoi["what"], stoi["is"], stoi["this"]]
    assert model.encode("What unknownword") == [UNK, UNK]  # cased, as training was
    assert model.encode("") == [UNK]  # the model needs one step to read
    lowered = hpsearch.load_model(tiny_model(model_path.parent, lowercase=True))
    assert lowered.encode("What") == [stoi["what"]]


def test_top_k_is_ranked_and_bounded(model_path: Path) -> None:
    model = hpsearch.load_model(model_path)
    probs = model.predict_proba(TEXTS)
    for pred, row in zip(model.top(TEXTS, 3), probs, strict=True):
        assert list(pred.probabilities) == sorted(pred.probabilities, reverse=True)
        assert pred.label == CLASS_NAMES[int(row.argmax())]
        assert set(pred.labels) == set(CLASS_NAMES)
    with pytest.raises(ValueError):
        model.top(TEXTS, 4)
    with pytest.raises(TypeError):
        model.predict_proba("one string")  # type: ignore[arg-type]


def test_a_study_name_and_a_file_name_are_told_apart(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothere\.pt: checkpoint not found"):
        hpsearch.load_model("nothere.pt")
    with pytest.raises(UsageError, match="no study 'nothere'"):
        hpsearch.load_model("nothere", storage=f"sqlite:///{tmp_path / 'none.db'}")


# --- input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "field"),
    [
        ("t.txt", "a b\n\nc\n", None),
        ("t.csv", 'id,body\n1,a b\n2,""\n3,c\n', "body"),
        ("t.tsv", "body\tid\na b\t1\n\t2\nc\t3\n", "body"),
        ("t.jsonl", '{"text": "a b"}\n{"text": ""}\n\n{"text": "c", "x": 1}\n', None),
    ],
)
def test_each_input_format(tmp_path: Path, name: str, content: str, field: str | None) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert predict.read_texts(path, text_field=field) == ["a b", "", "c"]


@pytest.mark.parametrize(
    ("name", "content", "field", "message"),
    [
        ("e.txt", "", None, r"e\.txt: no texts to classify"),
        ("e.csv", "text\n", None, r"e\.csv: no texts to classify"),
        (
            "e.csv",
            "id,body\n1,x\n",
            None,
            r"e\.csv:1: no column 'text' \(columns: 'id', 'body'\); give --text-field",
        ),
        (
            "e.jsonl",
            '{"text": "a"}\n{"body": 1}\n',
            None,
            r"e\.jsonl:2: no field 'text' .*; give --text-field",
        ),
        ("e.jsonl", "[1]\n", None, r"e\.jsonl:1: expected a JSON object"),
        ("e.jsonl", "{oops\n", None, r"e\.jsonl:1: not a JSON object"),
        ("e.csv", "id,text\n1,a,b\n", None, r"e\.csv:2: 3 columns, the header has 2"),
        ("e.jsonl", '{"text": 3}\n', None, r"e\.jsonl:1: text: expected a string, got 3"),
        ("e.txt", "a\n", "body", r"--text-field body: .*e\.txt is read as one text per line"),
        ("missing.txt", None, None, r"missing\.txt: file not found"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, name: str, content: str | None, field: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError, match=message):
        predict.read_texts(path, text_field=field)


def test_csv_and_jsonl_are_read_by_the_training_readers(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a"}\n{"text": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.jsonl:2: text: expected a string, got 2"):
        predict.read_texts(path)


def test_lines_are_split_at_newlines_only(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes("a\x0cb\r\nc\u2028d\n\nlast".encode())
    assert predict.read_texts(path) == ["a\x0cb", "c\u2028d", "", "last"]


def test_a_terminal_on_stdin_is_no_input() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with pytest.raises(UsageError, match="no texts: give a file of texts, or pipe them"):
        predict.read_texts(None, stdin=Terminal("typed"))


def test_undecodable_input_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(UsageError, match=r"latin\.txt:2: not UTF-8 text \(byte 0xe9\)"):
        predict.read_texts(path)


# --- the command -------------------------------------------------------------------------------


def test_jsonl_from_stdin_with_top(model_path: Path) -> None:
    code, out, err = run("predict", "-m", str(model_path), "--top", "2", stdin="what is this\n")
    assert code == 0, err
    (record,) = [json.loads(line) for line in out.splitlines()]  # not a terminal: jsonl
    assert record["text"] == "what is this" and record["label"] in CLASS_NAMES
    assert record["top"][0]["label"] == record["label"]
    assert record["top"][0]["probability"] >= record["top"][1]["probability"]


def test_csv_output_matches_the_api(model_path: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"q": t}) + "\n" for t in TEXTS), encoding="utf-8")
    code, out, err = run("predict", "-m", str(model_path), str(source), "--text-field", "q",
                         "-f", "csv", "-k", "2")  # fmt: skip
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["text", "label", "probability", "label_2", "probability_2"]
    assert [row[0] for row in rows[1:]] == TEXTS
    assert [row[1] for row in rows[1:]] == hpsearch.load_model(model_path).predict(TEXTS)


def test_table_output(model_path: Path) -> None:
    code, out, err = run("predict", "-m", str(model_path), "-f", "table", stdin="what is this\n")
    assert code == 0, err
    assert "what is this" in out and "label" in out


def _corrupt(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _foreign_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x/data.pkl", b"not a pickle")


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["-m", "absent.pt"], r"absent\.pt: checkpoint not found"),
        (_corrupt, ["-m", "{model}"], r"m\.pt: not a readable hpsearch checkpoint"),
        (_foreign_zip, ["-m", "{model}"], r"m\.pt: not a readable hpsearch checkpoint"),
        (None, ["-m", "{model}", "--top", "0"], r"--top 0: must be in \[1, 3\]"),
        (None, ["-m", "{model}", "--top", "4"], r"--top 4: must be in \[1, 3\]"),
        (None, ["-m", "{model}", "-s", "x"], "give one of --model FILE or --study NAME"),
        (None, [], "give one of --model FILE or --study NAME"),
    ],
)
def test_bad_command_lines_are_one_line_and_exit_2(
    model_path: Path, setup: object, args: list[str], message: str
) -> None:
    if callable(setup):
        setup(model_path)
    args = [a.format(model=model_path) for a in args]
    code, out, err = run("predict", *args, stdin="what\n")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err


def test_a_text_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("hello\n")
    code, _, err = run("predict", "-m", str(path), stdin="what\n")
    assert code == 2 and "not a readable hpsearch checkpoint" in err


def test_empty_stdin_is_one_line(model_path: Path) -> None:
    code, _, err = run("predict", "-m", str(model_path), stdin="")
    assert code == 2 and err.strip() == "error: stdin: no texts to classify (the input is empty)"


def test_classifier_from_a_trained_checkpoint_keeps_its_weights(model_path: Path) -> None:
    loaded = training.load_checkpoint(model_path)
    direct = Classifier.from_checkpoint(loaded)
    again = hpsearch.load_model(model_path)
    np.testing.assert_array_equal(direct.predict_proba(TEXTS), again.predict_proba(TEXTS))

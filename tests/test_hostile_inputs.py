"""Hostile inputs (issue #17): uploaded checkpoints and corpora, absurd sizes and non-finite
numbers give one error line, never a traceback, a memory blow-up or NaN output."""
from __future__ import annotations

import io
import json
import math
import shutil
import zipfile

import pytest
import torch

from rnncore import checkpoint as C
from rnncore import data as D
from rnncore.checkpoint import (CheckpointError, export_checkpoint_zip, load_checkpoint,
                                load_checkpoint_bytes, save_checkpoint)
from rnncore.cli import main
from rnncore.model import CharRNN, ModelConfig

from cli_helpers import TINY, assert_user_error, run_cli

VOCAB = D.Vocab.build(["床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"])


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(cell="lstm", vocab_size=len(VOCAB), embedding_dim=5, hidden_size=7,
                      num_layers=2)
    return save_checkpoint(tmp_path / "ck", CharRNN(cfg), VOCAB, cfg, step=3,
                           metrics={"val_bpc": 4.5}, optimizer={"state": {}})


def edit_meta(path, change) -> None:
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    change(meta)
    (path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("change, words", [
    (lambda m: m["model_config"].update(hidden_size=3000), "shape"),
    (lambda m: m["model_config"].update(hidden_size=10**9), "parameters"),
    (lambda m: m["model_config"].update(num_layers=10**6), "num_layers"),
    (lambda m: m.update(step="abc"), "step"),
    (lambda m: m.update(step=True), "step"),
    (lambda m: m["metrics"].update(val_bpc="x"), "val_bpc"),
    (lambda m: m.update(train_config="a string"), "train_config"),
    (lambda m: m.update(extra=[1, 2]), "extra"),
    (lambda m: m.update(files={"model.safetensors": 5}), "files"),
    (lambda m: m["model_config"].update(hidden_size=None), "hidden_size must be a positive"),
])
def test_bad_meta_is_one_checkpoint_error_and_builds_no_model(saved, monkeypatch, change,
                                                                words):
    """Sizes in meta.json are checked against the safetensors header before anything is
    allocated: no model is ever built from them (hidden_size 12000 once cost 2.2 GB)."""
    edit_meta(saved, change)
    built = []
    monkeypatch.setattr(C.store, "CharRNN", lambda cfg: built.append(cfg))
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(saved)
    assert "\n" not in str(info.value) and built == []


def test_deep_or_huge_meta_is_refused_before_parsing(saved):
    (saved / "meta.json").write_text(nested(100_000))
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_checkpoint(saved)
    (saved / "meta.json").write_text(" " * (C.files.MAX_META_BYTES + 1) + "{}")
    with pytest.raises(CheckpointError, match="larger than 8 MB"):
        load_checkpoint(saved)


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_with_a_huge_meta_is_refused_by_its_size(saved):
    """A valid meta.json padded past the cap (tiny once compressed) is refused from the zip
    directory's size, and again while unpacking if that size lies."""
    padded = (saved / "meta.json").read_bytes() + b" " * C.files.MAX_META_BYTES
    blob = zipped({"meta.json": padded, "model.safetensors":
                   (saved / "model.safetensors").read_bytes()})
    assert len(blob) < 100_000
    with pytest.raises(CheckpointError, match="meta.json is larger than 8 MB"):
        load_checkpoint_bytes(blob)


def test_upload_errors_name_the_upload_and_the_optimizer_is_optional(saved):
    good = export_checkpoint_zip(saved)
    bad_meta = zipped({"meta.json": nested(5000).encode(),
                       "model.safetensors": (saved / "model.safetensors").read_bytes()})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_bytes(bad_meta, name="mine.zip")
    message = str(info.value)
    assert message.startswith("mine.zip/meta.json is corrupt") and "rnncore-ckpt-" not in message
    # the Generate page needs no optimizer state: a broken optimizer.pt does not matter
    broken = zipped({"meta.json": (saved / "meta.json").read_bytes(),
                     "model.safetensors": (saved / "model.safetensors").read_bytes(),
                     "optimizer.pt": b"not a torch file"})
    ckpt = load_checkpoint_bytes(broken, load_optimizer=False)
    assert ckpt.optimizer_state is None and ckpt.step == 3
    assert load_checkpoint_bytes(good).optimizer_state == {"state": {}}


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, value):
    torch.manual_seed(0)
    cfg = ModelConfig(cell="gru", vocab_size=len(VOCAB), embedding_dim=5, hidden_size=7,
                      num_layers=1)
    model = CharRNN(cfg)
    with torch.no_grad():
        model.head.weight[2, 3] = value
    path = save_checkpoint(tmp_path / "ck", model, VOCAB, cfg)
    with pytest.raises(CheckpointError, match="head.weight holds NaN or infinite values"):
        load_checkpoint(path)


def test_model_config_bounds_the_parameter_count():
    with pytest.raises(ValueError, match="parameters"):
        ModelConfig(vocab_size=5000, hidden_size=12_000)
    with pytest.raises(ValueError, match="num_layers must be at most"):
        ModelConfig(vocab_size=50, hidden_size=1, embedding_dim=1, num_layers=100_000)
    ModelConfig(vocab_size=6000, hidden_size=2048, num_layers=3)  # a large real model fits


def test_deeply_nested_corpus_is_a_corpus_error(tmp_path, capsys):
    raw = nested(3000).encode()
    with pytest.raises(D.CorpusError, match="nested too deeply"):
        D.load_corpus_bytes(raw, "poems.json")
    path = tmp_path / "poems.json"
    path.write_bytes(raw)
    code, _, err = run_cli(capsys, "train", *TINY, "--corpus", str(path), "--max-steps", "1",
                           "--out", str(tmp_path / "r"))
    assert_user_error(code, err, "nested too deeply")


@pytest.mark.parametrize("argv, words", [
    (["--hidden-size", "100000"], "parameters"),
    (["--weight-decay", "inf"], "weight_decay must be a finite number"),
    (["--max-minutes", "inf"], "max_minutes must be a finite positive number"),
    (["--lr", "nan"], "lr must be a positive number"),
])
def test_absurd_or_non_finite_settings_exit_2(capsys, tmp_path, argv, words):
    code, _, err = run_cli(capsys, "train", *TINY, "--max-steps", "1",
                           "--out", str(tmp_path / "r"), *argv)
    assert_user_error(code, err, words)


def test_gradflow_draws_are_bounded(capsys):
    code, _, err = run_cli(capsys, "gradflow", "--draws", "100000000")
    assert_user_error(code, err, "truncation_draws must be at most")


def test_out_below_a_file_is_one_line(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "train", *TINY, "--max-steps", "1",
                           "--out", str(tmp_path / "file" / "sub"))
    assert_user_error(code, err, "is a file, not a directory")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *TINY, "--max-steps", "2", "--out", str(out), "--json"]) == 0
    return out


@pytest.mark.parametrize("change, words", [
    (lambda m: m["data_position"].pop("offset"), "cannot be resumed"),
    (lambda m: m["data_position"].update(epoch="x"), "cannot be resumed"),
    (lambda m: m.update(train_config="a string"), "train_config must be dict"),
    (lambda m: m.update(extra=[1]), "extra must be dict"),
    (lambda m: m["train_config"].update(randomized_keep_prob=None), "TrainConfig"),
])
def test_resume_of_a_damaged_checkpoint_exits_2(capsys, tmp_path, trained_run, change, words):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    edit_meta(C.latest_checkpoint(run), change)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--max-steps", "4")
    assert_user_error(code, err, words)


def test_json_output_is_strict(capsys):
    from rnncore.commands import print_json

    print_json({"loss": float("nan"), "rows": [float("inf"), 1.5], "n": 2})
    out = capsys.readouterr().out

    def refuse(name):
        raise AssertionError(f"bare {name} in JSON output")

    assert json.loads(out, parse_constant=refuse) == {"loss": None, "rows": [None, 1.5], "n": 2}


def test_evaluate_prints_a_huge_perplexity_compactly(capsys, trained_run, monkeypatch):
    import rnncore.trainer

    diverged = {"loss": 700.0, "bpc": 700.0 / math.log(2), "perplexity": math.exp(700.0),
                "characters": 10, "loss_sum": 7000.0}
    monkeypatch.setattr(rnncore.trainer, "evaluate_model", lambda *a, **k: diverged)
    code, out, _ = run_cli(capsys, "evaluate", "--checkpoint", str(trained_run),
                           "--device", "cpu")
    assert code == 0 and "perplexity 1.014e+304" in out and len(out) < 400

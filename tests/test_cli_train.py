"""`python -m rnncore train` / `evaluate`: flags -> configs, JSON output, user errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from cli_helpers import TINY, assert_user_error, run_cli


def test_train_json_summary_and_evaluate_agree(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", *TINY, "--cell", "gru", "--max-steps", "3",
                              "--strategy", "full", "--out", str(out), "--json")
    assert code == 0
    summary = json.loads(stdout)  # stdout holds exactly the JSON document
    assert summary["steps"] == 3 and summary["stop_reason"] == "max_steps"
    assert summary["val_bpc"] == pytest.approx(summary["val_loss"] / 0.6931471805599453)
    assert summary["checkpoint"].endswith("step-000003")
    code, stdout, _ = run_cli(capsys, "evaluate", "--checkpoint", str(out), "--json",
                              "--device", "cpu")
    assert code == 0
    ev = json.loads(stdout)
    assert ev["step"] == 3 and ev["poems"] == 2 and ev["unknown_characters"] == 0
    assert ev["loss"] == pytest.approx(summary["val_loss"], rel=1e-9)
    assert ev["bpc"] == pytest.approx(summary["val_bpc"], rel=1e-9)
    code, stdout, _ = run_cli(capsys, "evaluate", "--checkpoint", str(out), "--device", "cpu")
    assert code == 0 and "bits/char" in stdout


def test_flags_reach_the_configs(capsys, tmp_path):
    from rnncore.checkpoint import load_checkpoint

    out = tmp_path / "run"
    code, _, _ = run_cli(capsys, "train", *TINY, "--cell", "rnn", "--engine", "autograd",
                         "--strategy", "randomized", "--update-interval", "5", "--keep-prob",
                         "0.7", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.5",
                         "--clip", "0.5", "--lr-schedule", "cosine", "--max-steps", "2",
                         "--seed", "7", "--dropout", "0.1", "--out", str(out), "--json")
    assert code == 0
    ckpt = load_checkpoint(out)
    tc = ckpt.train_config
    assert (tc["strategy"], tc["truncation_len"], tc["update_interval"]) == ("randomized", 8, 5)
    assert (tc["randomized_keep_prob"], tc["optimizer"], tc["lr"], tc["momentum"]) == \
        (0.7, "sgd", 0.05, 0.5)
    assert (tc["clip_norm"], tc["lr_schedule"], tc["seed"]) == (0.5, "cosine", 7)
    mc = ckpt.model_config
    assert (mc.cell, mc.engine, mc.hidden_size, mc.num_layers, mc.dropout) == \
        ("rnn", "autograd", 8, 1, 0.1)
    assert ckpt.trainer_state.data_config.max_poems == 8


def test_resume_through_the_cli(capsys, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", *TINY, "--max-steps", "2", "--out", str(out), "--json")[0] == 0
    code, stdout, _ = run_cli(capsys, "train", "--resume", str(out), "--max-steps", "4",
                              "--json", "--no-progress")
    assert code == 0 and json.loads(stdout)["steps"] == 4
    code, _, err = run_cli(capsys, "train", "--resume", str(out), "--cell", "gru",
                           "--max-steps", "6")
    assert_user_error(code, err, "cannot change cell when resuming")


@pytest.mark.parametrize("argv, words", [
    (["--cell", "transformer"], "unknown cell 'transformer'"),
    (["--corpus", "/no/such/corpus.json"], "corpus not found"),
    (["--strategy", "magic"], "unknown strategy"),
    (["--truncation", "8", "--update-interval", "9"], "cannot exceed"),
    (["--hidden-size", "0"], "hidden_size must be a positive integer"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--lr", "-1"], ""),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, words):
    code, _, err = run_cli(capsys, "train", *TINY, "--max-steps", "1",
                           "--out", str(tmp_path / "r"), *argv)
    assert_user_error(code, err, words)
    assert not (tmp_path / "r").exists()  # nothing was written


def test_existing_out_dir_is_never_overwritten(capsys, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = run_cli(capsys, "train", *TINY, "--max-steps", "1", "--out", str(out))
    assert_user_error(code, err, "already exists and is not empty")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"


def test_evaluate_bad_checkpoint(capsys, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", str(tmp_path / "nope"))
    assert_user_error(code, err, "checkpoint not found")


def test_real_process_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnncore", "train", "--cell", "lstmx",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "error: unknown cell 'lstmx' (choose from rnn, lstm, gru)"

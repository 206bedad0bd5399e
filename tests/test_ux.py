"""What issues #15 and #17 ask of rnncore itself, below the pages: one upload limit, the
model-only zip, every run listed and resumable, uploads checked before training, the CLI's
help and errors, shading that varies, the 七律-only warning, steadier and clearer charts,
and the benchmarks' conclusions."""
import dataclasses
import io
import math
import re
import tomllib
import zipfile
from pathlib import Path

import pytest
import torch

from rnncore import data as D
from rnncore import plots
from rnncore.checkpoint import (MAX_UPLOAD_MB, export_checkpoint_zip, latest_checkpoint,
                                load_checkpoint_bytes, save_checkpoint)
from rnncore.cli import build_parser, main
from rnncore.jobs import JobError, JobManager, list_runs, run_snapshot
from rnncore.model import CharRNN, ModelConfig
from rnncore.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
SMALL = ModelConfig(cell="gru", vocab_size=5, embedding_dim=16, hidden_size=16, num_layers=1)


@pytest.fixture(scope="module")
def corpus():
    return D.Corpus(poems=D.load_corpus("tang").poems[:60], source="tang[:60]")


def _cli_run(path: Path, steps: int = 3) -> Path:
    """A run as `python -m rnncore train` leaves it: checkpoints and steps.jsonl, no job.json."""
    Trainer(SMALL, TrainConfig(batch_size=8, truncation_len=16, max_steps=steps, eval_every=0,
                               eval_max_poems=8, out_dir=str(path)),
            D.DataConfig(max_poems=60)).run()
    return path


# --------------------------------------------------------------------------- uploads (#12)

def test_one_upload_limit():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["maxUploadSize"] == MAX_UPLOAD_MB


def test_model_only_zip_of_the_readme_model_fits_the_limit(tmp_path):
    vocab = D.Vocab.build(["".join(chr(0x4E00 + i) for i in range(4947)) + "，。"])
    cfg = ModelConfig(cell="lstm", vocab_size=len(vocab), embedding_dim=128, hidden_size=256,
                      num_layers=2)
    torch.manual_seed(0)
    model = CharRNN(cfg)
    opt = torch.optim.Adam(model.parameters())
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3  # moments as varied as a real run's
    opt.step()
    path = save_checkpoint(tmp_path / "ck", model, vocab, cfg, optimizer={"opt": opt.state_dict()})
    full, lite = export_checkpoint_zip(path), export_checkpoint_zip(path, include_optimizer=False)
    names = sorted(n.split("/")[-1] for n in zipfile.ZipFile(io.BytesIO(lite)).namelist())
    assert names == ["meta.json", "model.safetensors"]
    # the old 25 MB server limit refused the full zip; the model-only one is a third of it
    assert len(full) > 25 * 2**20 and len(full) > 2.5 * len(lite)
    assert len(lite) < MAX_UPLOAD_MB * 2**20
    ckpt = load_checkpoint_bytes(lite)
    assert ckpt.model_config == cfg and ckpt.optimizer_state is None


# --------------------------------------------------------------------------- runs (#10)

def test_every_run_is_listed_and_read_back(tmp_path, corpus):
    manager = JobManager(tmp_path, torch_threads=1)
    job = manager.start("A", SMALL, TrainConfig(batch_size=8, truncation_len=16, max_steps=4,
                                                eval_every=2, eval_max_poems=8), corpus=corpus)
    manager.wait("A", job, timeout=60)
    cli = _cli_run(tmp_path / "cli")
    runs = {Path(r.run_dir).name: r for r in list_runs(tmp_path)}
    assert set(runs) == {job, "cli"} and runs["cli"].status == "cli"
    assert runs[job].status == "finished"
    disk = run_snapshot(cli)
    assert [r["step"] for r in disk.steps] == [1, 2, 3] and disk.step == 3
    assert disk.status_line().startswith("Trained with the command line to step 3")
    assert run_snapshot(tmp_path / job).evals[-1]["step"] == 4


def test_any_session_resumes_a_run_on_disk(tmp_path):
    manager = JobManager(tmp_path, torch_threads=1)
    cli = _cli_run(tmp_path / "cli")
    new = manager.resume("B", run_dir=cli, budget_s=60)
    with pytest.raises(JobError, match="training in a session"):
        manager.resume("C", run_dir=cli)
    snap = manager.wait("B", new, timeout=60)
    assert snap.status == "finished" and snap.step == 6, snap.message  # 3 more: its step limit
    assert [r["step"] for r in snap.steps] == list(range(1, 7))
    assert snap.status_line().startswith("Finished: the step limit was reached at step 6")
    assert latest_checkpoint(cli).name == "step-000006"
    assert manager.stop("A", new) is False  # another session cannot stop it


def test_too_few_poems_are_refused_before_training(corpus):
    two = D.Corpus(poems=corpus.poems[:2], source="two")
    with pytest.raises(D.CorpusError, match="2 poems are too few.*at least 20"):
        D.check_trainable(two, D.DataConfig())
    with pytest.raises(D.CorpusError, match="19 poems"):
        D.check_trainable(corpus, D.DataConfig(max_poems=19))
    D.check_trainable(corpus, D.DataConfig(max_poems=20))


# --------------------------------------------------------------------------- CLI (#14)

def _help(command: str) -> str:
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return sub.format_help()


def test_train_help_states_the_real_defaults():
    text = " ".join(_help("train").split())
    assert "default: None" not in text and "(256)" not in text
    defaults = {"--hidden-size": ModelConfig.hidden_size, "--layers": ModelConfig.num_layers,
                "--embedding-dim": ModelConfig.embedding_dim, "--cell": ModelConfig.cell,
                "--truncation": TrainConfig.truncation_len, "--lr": TrainConfig.lr,
                "--batch-size": TrainConfig.batch_size, "--clip": TrainConfig.clip_norm,
                "--eval-every": TrainConfig.eval_every, "--keep-last": TrainConfig.keep_last,
                "--seed": TrainConfig.seed, "--val-fraction": D.DataConfig.val_fraction,
                "--strategy": TrainConfig.strategy, "--optimizer": TrainConfig.optimizer}
    for flag, value in defaults.items():
        match = re.search(re.escape(flag) + r" [A-Z_]+ .*?\(default: ([^)]*)\)", text)
        assert match and match[1] == str(value), (flag, match and match[1], value)


def test_generate_help_explains_every_option():
    sub = build_parser()._subparsers._group_actions[0].choices["generate"]
    bare = [a.dest for a in sub._actions if not a.help]
    assert bare == [], bare


@pytest.mark.parametrize("argv,message", [
    (["--form", "qijue", "--lock", "9:白日依山盡黃河"], "a 七言絕句 has 4 lines (N is 1 to 4)"),
    (["--form", "qijue", "--lock", "2:白日依山"], "--lock 2 must have 7 characters"),
])
def test_lock_errors_count_lines_from_one(capsys, argv, message):
    assert main(["generate", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "locked_lines" not in err and "0-based" not in err, err


# --------------------------------------------------------------------------- Generate (#15)

def test_shading_is_relative_to_the_best_allowed_character():
    from rnncore.generate import GenerationConfig, generate, load_default_model

    ckpt = load_default_model()
    cfg = GenerationConfig(form="qilv", acrostic="春夏秋冬風花雪月", temperature=0.8, seed=3)
    poem = generate(ckpt.model, ckpt.vocab, cfg)[0]
    free = [r for r in poem.relative if r is not None]
    assert len(poem.relative) == len(poem.chars) and len(free) == 8 * 6  # heads, marks fixed
    assert all(0 < r <= 1 for r in free) and max(free) - min(free) > 0.5
    assert max(poem.probs[i] for i, r in enumerate(poem.relative) if r is not None) < 0.5
    greedy = generate(ckpt.model, ckpt.vocab, dataclasses.replace(cfg, strategy="greedy"))[0]
    assert all(math.isclose(r, 1.0) for r in greedy.relative if r is not None)


def test_forms_outside_the_training_data_are_named(tmp_path):
    from rnncore.checkpoint import load_checkpoint
    from rnncore.generate import form_outside_training, load_default_model

    # the bundled model was trained on every form (form start tokens): no warning
    bundled = load_default_model()
    assert all(form_outside_training(bundled, f) is None
               for f in ("wujue", "qijue", "wulv", "qilv"))
    # a model trained on the bundled corpus knows 七言律詩 only
    ckpt = load_checkpoint(_cli_run(tmp_path / "tang"), load_optimizer=False)
    assert form_outside_training(ckpt, "qilv") is None
    for form in ("wujue", "wulv"):
        assert "五言" in form_outside_training(ckpt, form)
        assert "outside its training data" in form_outside_training(ckpt, form)
    assert "七言絕句" in form_outside_training(ckpt, "qijue")


def test_cli_generate_names_a_form_outside_the_training_data(capsys, tmp_path):
    run = _cli_run(tmp_path / "tang")
    assert main(["generate", "--checkpoint", str(run), "--form", "wujue", "--seed", "1"]) == 0
    assert "note: This model was trained only on 七言律詩" in capsys.readouterr().err
    assert main(["generate", "--form", "wujue", "--seed", "1"]) == 0
    assert "note:" not in capsys.readouterr().err    # the bundled model knows every form


# --------------------------------------------------------------------------- charts (#13, #14)

def test_throughput_is_smoothed_over_characters_and_time():
    steps = [{"step": i, "tokens": 1000, "tokens_per_s": 600.0 if i % 2 else 15000.0}
             for i in range(1, 41)]
    fig = plots.throughput_figure(steps)
    raw, smooth = fig.data[0].y, fig.data[1].y
    assert max(raw) / min(raw) == 25
    assert max(smooth[20:]) / min(smooth[20:]) < 1.01  # steady: 2000 chars / 1.73 s
    assert smooth[-1] == pytest.approx(2000 / (1000 / 600 + 1000 / 15000))


def test_log_axes_are_labelled_in_full():
    rows = [{"cell": c, "strategy": s, "kind": k, "truncation_len": t, "update_interval": t,
             "seq_len": n, "us_per_token": 1.0 + t / n, "timed": True}
            for c in ("lstm", "gru", "rnn") for n in (64, 256, 1024, 4096)
            for s, k, t in [("full", "full", 64)] + [(f"tbptt k={t}", "truncated", t)
                                                    for t in (8, 16, 32, 64, 128, 256)]]
    fig = plots.bptt_time_figure(rows)
    assert sum(1 for t in fig.data if t.showlegend is not False) == 7  # a strategy once
    axis = fig.layout.xaxis
    assert axis.type == "log" and list(axis.ticktext) == ["64", "256", "1024", "4096"]


def test_lag_chart_scales_to_the_measurement_not_the_reference():
    lags = list(range(1, 41))
    fig = plots.jacobian_lag_figure({"RNN": (lags, [0.9 ** L for L in lags])},
                                    {"bound": (lags, [2.8 ** L for L in lags])})
    low, high = fig.layout.yaxis.range
    # a decade around the measured 0.9 .. 0.9^40, not up to the bound's 2.8^40 = 1e18
    assert high == pytest.approx(math.log10(0.9) + 1) and low == pytest.approx(
        40 * math.log10(0.9) - 1)


# --------------------------------------------------------------------------- benchmarks (#13)

def test_what_to_choose_from_the_committed_reports():
    from benchmarks.summary import KINDS, reports_by_kind, what_to_choose

    results = ROOT / "benchmarks" / "results"
    by_kind = reports_by_kind(results)
    assert set(by_kind) <= set(KINDS) and "bptt_time" in by_kind
    every = what_to_choose(results, by_kind)
    full = [c for c in every if c.kind == "qps" and "full Tang corpus" in c.text]
    assert len(full) == 1 and "8.29 held-out bits per character against 9.05" in full[0].text
    assert "(mean of 3 seeds, +0.76) at 3.77x" in full[0].text
    found = {c.kind: c for c in every}
    assert set(found) == {"bptt_time", "bptt_memory", "fidelity", "convergence", "layers",
                          "step", "qps", "decoding"}
    # the README's "What to choose" numbers, computed from the newest report of each kind
    assert "LSTM 0.78x, GRU 0.80x, RNN 0.96x" in found["bptt_time"].text
    assert "up to 1.07x (RNN)" in found["bptt_time"].text
    assert "14.9 MiB" in found["bptt_memory"].text and "610 MiB" in found["bptt_memory"].text
    assert "0.99927" in found["fidelity"].text
    assert "7.77" in found["convergence"].text and "7.87" in found["convergence"].text
    assert found["bptt_time"].report == "20261129-025815-cpu"
    bundled = [c for c in every if c.kind == "qps" and "on the bundled 七律, after 600 s" in c.text]
    assert len(bundled) == 1
    assert "7.34 held-out bits per character against 7.55" in bundled[0].text
    assert "(mean of 3 seeds, +0.21) at 2.15x" in bundled[0].text


def test_quick_reports_are_listed_but_not_concluded_from(tmp_path):
    from benchmarks.config import BenchConfig
    from benchmarks.report import run_benchmark, write_report
    from benchmarks.summary import reports_by_kind, targets_note, what_to_choose

    results = run_benchmark(BenchConfig.preset(quick=True), ("layers",))
    write_report(results, tmp_path, png=False)
    assert list(reports_by_kind(tmp_path)) == ["layers"]
    assert what_to_choose(tmp_path) == []
    note = targets_note(results)
    assert "B4 T8 I16 H32" in note and "fixed costs per call" in note
    assert targets_note({"config": {"quick": False}}) is None

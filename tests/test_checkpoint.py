"""Checkpoints (rnncore/checkpoint/): round trips, atomic saves, errors, retention, zips, the
trainer state (and its old layout), the step log and the job file."""
from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from rnncore import checkpoint as C
from rnncore.checkpoint import (
    FORMAT,
    CheckpointError,
    CheckpointManager,
    StepLog,
    TrainerState,
    capture_rng_state,
    checkpoint_stamp,
    is_checkpoint_dir,
    export_checkpoint_zip,
    import_checkpoint_zip,
    latest_checkpoint,
    load_checkpoint,
    load_checkpoint_bytes,
    read_job_file,
    read_meta,
    read_step_records,
    restore_rng_state,
    save_checkpoint,
    write_job_file,
)
from rnncore.data import DataConfig, Vocab
from rnncore.model import CharRNN, ModelConfig

VOCAB = Vocab.build(["床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"])


@dataclass
class FakeTrainConfig:
    lr: float = 0.01
    truncation_len: int = 32


def make_model(cell="lstm", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(cell=cell, vocab_size=len(VOCAB), embedding_dim=5, hidden_size=7,
                      num_layers=2, engine="native")
    return CharRNN(cfg), cfg


def trained(cell="lstm"):
    """A model and an Adam optimizer that has taken one step (so it has state)."""
    model, cfg = make_model(cell)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    tokens = torch.tensor([VOCAB.encode_poem("床前明月光，")])
    model(tokens)[0].sum().backward()
    opt.step()
    return model, cfg, opt


def outputs(model, tokens=None):
    tokens = torch.tensor([VOCAB.encode("疑是地上霜。舉頭")]) if tokens is None else tokens
    tokens = tokens.to(next(model.parameters()).device)
    model.eval()
    with torch.no_grad():
        return model(tokens)[0]


# --------------------------------------------------------------------------- round trip

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_round_trip_same_outputs(tmp_path, cell):
    model, cfg, opt = trained(cell)
    path = save_checkpoint(tmp_path / "ck", model, VOCAB, cfg, optimizer=opt,
                           train_config=FakeTrainConfig(), step=17,
                           metrics={"val_loss": 2.5, "train_loss": float("nan")},
                           data_position={"epoch": 1, "stream": {"offset": 40}},
                           extra={"note": "詩"})
    ckpt = load_checkpoint(path)
    torch.testing.assert_close(outputs(ckpt.model), outputs(model), rtol=0, atol=0)
    assert not ckpt.model.training
    assert ckpt.vocab == VOCAB and ckpt.model_config == cfg
    assert ckpt.step == 17 and ckpt.metrics["val_loss"] == 2.5
    assert ckpt.train_config == {"lr": 0.01, "truncation_len": 32}
    assert ckpt.data_position == {"epoch": 1, "stream": {"offset": 40}}
    assert ckpt.meta["format"] == FORMAT and ckpt.meta["device"] == "cpu"
    assert ckpt.meta["extra"] == {"note": "詩"} and ckpt.meta["created"]
    assert sorted(os.listdir(path)) == ["meta.json", "model.safetensors", "optimizer.pt"]


def test_optimizer_state_resumes_identically(tmp_path):
    model, cfg, opt = trained()
    path = save_checkpoint(tmp_path / "ck", model, VOCAB, cfg, optimizer=opt)
    ckpt = load_checkpoint(path)
    ckpt.model.train()
    opt2 = torch.optim.Adam(ckpt.model.parameters(), lr=0.01)
    opt2.load_state_dict(ckpt.optimizer_state)
    tokens = torch.tensor([VOCAB.encode_poem("低頭思故鄉。")])
    for m, o in ((model, opt), (ckpt.model, opt2)):
        o.zero_grad()
        m(tokens)[0].square().mean().backward()
        o.step()
    for a, b in zip(model.parameters(), ckpt.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_no_optimizer_is_none(tmp_path):
    model, cfg = make_model()
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "ck", model, VOCAB, cfg))
    assert ckpt.optimizer_state is None


def test_rng_state_round_trips_through_json(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = json.loads(json.dumps(capture_rng_state()))
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first
    model, cfg = make_model()
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "ck", model, VOCAB, cfg, rng_state=state))
    assert ckpt.rng_state == state
    with pytest.raises(CheckpointError, match="RNG"):
        restore_rng_state({"torch": "bm90IGEgc3RhdGU="})


def test_refuses_to_overwrite_unless_asked(tmp_path):
    model, cfg = make_model(seed=0)
    path = save_checkpoint(tmp_path / "ck", model, VOCAB, cfg, step=1)
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(path, model, VOCAB, cfg, step=2)
    assert load_checkpoint(path).step == 1
    save_checkpoint(path, model, VOCAB, cfg, step=2, overwrite=True)
    assert load_checkpoint(path).step == 2
    assert os.listdir(tmp_path) == ["ck"]  # no temp or backup left


def test_unserialisable_metadata_fails_before_writing(tmp_path):
    model, cfg = make_model()
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "ck", model, VOCAB, cfg, metrics={"x": object()})
    assert not (tmp_path / "ck").exists()


# --------------------------------------------------------------------------- atomicity

def test_crash_at_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    old_model, cfg = make_model(seed=0)
    path = save_checkpoint(tmp_path / "ck", old_model, VOCAB, cfg, step=1)
    new_model, _ = make_model(seed=1)
    real_rename = os.rename

    def crash_on_install(src, dst):
        if ".tmp-" in Path(src).name:
            raise OSError("simulated crash")
        return real_rename(src, dst)

    monkeypatch.setattr(C.store.os, "rename", crash_on_install)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, new_model, VOCAB, cfg, step=2, overwrite=True)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path / "fresh", new_model, VOCAB, cfg)
    monkeypatch.undo()
    ckpt = load_checkpoint(path)
    assert ckpt.step == 1
    torch.testing.assert_close(outputs(ckpt.model), outputs(old_model), rtol=0, atol=0)
    assert os.listdir(tmp_path) == ["ck"]


def test_crash_while_writing_weights(tmp_path, monkeypatch):
    model, cfg = make_model()
    path = save_checkpoint(tmp_path / "ck", model, VOCAB, cfg, step=1)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, VOCAB, cfg, step=2, overwrite=True)
    monkeypatch.undo()
    assert load_checkpoint(path).step == 1
    assert os.listdir(tmp_path) == ["ck"]


SAVER = textwrap.dedent(
    """
    import sys, torch
    from rnncore.checkpoint import CheckpointManager
    from rnncore.data import Vocab
    from rnncore.model import CharRNN, ModelConfig
    vocab = Vocab.build(["abcdefgh"])
    cfg = ModelConfig(cell="gru", vocab_size=len(vocab), embedding_dim=32, hidden_size=64,
                      num_layers=2, engine="native")
    model = CharRNN(cfg)
    opt = torch.optim.Adam(model.parameters())
    manager = CheckpointManager(sys.argv[1], keep_last=2)
    for step in range(1, 100000):
        manager.save(model, vocab, cfg, step=step, optimizer=opt,
                     metrics={"val_loss": 1.0 / step})
        print(step, flush=True)
    """
)


def test_killed_saver_leaves_a_loadable_latest(tmp_path):
    """SIGKILL a process that saves in a loop, at a random moment; the run stays usable."""
    rng = random.Random(0)
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    for _ in range(1):  # each round costs a process start (torch import): keep it to one
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(run_dir)],
                                stdout=subprocess.PIPE, text=True, env=env)
        try:
            for _ in range(3):  # let a few saves complete, then kill mid-way through one
                assert proc.stdout.readline(), "saver process died"
            proc.stdout.close()
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=60)
        latest = latest_checkpoint(run_dir)
        assert latest is not None
        ckpt = load_checkpoint(run_dir)  # a run directory resolves to its latest checkpoint
        assert ckpt.path == latest and ckpt.step >= 3
        assert ckpt.optimizer_state is not None
        CheckpointManager(run_dir)  # cleans temp dirs of the interrupted save
        assert not [p for p in os.listdir(run_dir) if ".tmp-" in p]


# --------------------------------------------------------------------------- bad input

@pytest.fixture()
def saved(tmp_path):
    model, cfg, opt = trained()
    return save_checkpoint(tmp_path / "ck", model, VOCAB, cfg, optimizer=opt)


def edit_meta(path, **changes):
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))
    return meta


def test_not_a_checkpoint(tmp_path, saved):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no meta.json"):
        load_checkpoint(tmp_path / "empty")
    edit_meta(saved, format="someone-else/2")
    with pytest.raises(CheckpointError, match="not an rnncore-checkpoint/1"):
        load_checkpoint(saved)
    (saved / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(saved)
    assert issubclass(CheckpointError, ValueError)


def test_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_checkpoint(saved)


def test_truncated_and_corrupt_weights(saved):
    weights = saved / "model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(saved)
    flipped = bytearray(blob)
    flipped[-3] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(saved)
    # without recorded hashes, safetensors itself must reject a truncated file
    edit_meta(saved, files={})
    weights.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        load_checkpoint(saved)
    weights.write_bytes(b"\x00" * 3)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(saved)


def test_vocab_and_shape_mismatch(saved):
    meta = json.loads((saved / "meta.json").read_text())
    edit_meta(saved, vocab={"itos": meta["vocab"]["itos"][:-1]})
    with pytest.raises(CheckpointError, match="vocab has"):
        load_checkpoint(saved)
    edit_meta(saved, vocab=meta["vocab"], model_config={**meta["model_config"], "hidden_size": 9})
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(saved)
    edit_meta(saved, model_config={**meta["model_config"], "cell": "gru"})
    with pytest.raises(CheckpointError, match="does not match|shape"):
        load_checkpoint(saved)
    edit_meta(saved, model_config={**meta["model_config"], "cell": "mamba"})
    with pytest.raises(CheckpointError, match="unknown cell"):
        load_checkpoint(saved)
    edit_meta(saved, model_config=meta["model_config"], vocab={"itos": ["a"]})
    with pytest.raises(CheckpointError, match="vocab must start"):
        load_checkpoint(saved)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_code_in_optimizer_file_is_not_run(saved, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state": _Evil(str(marker))}, saved / "optimizer.pt")
    edit_meta(saved, files={})
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(saved)
    assert not marker.exists()
    assert load_checkpoint(saved, load_optimizer=False).optimizer_state is None


def test_vocab_must_match_config_on_save(tmp_path):
    model, cfg = make_model()
    with pytest.raises(CheckpointError, match="vocab has"):
        save_checkpoint(tmp_path / "ck", model, Vocab.build(["ab"]), cfg)


# --------------------------------------------------------------------------- manager

def test_manager_keeps_last_and_best(tmp_path):
    model, cfg = make_model()
    manager = CheckpointManager(tmp_path / "run", keep_last=2)
    for step, loss in [(10, 5.0), (20, 1.0), (30, 4.0), (40, 3.0), (50, float("nan"))]:
        manager.save(model, VOCAB, cfg, step=step, metrics={"val_loss": loss})
    names = [p.name for p in manager.checkpoints()]
    assert names == ["step-000020", "step-000040", "step-000050"]
    assert manager.latest().name == "step-000050"
    assert manager.best().name == "step-000020" and manager.best_value() == 1.0
    assert json.loads((tmp_path / "run" / "latest.json").read_text())["step"] == 50
    manager.save(model, VOCAB, cfg, step=60, metrics={"val_loss": 0.5})
    assert [p.name for p in manager.checkpoints()] == ["step-000050", "step-000060"]
    assert sorted(os.listdir(tmp_path / "run")) == ["best.json", "latest.json", "step-000050",
                                                    "step-000060"]
    assert manager.best().name == "step-000060"
    assert manager.load_latest().step == 60
    with pytest.raises(ValueError):
        CheckpointManager(tmp_path / "other", keep_last=0)


def test_latest_falls_back_to_highest_step(tmp_path):
    model, cfg = make_model()
    manager = CheckpointManager(tmp_path, keep_last=5)
    for step in (1, 2, 3):
        manager.save(model, VOCAB, cfg, step=step)
    assert manager.best() is None  # no val_loss reported
    (tmp_path / "latest.json").write_text("garbage")
    assert latest_checkpoint(tmp_path).name == "step-000003"
    (tmp_path / "latest.json").write_text(json.dumps({"checkpoint": "../escape"}))
    assert latest_checkpoint(tmp_path).name == "step-000003"
    (tmp_path / ".step-000004.tmp-abc").mkdir()  # a crashed save
    assert latest_checkpoint(tmp_path).name == "step-000003"
    # a crash between moving step 3 aside and installing its replacement
    os.rename(tmp_path / "step-000003", tmp_path / ".step-000003.old-99")
    shutil.copytree(tmp_path / "step-000002", tmp_path / ".step-000002.old-98")
    assert latest_checkpoint(tmp_path).name == "step-000002"
    CheckpointManager(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["latest.json", "step-000001", "step-000002",
                                            "step-000003"]
    assert load_checkpoint(tmp_path).step == 3
    assert latest_checkpoint(tmp_path / "nothing-here") is None


# --------------------------------------------------------------------------- trainer state

STATE = TrainerState(data_config=DataConfig(max_poems=8, val_fraction=0.125), epoch=2,
                     lr_scale=0.5, best_val_loss=3.25, bad_evals=1, tokens_seen=1234,
                     elapsed_s=5.5, nonfinite_steps=1, world_size=1)


def test_trainer_state_round_trip(tmp_path):
    model, cfg = make_model()
    path = save_checkpoint(tmp_path / "ck", model, VOCAB, cfg, trainer_state=STATE,
                           extra={"note": "kept"})
    meta = read_meta(path)
    assert meta["trainer_state"]["data_config"]["max_poems"] == 8
    assert meta["extra"] == {"note": "kept"}
    assert load_checkpoint(path).trainer_state == STATE
    assert load_checkpoint(save_checkpoint(tmp_path / "bare", model, VOCAB, cfg)) \
        .trainer_state is None


def test_trainer_state_read_from_the_old_layout(tmp_path):
    """Before ``meta["trainer_state"]`` the same dict lived in ``extra.trainer``."""
    model, cfg = make_model()
    path = save_checkpoint(tmp_path / "ck", model, VOCAB, cfg, trainer_state=STATE)
    meta = read_meta(path)
    meta["extra"] = {"trainer": meta.pop("trainer_state")}
    (path / "meta.json").write_text(json.dumps(meta))
    assert load_checkpoint(path).trainer_state == STATE
    old = dict(meta["extra"]["trainer"])
    del old["world_size"]  # optional: 1
    assert TrainerState.from_dict(old) == STATE
    del old["lr_scale"]
    with pytest.raises(CheckpointError, match="invalid trainer state.*lr_scale"):
        TrainerState.from_dict(old)
    with pytest.raises(CheckpointError, match="invalid trainer state"):
        TrainerState.from_meta({"trainer_state": {**STATE.to_dict(), "data_config": "tang"}})


def test_bundled_model_says_what_it_was_trained_on():
    bundled = Path(__file__).resolve().parents[1] / "rnncore" / "assets" / "tang_default"
    assert is_checkpoint_dir(bundled)
    ckpt = load_checkpoint(bundled, load_optimizer=False)
    state = ckpt.trainer_state
    assert state.data_config == DataConfig(corpus="quantangshi", form_tokens=True)
    assert state.world_size == 1 and state.epoch > 0 and ckpt.vocab.has_forms
    assert ckpt.meta["extra"]["weights"] == "float16"


# --------------------------------------------------------------------------- run directory files

@dataclass
class Record:
    step: int
    loss: float


def test_step_log_and_its_reader(tmp_path):
    run = tmp_path / "run"
    log = StepLog(run, resume_step=0)
    for step in (1, 2, 3):
        log.write(Record(step, step / 2))
    assert read_step_records(run) == [{"step": s, "loss": s / 2} for s in (1, 2, 3)]
    assert read_step_records(run / "steps.jsonl") == read_step_records(run)
    StepLog(run, resume_step=2).write(Record(3, 9.0))  # resumed at 2: the old step 3 goes
    assert read_step_records(run) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 1.0},
                                      {"step": 3, "loss": 9.0}]
    with pytest.raises(CheckpointError, match="not found"):
        read_step_records(tmp_path)
    (tmp_path / "steps.jsonl").write_text('{"step": 1}\n{"step": ')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_step_records(tmp_path)


def test_job_file_checkpoint_dir_and_stamp(tmp_path):
    assert read_job_file(tmp_path) is None
    write_job_file(tmp_path, {"label": "诗", "status": "running"})
    assert read_job_file(tmp_path) == {"label": "诗", "status": "running"}
    assert sorted(os.listdir(tmp_path)) == ["job.json"]  # no temporary file left
    (tmp_path / "job.json").write_text("[1]")
    assert read_job_file(tmp_path) is None
    model, cfg = make_model()
    assert not is_checkpoint_dir(tmp_path) and checkpoint_stamp(tmp_path) == ""
    path = save_checkpoint(tmp_path / "ck", model, VOCAB, cfg, step=1)
    stamp = checkpoint_stamp(path)
    assert is_checkpoint_dir(path) and stamp
    time.sleep(0.01)
    save_checkpoint(path, model, VOCAB, cfg, step=2, overwrite=True)
    assert checkpoint_stamp(path) != stamp


# --------------------------------------------------------------------------- zip upload

def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_round_trip(saved, tmp_path):
    blob = export_checkpoint_zip(saved)
    ckpt = import_checkpoint_zip(blob, tmp_path / "imported")
    assert ckpt.path == tmp_path / "imported"
    reference = load_checkpoint(saved)
    torch.testing.assert_close(outputs(ckpt.model), outputs(reference.model), rtol=0, atol=0)
    in_memory = load_checkpoint_bytes(blob)
    torch.testing.assert_close(outputs(in_memory.model), outputs(reference.model))
    with pytest.raises(CheckpointError, match="already exists"):
        import_checkpoint_zip(blob, tmp_path / "imported")
    # files at the zip's root work too
    flat = make_zip({n: (saved / n).read_bytes() for n in C.CHECKPOINT_FILES})
    assert load_checkpoint_bytes(flat).vocab == VOCAB


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"../meta.json": b"{}", "model.safetensors": b""}, "unsafe path"),
        ({"/abs/meta.json": b"{}", "model.safetensors": b""}, "unsafe path"),
        ({"a/meta.json": b"{}", "a/../../model.safetensors": b""}, "unsafe path"),
        ({"readme.txt": b"hi"}, "not a checkpoint"),
        ({"a/meta.json": b"{}", "a/model.safetensors": b"", "b/meta.json": b"{}"},
         "more than one"),
        ({"a/meta.json": b"{}", "b/model.safetensors": b""}, "more than one folder"),
        ({"meta.json": b"{}", "model.safetensors": b""}, "not an rnncore-checkpoint"),
    ],
)
def test_bad_zips_are_rejected_and_leave_nothing(tmp_path, entries, message):
    with pytest.raises(CheckpointError, match=message):
        import_checkpoint_zip(make_zip(entries), tmp_path / "dest")
    assert os.listdir(tmp_path) == []


def test_not_a_zip_and_size_limit(saved, tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="not a zip"):
        load_checkpoint_bytes(b"PK but not really")
    blob = export_checkpoint_zip(saved)
    monkeypatch.setattr(C.archive, "MAX_ZIP_BYTES", 1000)
    with pytest.raises(CheckpointError, match="more than"):
        import_checkpoint_zip(blob, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_model_saved_as_cpu_tensors(tmp_path):
    model, cfg, opt = trained()
    model.cuda()
    opt = torch.optim.Adam(model.parameters())
    model(torch.tensor([[2, 4, 5]], device="cuda"))[0].sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck", model, VOCAB, cfg, optimizer=opt)
    from safetensors.torch import load_file

    assert all(t.device.type == "cpu" for t in load_file(str(path / "model.safetensors")).values())
    assert json.loads((path / "meta.json").read_text())["device"].startswith("cuda")
    ckpt = load_checkpoint(path)
    assert next(ckpt.model.parameters()).device.type == "cpu"
    exp_avg = next(iter(ckpt.optimizer_state["state"].values()))["exp_avg"]
    assert exp_avg.device.type == "cpu"
    on_gpu = load_checkpoint(path, map_location="cuda")
    assert next(on_gpu.model.parameters()).device.type == "cuda"
    torch.testing.assert_close(outputs(on_gpu.model), outputs(model), rtol=0, atol=0)
    # across devices only up to float32 kernel differences
    torch.testing.assert_close(outputs(ckpt.model), outputs(model).cpu(), rtol=1e-3, atol=1e-4)

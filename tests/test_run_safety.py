"""Run safety (issue #17): a full disk, a kill, a stopped server, two trainers in one run
directory and concurrent job starts never lose or interleave what was saved."""
from __future__ import annotations

import builtins
import errno
import io
import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass

import pytest
import torch

from rnncore import data as D
from rnncore.checkpoint import (CheckpointError, CheckpointManager, StepLog, latest_checkpoint,
                                list_checkpoints, load_checkpoint, read_job_file, read_meta,
                                read_step_records, write_job_file)
from rnncore.jobs import JobError, JobManager
from rnncore.model import ModelConfig
from rnncore.trainer import TrainConfig, Trainer

from cli_helpers import TINY as CLI_TINY
from cli_helpers import assert_user_error, run_cli

TINY = [*CLI_TINY, "--json"]
MODEL = ModelConfig(cell="gru", vocab_size=5, embedding_dim=16, hidden_size=32, num_layers=1)


@dataclass
class Record:
    step: int
    loss: float


@pytest.fixture(scope="module")
def small_corpus():
    corpus = D.load_corpus("tang")
    return D.Corpus(poems=corpus.poems[:60], source="tang[:60]")


@pytest.fixture(scope="module")
def prepared():
    return D.prepare_data(D.DataConfig(max_poems=8, val_fraction=0.125))


@pytest.fixture(autouse=True)
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def job_config(**kw):
    base = dict(strategy="truncated", truncation_len=16, batch_size=8, lr=1e-2,
                max_steps=None, max_minutes=2.0, eval_every=0)
    base.update(kw)
    return TrainConfig(**base)


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ----------------------------------------------------------------------------- a full disk

def test_disk_full_during_a_save_is_one_line_and_keeps_earlier_checkpoints(
        capsys, tmp_path, monkeypatch):
    import safetensors.torch

    out = tmp_path / "run"
    real_save_file = safetensors.torch.save_file
    saves = []

    def disk_full_after_one(*args, **kwargs):
        saves.append(1)
        if len(saves) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save_file(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full_after_one)
    code, _, err = run_cli(capsys, "train", *TINY, "--max-steps", "6", "--checkpoint-every",
                           "2", "--out", str(out))
    assert_user_error(code, err, "No space left on device")
    # torch.save fails differently on a full disk
    monkeypatch.setattr(safetensors.torch, "save_file", real_save_file)

    def torch_disk_full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos "
                           "568000 vs 567888")

    monkeypatch.setattr(torch, "save", torch_disk_full)
    code, _, err = run_cli(capsys, "train", "--resume", str(out), "--max-steps", "6",
                           "--no-progress", "--json")
    assert_user_error(code, err, "unexpected pos 568000")
    monkeypatch.undo()
    assert [step for step, _ in list_checkpoints(out)] == [2]
    assert load_checkpoint(out).step == 2
    assert sorted(p.name for p in out.iterdir()) == ["latest.json", "step-000002",
                                                     "steps.jsonl"]


def test_a_failed_log_write_leaves_no_torn_line(tmp_path, monkeypatch):
    run = tmp_path / "run"
    log = StepLog(run, resume_step=0)
    for step in (1, 2):
        log.write(Record(step, 0.5))
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", half_then_full)
        with pytest.raises(CheckpointError, match="steps.jsonl: No space left on device"):
            log.write(Record(3, 0.5))
    log.write(Record(3, 0.25))
    assert read_step_records(run) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.5},
                                      {"step": 3, "loss": 0.25}]


def test_resume_repairs_a_torn_last_log_line(capsys, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", *TINY, "--max-steps", "2", "--out", str(out))[0] == 0
    with open(out / "steps.jsonl", "ab") as fh:  # a kill (or full disk) mid-append
        fh.write(b'{"step": 3, "epoch": 0, "loss": 4.')
    code, _, err = run_cli(capsys, "train", "--resume", str(out), "--max-steps", "4")
    assert code == 0, err
    assert [r["step"] for r in read_step_records(out)] == [1, 2, 3, 4]


class _Killed(BaseException):
    """A kill -9 at the first byte written."""


class _KilledOnWrite:
    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        raise _Killed

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def test_a_kill_while_resuming_never_empties_the_step_log(tmp_path, monkeypatch):
    """Resuming drops the lines past the checkpoint; the lines kept are never rewritten, so
    a kill at any write leaves them (the old rewrite emptied a 300,000-line log)."""
    run = tmp_path / "run"
    log = StepLog(run, resume_step=0)
    for step in range(1, 7):
        log.write(Record(step, step / 4))
    real_open = builtins.open

    def killing_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return _KilledOnWrite(fh) if any(c in mode for c in "wax+") else fh

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", killing_open)
        patch.setattr(io, "open", killing_open)
        try:
            StepLog(run, resume_step=2)
        except _Killed:
            pass
    assert [r["step"] for r in read_step_records(run)][:2] == [1, 2]


# ----------------------------------------------------------------------------- one writer

def make_trainer(prepared, out_dir, **kw):
    model_cfg = ModelConfig(cell="gru", vocab_size=len(prepared.vocab), embedding_dim=8,
                            hidden_size=8, num_layers=1)
    cfg = TrainConfig(**{**dict(truncation_len=8, batch_size=2, max_steps=2, eval_every=0,
                                device="cpu", out_dir=str(out_dir)), **kw})
    return Trainer(model_cfg, cfg, data=prepared)


def test_a_run_directory_has_one_trainer_at_a_time(prepared, tmp_path):
    from rnncore.checkpoint import RunLock

    out = tmp_path / "run"
    other = RunLock(out)
    other.acquire()  # another trainer (this process stands in for it)
    with pytest.raises(CheckpointError, match=f"in use by another trainer \\(pid {os.getpid()}"):
        make_trainer(prepared, out).run()
    assert [p.name for p in out.iterdir()] == [".lock"]  # nothing of the refused run
    other.release()
    first = make_trainer(prepared, out)
    first.run()
    resumed = Trainer.resume(out, {"max_steps": 4}, data=prepared)
    other.acquire()
    with pytest.raises(CheckpointError, match="in use by another trainer"):
        resumed.run()
    other.release()
    assert resumed.run().steps == 4
    # a fresh trainer never writes over another run's checkpoints
    with pytest.raises(CheckpointError, match="already holds a run's checkpoints"):
        make_trainer(prepared, out).run()
    assert [r["step"] for r in read_step_records(out)] == [1, 2, 3, 4]
    assert not (out / ".lock").exists()


@pytest.mark.slow
def test_two_cli_trainers_started_together_do_not_share_a_run(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "rnncore", "train", *TINY, "--max-steps", "30",
           "--checkpoint-every", "5", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    time.sleep(0.3)
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env)
    results = sorted([(p.wait(timeout=240), p.stderr.read()) for p in (first, second)])
    assert [code for code, _ in results] == [0, 2], results
    assert results[1][1].startswith("error: ") and len(results[1][1].splitlines()) == 1
    assert [r["step"] for r in read_step_records(out)] == list(range(1, 31))
    assert load_checkpoint(out).step == 30


# ----------------------------------------------------------------------------- app jobs

def test_jobs_save_periodically_and_a_live_run_is_listed_as_training(tmp_path, small_corpus):
    from rnncore.jobs import ACTIVE
    from rnncore.jobs.manager import JOB_CHECKPOINT_MINUTES

    manager = JobManager(tmp_path, torch_threads=1)
    job_id = manager.start("A", MODEL, job_config(checkpoint_minutes=0.002), corpus=small_corpus)
    wait_for(lambda: len(manager.snapshot("A").checkpoints) >= 2)
    runs = manager.list_runs("A")   # every run is listed (#17 item 10), this one as training
    assert manager.snapshot("A").active and [r.status in ACTIVE for r in runs] == [True]
    manager.stop("A")
    assert manager.wait("A", timeout=60).status == "stopped"
    default = manager.start("A", MODEL, job_config(max_minutes=None, max_steps=2),
                            corpus=small_corpus)
    snap = manager.wait("A", default, timeout=60)
    assert snap.train_config["checkpoint_minutes"] == JOB_CHECKPOINT_MINUTES
    assert job_id != default


def test_a_run_left_running_by_a_dead_server_is_interrupted_and_resumable(tmp_path,
                                                                          small_corpus):
    first = JobManager(tmp_path, torch_threads=1)
    job_id = first.start("A", MODEL, job_config(max_minutes=None, max_steps=4),
                         corpus=small_corpus)
    assert first.wait("A", job_id, timeout=60).status == "finished"
    info = read_job_file(tmp_path / job_id)
    write_job_file(tmp_path / job_id, {**info, "status": "running"})  # as a kill leaves it
    restarted = JobManager(tmp_path, torch_threads=1)
    [run] = restarted.list_runs("A")
    assert (run.run, run.status, run.step) == (job_id, "interrupted", 4)
    assert run.describe().endswith("(interrupted)")
    assert restarted.list_runs("B") == []
    with pytest.raises(JobError, match="no training run of this session"):
        restarted.resume("B", job_id)
    new_id = restarted.resume("A", job_id, corpus=small_corpus)
    snap = restarted.wait("A", new_id, timeout=60)
    assert snap.status == "finished" and snap.step == 8, snap.message
    assert read_job_file(tmp_path / job_id)["status"] == "finished"


EXIT_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from rnncore import data as D
    from rnncore.jobs import JobManager
    from rnncore.model import ModelConfig
    from rnncore.trainer import TrainConfig

    corpus = D.load_corpus("tang")
    corpus = D.Corpus(poems=corpus.poems[:60], source="tang[:60]")
    manager = JobManager(sys.argv[1], torch_threads=1)
    manager.start("S", ModelConfig(cell="gru", vocab_size=5, embedding_dim=16, hidden_size=32,
                                   num_layers=1),
                  TrainConfig(truncation_len=16, batch_size=8, max_steps=None, max_minutes=5,
                              eval_every=0), corpus=corpus)
    while manager.snapshot("S").step < 3:
        time.sleep(0.05)
    if sys.argv[2] == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(120)
    sys.exit(0)  # the interpreter exits with the job still training (Streamlit's way)
""")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "exit"])
def test_stopping_the_server_saves_the_running_job(tmp_path, how):
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(tmp_path), how],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == (143 if how == "sigterm" else 0), proc.stderr[-2000:]
    assert "terminate called" not in proc.stderr
    [run] = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert read_job_file(run)["status"] == "stopped"
    assert read_meta(latest_checkpoint(run))["step"] >= 3


def test_concurrent_starts_never_exceed_the_limit(tmp_path, small_corpus, monkeypatch):
    """The capacity check and the slot's reservation are one step: three starts with a
    slow corpus upload once gave 4 active jobs against a limit of 2."""
    real = D.load_corpus_bytes

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(D, "load_corpus_bytes", slow)
    manager = JobManager(tmp_path, max_active=2, torch_threads=1)
    text = "\n".join(p.text for p in small_corpus.poems[:30]).encode()
    gate, results = threading.Barrier(3), []

    def start():
        gate.wait()
        try:
            results.append(manager.start("A", MODEL, job_config(),
                                         corpus_upload=("mine.txt", text)))
        except JobError as exc:
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(isinstance(r, str) for r in results) == 2, results
    assert manager.active_count() == 2
    assert "at most 2" in str(next(r for r in results if isinstance(r, JobError)))
    manager.stop_all(60)


# ----------------------------------------------------------------------------- leftovers

def test_stale_pointer_temps_are_removed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in (".latest.json.k3j2.tmp", ".best.json.x9.tmp"):
        (run / name).write_text("{")
    (run / "notes.tmp").write_text("mine")
    CheckpointManager(run)
    assert sorted(p.name for p in run.iterdir()) == ["notes.tmp"]


def test_a_relative_corpus_path_is_saved_absolute(capsys, tmp_path, monkeypatch, small_corpus):
    (tmp_path / "poems.txt").write_text("\n".join(p.text for p in small_corpus.poems[:12]),
                                        encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "train", *TINY, "--corpus", "poems.txt", "--max-steps", "2",
                   "--out", "run")[0] == 0
    saved = load_checkpoint(tmp_path / "run").trainer_state.data_config.corpus
    assert saved == str(tmp_path.resolve() / "poems.txt")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _, err = run_cli(capsys, "train", "--resume", "../run", "--max-steps", "4")
    assert code == 0, err

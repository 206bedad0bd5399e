"""``JobManager``: runs each ``Trainer`` in a daemon thread with a ``threading.Event`` to stop it.

Jobs are keyed by a *session id* (one per browser session): a session only ever sees and
controls its own jobs. Jobs save a checkpoint every ``JOB_CHECKPOINT_MINUTES`` and, when
the interpreter exits (a server stopped by SIGTERM), are stopped and joined first, so they
save and record their end. An uploaded corpus is saved in the job's run directory, so a run
can be resumed from its latest checkpoint after the server restarts (``resume`` finds a
run of the session on disk).
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as _dt
import os
import signal
import sys
import threading
import uuid
import weakref
from pathlib import Path
from typing import Iterator

import torch

from rnncore import data as D
from rnncore.checkpoint import TrainerState, latest_checkpoint, read_job_file, read_meta
from rnncore.jobs.job import ACTIVE, JobError, JobSnapshot, _Job, form_for_poems
from rnncore.jobs.runs import (CheckpointInfo, default_runs_dir, list_runs, new_run_dir,
                               run_snapshot)
from rnncore.model import ModelConfig
from rnncore.trainer import TrainConfig, Trainer

JOB_CHECKPOINT_MINUTES = 1.0  # a job killed with its server loses at most this much training
SHUTDOWN_TIMEOUT_S = 30.0     # per job, at interpreter exit: one step, an evaluation, a save
_MANAGERS: weakref.WeakSet = weakref.WeakSet()


def _stop_all_managers() -> None:
    # atexit runs while daemon threads still run, before the interpreter (and torch, whose
    # hooks were registered earlier and so run later) tears down: a training thread still
    # inside a torch op then aborts the process ("terminate called without an active
    # exception") and loses everything since its last checkpoint.
    for manager in list(_MANAGERS):
        manager.stop_all(SHUTDOWN_TIMEOUT_S)


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into a normal exit (so the atexit hook runs) where nobody else handles
    it; a server like Streamlit installs its own handler, which exits normally too."""
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


atexit.register(_stop_all_managers)

# how a run ended (``TrainResult.stop_reason``), the start of the job's message
OUTCOMES = {"stopped": "Stopped by you", "time_budget": "Finished: the time budget ran out",
            "max_steps": "Finished: the step limit was reached",
            "early_stopping": "Finished: validation stopped improving",
            "diverged": "Stopped: the loss diverged"}


class JobManager:
    """Starts, tracks and stops training jobs; thread-safe; one per process.

    ``max_active`` jobs may train at once (over all sessions): more would only slow each
    other down on a small machine. ``torch_threads`` (if set) is applied with
    ``torch.set_num_threads`` when a job starts, so the server thread stays responsive.
    """

    def __init__(self, runs_dir: str | os.PathLike | None = None, max_active: int = 2,
                 torch_threads: int | None = None) -> None:
        if max_active < 1:
            raise ValueError(f"max_active must be at least 1, got {max_active}")
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.max_active = max_active
        self.torch_threads = torch_threads
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}        # job_id -> job
        self._order: dict[str, list[str]] = {}  # session_id -> job ids, oldest first
        self._reserved = 0                      # slots of jobs being prepared
        _MANAGERS.add(self)
        _exit_on_sigterm()

    # ---- queries

    def _job(self, session_id: str, job_id: str | None) -> _Job | None:
        with self._lock:
            ids = self._order.get(session_id, [])
            if job_id is None:
                job_id = ids[-1] if ids else None
            if job_id not in ids:
                return None
            return self._jobs[job_id]

    def snapshot(self, session_id: str, job_id: str | None = None) -> JobSnapshot | None:
        """The session's job ``job_id`` (default: its newest), or None."""
        job = self._job(session_id, job_id)
        return None if job is None else job.snapshot()

    def jobs(self, session_id: str) -> list[JobSnapshot]:
        with self._lock:
            jobs = [self._jobs[j] for j in self._order.get(session_id, [])]
        return [j.snapshot() for j in jobs]

    def active_count(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.status in ACTIVE)

    def list_runs(self, session_id: str | None = None) -> list[CheckpointInfo]:
        """The runs on disk; a run whose job.json says it is training but that no job of
        this process trains is listed as interrupted (its server died)."""
        with self._lock:
            live = {j.run_dir.name for j in self._jobs.values() if j.status in ACTIVE}
        return list_runs(self.runs_dir, session_id, live=live)

    list_checkpoints = list_runs  # its former name, kept for importers (tests)

    # ---- control

    def start(self, session_id: str, model_config: ModelConfig, train_config: TrainConfig,
              data_config: D.DataConfig | None = None, *, corpus: D.Corpus | None = None,
              corpus_upload: tuple[str, bytes] | None = None,
              budget_s: float | None = None, label: str = "") -> str:
        """Start training in the background; returns the job id.

        ``budget_s`` sets ``max_minutes`` (default: ``train_config.max_minutes``);
        ``corpus`` (already loaded) saves reparsing;
        ``corpus_upload = (filename, bytes)`` is written into the run directory and used as
        the corpus (validated first: a bad file raises ``CorpusError``).
        """
        data_config = data_config or D.DataConfig()
        with self._slot():
            if train_config.checkpoint_minutes is None:
                train_config = dataclasses.replace(train_config,
                                                   checkpoint_minutes=JOB_CHECKPOINT_MINUTES)
            if budget_s is not None:
                if not budget_s > 0:
                    raise JobError(f"the time budget must be positive, got {budget_s}")
                train_config = dataclasses.replace(train_config, max_minutes=budget_s / 60.0)
            elif train_config.max_minutes:
                budget_s = train_config.max_minutes * 60.0
            if corpus_upload is not None and corpus is None:
                name, raw = corpus_upload
                corpus = D.load_corpus_bytes(raw, name, simplified=data_config.simplified)
            if corpus is not None and len(corpus) == 0:
                raise D.CorpusError("the corpus has no valid poems "
                                    f"(rejected: {corpus.skip_reasons or 'none'})")
            run_dir = new_run_dir(self.runs_dir, model_config)
            if corpus_upload is not None:
                name, raw = corpus_upload
                suffix = ".json" if name.lower().endswith(".json") else ".txt"
                path = run_dir / f"corpus{suffix}"
                path.write_bytes(raw)
                data_config = dataclasses.replace(data_config, corpus=str(path.resolve()))
            train_config = dataclasses.replace(train_config, out_dir=str(run_dir))
            job = _Job(job_id=run_dir.name, session_id=session_id, run_dir=run_dir,
                       label=label or run_dir.name, model_config=model_config,
                       train_config=train_config, data_config=data_config, budget_s=budget_s,
                       created=_dt.datetime.now().isoformat(timespec="seconds"),
                       corpus=corpus if corpus_upload is None else None)
            job.save_job_file()
            self._launch(job, lambda: Trainer(model_config, train_config, data_config,
                                              corpus=corpus))
            return job.job_id

    def resume(self, session_id: str, job_id: str | None = None, *,
               budget_s: float | None = None, corpus: D.Corpus | None = None,
               run_dir: str | os.PathLike | None = None) -> str:
        """Continue the session's job ``job_id`` (default: newest) from its latest
        checkpoint, in the same run directory, for another ``budget_s`` seconds; after a
        server restart, the run ``job_id`` names on disk when this session started it. With
        ``run_dir``, continue any run on disk instead (another session's, the CLI's) as a
        new job of this session; not one that a job of this server is training."""
        if run_dir is not None:
            old = self._disk_job(run_dir)
        else:
            old = self._job(session_id, job_id) or self._job_on_disk(session_id, job_id)
        if old is None:
            raise JobError("no training run of this session to resume")
        if old.status in ACTIVE:
            raise JobError("this run is still training; stop it before resuming")
        ckpt = latest_checkpoint(old.run_dir)
        if ckpt is None:
            raise JobError(f"{old.run_dir.name} has no checkpoint to resume from")
        with self._slot():
            budget = budget_s if budget_s is not None else old.budget_s
            overrides = {"out_dir": str(old.run_dir), "checkpoint_minutes":
                         old.train_config.checkpoint_minutes or JOB_CHECKPOINT_MINUTES}
            if budget:
                overrides["max_minutes"] = budget / 60.0
            if old.train_config.max_steps is not None:
                # a step limit counts from the start of the run: extend it by as many steps
                overrides["max_steps"] = old.step + old.train_config.max_steps
            if old.data_config.corpus != "tang":
                corpus = None  # the uploaded corpus was saved in the run directory
            elif corpus is None:
                corpus = old.corpus
            train_config = TrainConfig.from_dict({**old.train_config.to_dict(), **overrides})
            job = _Job(job_id=f"{old.run_dir.name}+{uuid.uuid4().hex[:4]}",
                       session_id=session_id, run_dir=old.run_dir, label=old.label,
                       model_config=old.model_config, train_config=train_config,
                       data_config=old.data_config, budget_s=budget, created=old.created,
                       corpus=corpus)
            with old.lock:  # continue the charts where the last run stopped
                job.steps, job.evals = list(old.steps), list(old.evals)
                job.samples, job.checkpoints = list(old.samples), list(old.checkpoints)
                job.step, job.elapsed_s = old.step, old.elapsed_s
            job.elapsed_before = old.elapsed_s
            self._launch(job, lambda: Trainer.resume(ckpt, overrides, corpus=corpus))
            return job.job_id

    def _disk_job(self, run_dir: str | os.PathLike) -> _Job:
        """A finished job standing for the run saved in ``run_dir`` (configs, history)."""
        run_dir = Path(run_dir)
        with self._lock:
            busy = any(j.status in ACTIVE and j.run_dir.resolve() == run_dir.resolve()
                       for j in self._jobs.values())
        if busy:
            raise JobError(f"{run_dir.name} is training in a session of this server")
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise JobError(f"{run_dir.name} has no checkpoint to resume from")
        meta = read_meta(ckpt)
        state = TrainerState.from_meta(meta)
        if state is None or meta.get("train_config") is None:
            raise JobError(f"{run_dir.name} was not saved by a trainer (cannot resume)")
        disk = run_snapshot(run_dir)
        job = _Job(job_id=run_dir.name, session_id="", run_dir=run_dir, label=disk.label,
                   model_config=ModelConfig.from_dict(meta["model_config"]),
                   train_config=TrainConfig.from_dict(meta["train_config"]),
                   data_config=state.data_config, budget_s=None, status="stopped")
        job.steps, job.evals, job.checkpoints = disk.steps, disk.evals, disk.checkpoints
        job.step, job.elapsed_s = int(meta.get("step", 0)), state.elapsed_s
        return job

    def stop(self, session_id: str, job_id: str | None = None) -> bool:
        """Ask the job to stop after its current step (it then saves a checkpoint)."""
        job = self._job(session_id, job_id)
        if job is None or job.status not in ACTIVE:
            return False
        job.stop_event.set()
        with job.lock:
            job.status = "stopping"
        return True

    def wait(self, session_id: str, job_id: str | None = None,
             timeout: float | None = None) -> JobSnapshot | None:
        """Block until the job's thread ends (tests, CLI)."""
        job = self._job(session_id, job_id)
        if job is None:
            return None
        if job.thread is not None:
            job.thread.join(timeout)
        return job.snapshot()

    def stop_all(self, timeout: float | None = 10.0) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop_event.set()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(timeout)

    # ---- internals

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """Hold one of the ``max_active`` slots while a job is prepared and launched: the
        check and the reservation happen under one lock, so concurrent starts cannot
        overshoot (a launched job then counts as active itself)."""
        with self._lock:
            active = sum(1 for j in self._jobs.values() if j.status in ACTIVE) + self._reserved
            if active >= self.max_active:
                raise JobError(f"{active} training job(s) are already running on this server "
                               f"(at most {self.max_active}); stop one or wait for it to "
                               f"finish")
            self._reserved += 1
        try:
            yield
        finally:
            with self._lock:
                self._reserved -= 1

    def _job_on_disk(self, session_id: str, run_name: str | None) -> _Job | None:
        """The session's run ``run_name`` (from its job.json) when no job of this process
        has it: its server stopped or died, and it can be resumed."""
        if not run_name or run_name.startswith(".") or Path(run_name).name != run_name:
            return None
        run_dir = self.runs_dir / run_name.split("+")[0]
        info = read_job_file(run_dir)
        if info is None or info.get("session_id") != session_id:
            return None
        return self._disk_job(run_dir)

    def _launch(self, job: _Job, build) -> None:
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        with self._lock:
            self._jobs[job.job_id] = job
            self._order.setdefault(job.session_id, []).append(job.job_id)
        job.thread = threading.Thread(target=self._run, args=(job, build), daemon=True,
                                      name=f"rnncore-job-{job.job_id}")
        job.thread.start()

    def _run(self, job: _Job, build) -> None:
        if self.torch_threads:
            # OpenMP's thread count is per calling thread: set it in the training thread
            torch.set_num_threads(self.torch_threads)
        try:
            trainer = build()
            job.trainer = trainer
            job.sample_form = form_for_poems(trainer.data.train_poems)
            stats = trainer.data.corpus.stats()
            with job.lock:
                job.model_config = trainer.model_config  # the vocabulary's size, head "auto" chose
                job.data_stats = {k: stats[k] for k in ("source", "skipped")}
                job.data_stats.update(
                    poems=len(trainer.data.train) + len(trainer.data.val),
                    train_poems=len(trainer.data.train), val_poems=len(trainer.data.val),
                    vocab_size=len(trainer.vocab))
                if job.status == "preparing":
                    job.status = "running"
            job.save_job_file()
            result = trainer.run(callbacks=job, stop_event=job.stop_event)
            outcome = OUTCOMES.get(result.stop_reason, f"Ended ({result.stop_reason})")
            self._finish(job, "stopped" if result.stop_reason == "stopped" else "finished",
                         f"{outcome} at step {result.steps:,}", result)
        except ValueError as exc:  # user-fixable: bad corpus, bad setting, bad checkpoint
            self._finish(job, "failed", str(exc))
        except Exception as exc:  # keep the server alive; show what happened
            self._finish(job, "failed", f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _finish(job: _Job, status: str, message: str, result=None) -> None:
        """Publish a job's end. job.json is written under the job's lock, before the new
        status is visible: whoever sees the job finished also finds its run on disk."""
        job.trainer = None  # free the model and optimizer
        with job.lock:
            job.status, job.message = status, message
            if result is not None:
                job.elapsed_s = job.elapsed_before + result.elapsed_s
                if result.checkpoint and result.checkpoint not in job.checkpoints:
                    job.checkpoints.append(result.checkpoint)
            try:
                job.save_job_file()
            except OSError:
                pass

"""Background training jobs for the app (no streamlit here).

``JobManager`` runs each ``Trainer`` in a daemon thread with a ``threading.Event`` to stop
it. The trainer's callbacks (``on_step``, ``on_eval``, ``on_checkpoint``) append plain
dicts to the job's buffer under a lock; ``snapshot()`` copies the buffer for a page to poll,
so the training thread is never blocked by a reader for longer than a list copy.

Jobs are keyed by a *session id* (one per browser session): a session only ever sees and
controls its own jobs. Every job writes a run directory under ``runs_dir`` (env
``RNNCORE_RUNS_DIR``, default ``./runs``) with ``job.json`` (who started it, the configs,
its status) and the trainer's ``step-NNNNNN`` checkpoints (``rnncore.checkpoint`` reads and
writes both); an uploaded corpus is saved there too, so a run can be resumed from its latest
checkpoint after the server restarts. ``list_runs()`` lists finished runs for the pickers.

Progress of a time-budgeted run is ``elapsed / budget`` (and ``step / max_steps`` when a
step limit is set: the larger of the two), the ETA ``budget - elapsed``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnncore import data as D
from rnncore.checkpoint import latest_checkpoint, read_job_file, read_meta, write_job_file
from rnncore.model import ModelConfig
from rnncore.trainer import TrainConfig, Trainer

MAX_STEP_RECORDS = 20_000  # per job; older step records are thinned beyond this
MAX_SAMPLES = 50
ACTIVE = ("preparing", "running", "stopping")


class JobError(ValueError):
    """A job request that cannot be served (one-line message)."""


def default_runs_dir() -> Path:
    return Path(os.environ.get("RNNCORE_RUNS_DIR") or "runs")


def device_summary() -> str:
    """One line saying which device training and generation use ("auto" device)."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return f"CUDA GPU ({name}), torch {torch.__version__}"
    return (f"CPU ({os.cpu_count()} cores, torch threads: {torch.get_num_threads()}), "
            f"torch {torch.__version__}")


def default_torch_threads() -> int:
    """Leave one core to the web server (and the other sessions) when training on CPU."""
    return max(1, (os.cpu_count() or 2) - 1)


def form_for_poems(poems) -> str:
    """The ``poetry.FORMS`` key of the most common shape among ``poems`` (Poem objects),
    ``"qijue"`` when none of the four forms matches (samples then still show the model)."""
    from collections import Counter

    from rnncore.poetry import form_of_shape

    shapes = Counter((len(p.lines), len(p.lines[0]) - 1) for p in poems[:2000] if p.lines)
    for (lines, width), _ in shapes.most_common():
        form = form_of_shape(lines, width)
        if form is not None:
            return form.key
    return "qijue"


# --------------------------------------------------------------------------- snapshots

@dataclass
class JobSnapshot:
    """A copy of a job's state for display. ``steps``/``evals`` are lists of dicts (see
    ``rnncore.plots`` training section); ``samples`` are ``{"step", "text", "note"}``."""

    job_id: str
    status: str                 # preparing | running | stopping | finished | stopped | failed
    message: str
    run_dir: str
    label: str
    progress: float             # 0..1
    elapsed_s: float
    eta_s: float | None
    step: int
    steps: list[dict]
    evals: list[dict]
    samples: list[dict]
    checkpoints: list[str]
    clip_norm: float
    budget_s: float | None
    model_config: dict
    train_config: dict
    data_stats: dict

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def latest_checkpoint(self) -> str | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def latest(self, key: str):
        """The newest non-None value of ``key`` among the step records."""
        for record in reversed(self.steps):
            if record.get(key) is not None:
                return record[key]
        return None


@dataclass
class _Job:
    job_id: str
    session_id: str
    run_dir: Path
    label: str
    model_config: ModelConfig
    train_config: TrainConfig
    data_config: D.DataConfig
    budget_s: float | None
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    status: str = "preparing"
    message: str = ""
    steps: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    data_stats: dict = field(default_factory=dict)
    step: int = 0
    elapsed_s: float = 0.0
    elapsed_before: float = 0.0   # training time of earlier runs (resume)
    run_started: float | None = None
    created: str = ""
    thread: threading.Thread | None = None
    trainer: Trainer | None = None
    sample_form: str = "qijue"
    corpus: D.Corpus | None = None  # kept so a resume rebuilds the same vocabulary

    # ---- trainer callbacks (training thread)

    def on_step(self, record) -> None:
        row = {"step": record.step, "elapsed_s": record.elapsed_s, "loss": record.loss,
               "bpc": record.bpc if math.isfinite(record.bpc) else None,
               "grad_norm": record.grad_norm if math.isfinite(record.grad_norm) else None,
               "clipped": record.clipped, "lr": record.lr, "tokens": record.tokens,
               "tokens_per_s": record.tokens_per_s, "skipped": record.skipped,
               "event": record.event}
        with self.lock:
            self.steps.append(row)
            if len(self.steps) > MAX_STEP_RECORDS:  # keep memory bounded on long runs
                self.steps = self.steps[: MAX_STEP_RECORDS // 2 : 2] + \
                    self.steps[MAX_STEP_RECORDS // 2 :]
            self.step = record.step
            self.elapsed_s = record.elapsed_s
            if record.event:
                self.message = f"step {record.step}: {record.event}"

    def on_eval(self, record) -> None:
        recent = [r for r in self.steps[-50:] if r.get("bpc") is not None]
        train_bpc = (sum(r["bpc"] * r["tokens"] for r in recent)
                     / max(1, sum(r["tokens"] for r in recent))) if recent else None
        row = {"step": record.step, "elapsed_s": record.elapsed_s, "val_loss": record.val_loss,
               "val_bpc": record.val_bpc, "val_perplexity": record.val_perplexity,
               "train_bpc": train_bpc, "is_best": record.is_best}
        sample = self._sample(record.step)
        with self.lock:
            self.evals.append(row)
            if sample is not None:
                self.samples.append(sample)
                del self.samples[:-MAX_SAMPLES]

    def on_checkpoint(self, path) -> None:
        with self.lock:
            self.checkpoints.append(str(path))

    def _sample(self, step: int) -> dict | None:
        """One poem from the current weights (eval mode, restored afterwards)."""
        from rnncore.generate import GenerationConfig, generate

        trainer = self.trainer
        if trainer is None:
            return None
        model = trainer.model
        if next(model.parameters()).device.type != "cpu":
            # decoding builds its tensors on the CPU; a copy keeps the GPU model untouched
            import copy

            model = copy.deepcopy(model).cpu()
        was_training = model.training
        model.eval()
        try:
            cfg = GenerationConfig(form=self.sample_form, seed=step, temperature=0.8)
            poem = generate(model, trainer.vocab, cfg)[0]
            return {"step": step, "text": poem.text, "lines": poem.lines, "note": ""}
        except (ValueError, RuntimeError) as exc:  # a sample must never stop the training
            return {"step": step, "text": "", "lines": [], "note": f"no sample: {exc}"}
        finally:
            model.train(was_training)

    # ---- reads (any thread)

    def snapshot(self) -> JobSnapshot:
        with self.lock:
            steps, evals = list(self.steps), list(self.evals)
            samples, checkpoints = list(self.samples), list(self.checkpoints)
            status, message, step = self.status, self.message, self.step
            elapsed = self.elapsed_s
        if status in ("preparing", "running", "stopping") and self.run_started is not None:
            elapsed = self.elapsed_before + (time.perf_counter() - self.run_started)
        run_elapsed = elapsed - self.elapsed_before
        progress, eta = 0.0, None
        if self.budget_s:
            progress = run_elapsed / self.budget_s
            eta = max(0.0, self.budget_s - run_elapsed)
        max_steps = self.train_config.max_steps
        if max_steps:
            start_step = steps[0]["step"] - 1 if steps else step
            done = step - start_step
            todo = max_steps - start_step
            step_progress = done / max(1, todo)
            if step_progress > progress:
                progress = step_progress
                rate = done / max(run_elapsed, 1e-9)
                eta = (max_steps - step) / rate if rate > 0 else None
        if status in ("finished", "stopped"):
            progress, eta = 1.0 if status == "finished" else min(progress, 1.0), 0.0
        return JobSnapshot(
            job_id=self.job_id, status=status, message=message, run_dir=str(self.run_dir),
            label=self.label, progress=min(max(progress, 0.0), 1.0), elapsed_s=elapsed,
            eta_s=eta, step=step, steps=steps, evals=evals, samples=samples,
            checkpoints=checkpoints, clip_norm=self.train_config.clip_norm,
            budget_s=self.budget_s, model_config=self.model_config.to_dict(),
            train_config=self.train_config.to_dict(), data_stats=dict(self.data_stats))

    def save_job_file(self) -> None:
        info = {"job_id": self.job_id, "session_id": self.session_id, "label": self.label,
                "created": self.created, "status": self.status, "message": self.message,
                "step": self.step, "model_config": self.model_config.to_dict(),
                "train_config": self.train_config.to_dict(),
                "data_config": self.data_config.to_dict()}
        last = self.evals[-1] if self.evals else None
        if last:
            info["val_bpc"] = last["val_bpc"]
        write_job_file(self.run_dir, info)


# --------------------------------------------------------------------------- checkpoints

@dataclass
class CheckpointInfo:
    """A run directory's latest checkpoint, for pickers."""

    path: str
    run: str
    step: int
    cell: str
    hidden_size: int
    num_layers: int
    val_bpc: float | None
    created: str
    label: str

    def describe(self) -> str:
        bpc = f", val {self.val_bpc:.2f} bpc" if self.val_bpc is not None else ""
        return f"{self.run} — {self.cell.upper()} {self.num_layers}×{self.hidden_size}, " \
               f"step {self.step}{bpc}"


def list_runs(runs_dir: str | os.PathLike | None = None,
              session_id: str | None = None) -> list[CheckpointInfo]:
    """Latest checkpoint of every run under ``runs_dir``, newest first. With
    ``session_id``, runs the app started for *other* sessions are left out (runs made by the
    CLI, without a ``job.json``, are always listed). Unreadable runs are skipped."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if not root.is_dir():
        return []
    found = []
    for run_dir in root.iterdir():
        if not run_dir.is_dir() or run_dir.name.startswith("."):
            continue
        job = read_job_file(run_dir)
        if session_id is not None and job is not None and job.get("session_id") != session_id:
            continue
        if job is not None and job.get("status") in ACTIVE:
            continue  # still training (or died mid-run: its checkpoint is listed on resume)
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            continue
        try:
            meta = read_meta(ckpt)
            mc = meta["model_config"]
            metrics = meta.get("metrics") or {}
            found.append(CheckpointInfo(
                path=str(ckpt), run=run_dir.name, step=int(meta.get("step", 0)),
                cell=str(mc["cell"]), hidden_size=int(mc["hidden_size"]),
                num_layers=int(mc["num_layers"]), val_bpc=metrics.get("val_bpc"),
                created=str(meta.get("created", "")),
                label=(job or {}).get("label", run_dir.name)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda c: c.created, reverse=True)


list_checkpoints = list_runs  # its former name, kept for importers (tests)


# --------------------------------------------------------------------------- manager

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
        return list_runs(self.runs_dir, session_id)

    list_checkpoints = list_runs  # its former name, kept for the pages

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
        self._check_capacity()
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
        run_dir = self._new_run_dir(model_config)
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
               budget_s: float | None = None, corpus: D.Corpus | None = None) -> str:
        """Continue the session's job ``job_id`` (default: newest) from its latest
        checkpoint, in the same run directory, for another ``budget_s`` seconds."""
        old = self._job(session_id, job_id)
        if old is None:
            raise JobError("no training run of this session to resume")
        if old.status in ACTIVE:
            raise JobError("this run is still training; stop it before resuming")
        ckpt = latest_checkpoint(old.run_dir)
        if ckpt is None:
            raise JobError(f"{old.run_dir.name} has no checkpoint to resume from")
        self._check_capacity()
        budget = budget_s if budget_s is not None else old.budget_s
        overrides = {"out_dir": str(old.run_dir)}
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
        job = _Job(job_id=f"{old.run_dir.name}+{uuid.uuid4().hex[:4]}", session_id=session_id,
                   run_dir=old.run_dir, label=old.label, model_config=old.model_config,
                   train_config=train_config, data_config=old.data_config, budget_s=budget,
                   created=old.created, corpus=corpus)
        with old.lock:  # continue the charts where the last run stopped
            job.steps, job.evals = list(old.steps), list(old.evals)
            job.samples, job.checkpoints = list(old.samples), list(old.checkpoints)
            job.step, job.elapsed_s = old.step, old.elapsed_s
        job.elapsed_before = old.elapsed_s
        self._launch(job, lambda: Trainer.resume(ckpt, overrides, corpus=corpus))
        return job.job_id

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

    def _check_capacity(self) -> None:
        active = self.active_count()
        if active >= self.max_active:
            raise JobError(f"{active} training job(s) are already running on this server "
                           f"(at most {self.max_active}); stop one or wait for it to finish")

    def _new_run_dir(self, model_config: ModelConfig) -> Path:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        cell = re.sub(r"[^a-z0-9]", "", model_config.cell.lower())
        for _ in range(100):
            name = f"{stamp}-{cell}{model_config.hidden_size}-{uuid.uuid4().hex[:6]}"
            path = self.runs_dir / name
            try:
                path.mkdir()  # never reuse (and so never touch) an existing run
                return path
            except FileExistsError:
                continue
        raise JobError(f"cannot create a new run directory under {self.runs_dir}")

    def _launch(self, job: _Job, build) -> None:
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        with self._lock:
            self._jobs[job.job_id] = job
            self._order.setdefault(job.session_id, []).append(job.job_id)
        job.run_started = time.perf_counter()
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
                job.data_stats = {k: stats[k] for k in ("source", "skipped")}
                job.data_stats.update(
                    poems=len(trainer.data.train) + len(trainer.data.val),
                    train_poems=len(trainer.data.train), val_poems=len(trainer.data.val),
                    vocab_size=len(trainer.vocab))
                if job.status == "preparing":
                    job.status = "running"
            job.run_started = time.perf_counter()
            job.save_job_file()
            result = trainer.run(callbacks=job, stop_event=job.stop_event)
            with job.lock:
                job.status = "stopped" if result.stop_reason == "stopped" else "finished"
                job.message = f"stopped: {result.stop_reason.replace('_', ' ')} after " \
                              f"{result.steps} steps"
                job.elapsed_s = job.elapsed_before + result.elapsed_s
                if result.checkpoint and result.checkpoint not in job.checkpoints:
                    job.checkpoints.append(result.checkpoint)
        except ValueError as exc:  # user-fixable: bad corpus, bad setting, bad checkpoint
            with job.lock:
                job.status, job.message = "failed", str(exc)
        except Exception as exc:  # keep the server alive; show what happened
            with job.lock:
                job.status, job.message = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.trainer = None  # free the model and optimizer
            try:
                job.save_job_file()
            except OSError:
                pass

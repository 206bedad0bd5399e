"""One training job: the trainer's callbacks, its records and samples, and snapshots of them.

The callbacks (``on_step``, ``on_eval``, ``on_checkpoint``) run in the training thread and
append plain dicts under the job's lock; ``snapshot()`` copies them for a page to poll, so a
reader never blocks training for longer than a list copy.

Progress of a time-budgeted run is ``elapsed / budget`` (and ``step / max_steps`` when a
step limit is set: the larger of the two), the ETA ``budget - elapsed``.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rnncore import data as D
from rnncore.checkpoint import write_job_file
from rnncore.model import ModelConfig
from rnncore.trainer import TrainConfig, Trainer

MAX_STEP_RECORDS = 20_000  # per job; older step records are thinned beyond this
MAX_SAMPLES = 50
ACTIVE = ("preparing", "running", "stopping")


class JobError(ValueError):
    """A job request that cannot be served (one-line message)."""


STEP_KEYS = ("step", "elapsed_s", "loss", "bpc", "grad_norm", "clipped", "lr", "tokens",
             "tokens_per_s", "skipped", "event")


def step_row(record: dict) -> dict:
    """A step record (``StepRecord`` as a dict, or a line of ``steps.jsonl``) as the charts
    read it: the ``STEP_KEYS``, a non-finite number as None."""
    return {k: None if isinstance(record.get(k), float) and not math.isfinite(record[k])
            else record.get(k) for k in STEP_KEYS}


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


@dataclass
class JobSnapshot:
    """A copy of a job's state for display. ``steps``/``evals`` are lists of dicts (see
    ``rnncore.plots`` training section); ``samples`` are ``{"step", "text", "note"}``."""

    job_id: str
    status: str                 # preparing | running | stopping | finished | stopped | failed
                                # (| cli: a run on disk trained with the command line)
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

    def chars_per_s(self, last: int = 20) -> float | None:
        """Characters per second over the last ``last`` steps: their characters over their
        time (steady where single steps jump between fast and slow)."""
        rows = [r for r in self.steps[-last:] if r.get("tokens") and r.get("tokens_per_s")]
        seconds = sum(r["tokens"] / r["tokens_per_s"] for r in rows)
        return sum(r["tokens"] for r in rows) / seconds if seconds > 0 else None

    def status_line(self) -> str:
        """One line: what the job is doing (with the time left) or how it ended."""
        if self.status == "preparing":
            doing = "Preparing data and model"
        elif self.status in ACTIVE:
            doing = ("Training" if self.status == "running" else "Stopping") + \
                f" at step {self.step:,}"
        else:
            doing = self.message if self.status != "failed" else "Failed"
        times = f"{_clock(self.elapsed_s)} of training"
        if self.active and self.eta_s is not None:
            times += f", about {_clock(self.eta_s)} left"
        return f"{doing or self.status.capitalize()} — {self.label} — {times}"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds or 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


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
    created: str = ""
    thread: threading.Thread | None = None
    trainer: Trainer | None = None
    sample_form: str = "qijue"
    corpus: D.Corpus | None = None  # kept so a resume rebuilds the same vocabulary

    # ---- trainer callbacks (training thread)

    def on_step(self, record) -> None:
        row = step_row(dataclasses.asdict(record))
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
            cfg = GenerationConfig(form=self.sample_form, seed=step)
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
        if status in ACTIVE:  # training time, as the budget counts it (no evaluations)
            elapsed = steps[-1]["elapsed_s"] if steps else self.elapsed_before
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

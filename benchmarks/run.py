"""Run the benchmark sections and collect their rows, with the targets, in one results dict
(written and read back by ``benchmarks/report.py``)."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Callable

import torch

from benchmarks.config import BenchConfig
from benchmarks.measure import (layer_target, machine_info, matmul_peak_gflops,
                                measure_layer)
from benchmarks import measure_bptt as mb
from benchmarks import measure_step as mstep
from benchmarks.targets import check_targets

FORMAT = "rnncore-benchmarks/1"
RUN_SECTIONS = ("layers", "bptt", "convergence", "step")


def _noop(_msg: str) -> None:
    pass


def run_layers(cfg: BenchConfig, peak_gflops: float, progress: Callable = _noop) -> list[dict]:
    rows = []
    for i, size in enumerate(cfg.layer_sizes):
        for cell in cfg.cells:
            progress(f"layers: {cell} {size}")
            for r in measure_layer(cell, size, cfg.engines, cfg.device, cfg.warmup,
                                   cfg.repeats, peak_gflops):
                r["size_index"] = i
                r["target_ratio"] = layer_target(cell, i) if r["engine"] == "bptt" else None
                rows.append(r)
    return rows


def memory_truncation(cfg: BenchConfig) -> int:
    """The k whose memory is swept over ``memory_seq_lens`` (64, or the largest k <= 64)."""
    ks = [k for k in cfg.truncations if k <= 64]
    return max(ks) if ks else min(cfg.truncations)


def run_bptt_steps(cfg: BenchConfig, progress: Callable = _noop) -> list[dict]:
    """Step time for every strategy and T (the strategies of one T timed round-robin, see
    ``measure_bptt.measure_steps``); peak memory for full BPTT and TBPTT at
    ``memory_truncation`` over ``memory_seq_lens`` (in a separate pass from the timing:
    the profiler slows the CPU run)."""
    strategies = mb.default_strategies(cfg.truncations, cfg.uneven_truncation,
                                       randomized_k=memory_truncation(cfg))
    k_mem = memory_truncation(cfg)
    mem_labels = {"full", mb.Strategy.truncated(k_mem).label}
    rows = []
    for cell in cfg.cells:
        for seq_len in sorted(set(cfg.seq_lens) | set(cfg.memory_seq_lens)):
            timed = seq_len in cfg.seq_lens
            mem = mem_labels if seq_len in cfg.memory_seq_lens else set()
            todo = [s for s in strategies if (timed or s.label in mem)
                    and (s.kind == "full" or s.truncation_len <= seq_len)]
            if not todo:
                continue
            progress(f"bptt: {cell} T={seq_len}, {len(todo)} strategies round-robin")
            for r in mb.measure_steps(cell, todo, seq_len, batch=cfg.bptt_batch,
                                      embedding_dim=cfg.bptt_embedding,
                                      hidden_size=cfg.bptt_hidden, vocab_size=cfg.bptt_vocab,
                                      device=cfg.device,
                                      repeats=cfg.bptt_repeats if timed else 1,
                                      memory_labels=mem):
                r["timed"] = timed
                rows.append(r)
    return rows


def fidelity_strategies(cfg: BenchConfig) -> list[mb.Strategy]:
    T = cfg.fidelity_seq_len
    out = [mb.Strategy.truncated(k) for k in cfg.truncations if k <= T]
    k1, k2 = cfg.uneven_truncation
    if k2 <= T:
        out.append(mb.Strategy.truncated(k2, k1))
    out.append(mb.Strategy.randomized(T))  # d2l's randomized estimator of the full gradient
    return out


def run_convergence(cfg: BenchConfig, progress: Callable = _noop) -> tuple[list[dict], dict]:
    """Validation bpc vs training seconds for each cell and strategy; returns the rows and
    {cell: model trained with full BPTT} for the fidelity section."""
    from rnncore import data as D

    data = D.prepare_data(D.DataConfig(corpus="tang"))
    strategies = [mb.Strategy.full(), mb.Strategy.truncated(memory_truncation(cfg)),
                  mb.Strategy.truncated(max(cfg.truncations)),
                  mb.Strategy.truncated(cfg.uneven_truncation[1], cfg.uneven_truncation[0]),
                  mb.Strategy.randomized(memory_truncation(cfg))]
    strategies = list({s.label: s for s in strategies}.values())
    rows, trained = [], {}
    for cell in cfg.cells:
        for s in strategies:
            progress(f"convergence: {cell} {s.label} ({cfg.train_seconds:g} s)")
            r, trainer = mb.convergence_run(
                cell, s, seconds=cfg.train_seconds, eval_every_seconds=cfg.eval_every_seconds,
                batch=cfg.train_batch, seq_len=cfg.train_seq_len,
                embedding_dim=cfg.bptt_embedding, hidden_size=cfg.bptt_hidden,
                device=cfg.device, data=data, eval_max_poems=50 if cfg.quick else 300,
                seed=cfg.seed)
            rows += r
            if s.kind == "full":
                trained[cell] = trainer.model
    return rows, trained


def run_fidelity(cfg: BenchConfig, trained: dict, progress: Callable = _noop) -> list[dict]:
    """Truncated vs full gradients on one corpus batch, untrained and trained models."""
    rows = []
    strategies = fidelity_strategies(cfg)
    for cell in cfg.cells:
        progress(f"fidelity: {cell}")
        models = [(False, None)] + ([(True, trained[cell])] if cell in trained else [])
        for is_trained, model in models:
            vocab = cfg.bptt_vocab
            if model is None:
                model = mb.make_model(cell, vocab, cfg.bptt_embedding, cfg.bptt_hidden,
                                      cfg.device)
            vocab = model.cfg.vocab_size
            x, y = mb.corpus_batch(cfg.bptt_batch, cfg.fidelity_seq_len, vocab, offset=7919)
            rows += mb.gradient_fidelity(model, cell, strategies, x.to(cfg.device),
                                         y.to(cfg.device), trained=is_trained)
    return rows


def run_step(cfg: BenchConfig, progress: Callable = _noop) -> list[dict]:
    """The whole truncated training step at the real training size and its parts
    (``benchmarks/measure_step.py``), every engine of ``cfg.step_engines`` interleaved."""
    progress(f"step: {cfg.step_data} batch {cfg.step_batch} x {cfg.step_window}")
    data = mstep.step_batch(cfg.step_data, cfg.step_batch, cfg.step_window, cfg.step_vocab,
                            seed=cfg.seed)
    progress(f"step: {','.join(cfg.step_engines)}, V={data.vocab_size}, "
             f"{cfg.step_warmup} + {cfg.step_repeats} rounds")
    return mstep.measure_step_breakdown(
        tuple(cfg.step_engines), data, embedding_dim=cfg.step_embedding,
        hidden_size=cfg.step_hidden, num_layers=cfg.step_layers, dropout=cfg.step_dropout,
        clip=cfg.step_clip, lr=cfg.step_lr, device=cfg.device, warmup=cfg.step_warmup,
        repeats=cfg.step_repeats, seed=cfg.seed)


def code_version() -> dict:
    """Which code was measured: git HEAD, the files changed since (``git status``), and a
    sha256 over ``rnncore/*.py`` (so a run on an uncommitted tree is still identifiable)."""
    root = Path(__file__).resolve().parents[1]
    out: dict = {}
    try:
        # read-only: GIT_OPTIONAL_LOCKS=0 keeps `git status` from refreshing the index
        env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
        run = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True,  # noqa: E731
                                        text=True, timeout=10, env=env).stdout
        out["git_head"] = run("rev-parse", "HEAD").strip() or None
        out["changed"] = [ln[3:] for ln in run("status", "--porcelain", "--untracked-files=no",
                                                "--", "rnncore", "benchmarks").splitlines()
                          if len(ln) > 3]
    except (OSError, subprocess.SubprocessError):
        out["git_head"] = None
    h = hashlib.sha256()
    for f in sorted((root / "rnncore").glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    out["rnncore_sha256"] = h.hexdigest()[:16]
    return out


def run_benchmark(cfg: BenchConfig, sections: tuple[str, ...] = ("layers", "bptt", "convergence"),
                  progress: Callable = _noop) -> dict:
    """Run the chosen sections (``layers``, ``bptt``, ``convergence``, ``step``; fidelity
    runs with ``convergence`` since it needs the trained models) and compute the targets."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    bad = [s for s in sections if s not in RUN_SECTIONS]
    if bad:
        raise ValueError(f"unknown section(s) {bad}; choose from {','.join(RUN_SECTIONS)}")
    torch.manual_seed(cfg.seed)
    results: dict = {"format": FORMAT, "machine": machine_info(cfg.device),
                     "code": code_version(), "config": cfg.to_dict(),
                     "sections": list(sections)}
    progress("matmul peak")
    mm = matmul_peak_gflops(cfg.device, cfg.matmul_size, cfg.warmup, cfg.repeats)
    results["matmul"] = mm
    results["layers"] = run_layers(cfg, mm["gflops"], progress) if "layers" in sections else []
    results["bptt_steps"] = run_bptt_steps(cfg, progress) if "bptt" in sections else []
    if "convergence" in sections:
        results["convergence"], trained = run_convergence(cfg, progress)
        results["fidelity"] = run_fidelity(cfg, trained, progress)
    else:
        results["convergence"], results["fidelity"] = [], []
    results["step"] = run_step(cfg, progress) if "step" in sections else []
    results["targets"] = check_targets(results)
    return results

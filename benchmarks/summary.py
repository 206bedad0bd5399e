"""What the committed reports conclude: their figures grouped by what they measure, and
the README's "What to choose" computed from the newest full-size report of each kind.

``reports_by_kind(out)`` -> {kind: [run dirs, newest first]}; ``what_to_choose(out)`` ->
``Conclusion``s, each with its numbers, the kind of figure that shows them and the report
they come from. Quick-preset reports (tiny, overhead-bound sizes) are listed but never
concluded from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from benchmarks.report import BenchmarkResultsError, figure_names, list_runs, load_results

# kind -> (what it measures: the page's section title, the figures that show it), in the
# page's order; a report is of a kind when it draws the kind's first figure
KINDS = {
    "bptt_time": ("Truncated against full BPTT: time per character", ("bptt_time",)),
    "bptt_memory": ("Truncated against full BPTT: peak memory", ("bptt_memory",)),
    "fidelity": ("Truncated gradients against the full gradient", ("fidelity",)),
    "convergence": ("Validation loss at equal training time", ("convergence",)),
    "layers": ("Our layers against torch.nn (forward + backward)", ("layers", "layers_gflops")),
    "step": ("Where a training step's time goes", ("step",)),
    "qps": ("Quality per second: our trainer against a plain torch.nn loop", ("qps",)),
    "decoding": ("Decoding: sampled poems against real ones", ("decoding",)),
}


@dataclass
class Conclusion:
    """One line of "What to choose": ``text`` (markdown, with its numbers), the figure
    ``kind`` that shows them and the ``report`` (run directory name) they come from."""

    text: str
    kind: str
    report: str


def reports_by_kind(out: str | os.PathLike) -> dict[str, list[Path]]:
    """{kind: run directories of that kind, newest first}, in ``KINDS`` order; unreadable
    reports are left out."""
    found: dict[str, list[Path]] = {kind: [] for kind in KINDS}
    for run in reversed(list_runs(out)):
        try:
            names = figure_names(load_results(run))
        except BenchmarkResultsError:
            continue
        for kind, (_, figures) in KINDS.items():
            if figures[0] in names:
                found[kind].append(run)
    return {kind: runs for kind, runs in found.items() if runs}


def _corpus(results: dict) -> str:
    """What a report's runs trained on: a qps report names its corpus (older ones: the
    bundled 七律); other reports have one setting."""
    return (results.get("qps") or {}).get("config", {}).get("corpus", "tang")


def _newest_full(kind: str, by_kind: dict) -> list[tuple[dict, str]]:
    """The newest full-size report of ``kind`` for each corpus it was measured on (for
    BPTT time and memory: of more than one cell)."""
    found = {}
    for run in by_kind.get(kind, []):
        results = load_results(run)
        cells = results.get("config", {}).get("cells")
        # the time and memory conclusions compare the cells: a report of one cell (a
        # focused rerun) is listed on the page but not concluded from
        one_cell = kind.startswith("bptt") and cells is not None and len(cells) < 2
        if not results.get("config", {}).get("quick") and not one_cell:
            found.setdefault(_corpus(results), (results, run.name))
    return list(found.values())


def _per_token(rows: list[dict], cell: str, seq_len: int, strategy: str) -> float | None:
    for r in rows:
        if (r["cell"], r["seq_len"], r["strategy"], bool(r.get("timed"))) == \
                (cell, seq_len, strategy, True):
            return r["us_per_token"]
    return None


def _time_conclusion(results: dict, report: str) -> Conclusion | None:
    rows = [r for r in results["bptt_steps"] if r.get("timed")]
    t = max(r["seq_len"] for r in rows)
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    ratios = {}
    for cell in cells:
        full = _per_token(rows, cell, t, "full")
        for k in (64, 32, 8):
            trunc = _per_token(rows, cell, t, f"tbptt k={k}")
            if full and trunc:
                ratios[(cell, k)] = trunc / full
    if not any(k == 64 for _, k in ratios):
        return None
    at64 = ", ".join(f"{c.upper()} {ratios[(c, 64)]:.2f}x" for c in cells if (c, 64) in ratios)
    text = (f"**Truncate at k = 32–64 when sequences are long.** At T = {t:,} a TBPTT step "
            f"with k = 64 costs {at64} of full BPTT's time per character")
    worst32 = max(((ratios[(c, 32)], c) for c in cells if (c, 32) in ratios), default=None)
    if worst32:
        text += f"; at k = 32 up to {worst32[0]:.2f}x ({worst32[1].upper()})"
    worst8 = max(((ratios[(c, 8)], c) for c in cells if (c, 8) in ratios), default=None)
    if worst8:
        text += (f", and at k = 8 the per-update overhead reaches {worst8[0]:.2f}x "
                 f"({worst8[1].upper()})")
    return Conclusion(text + ".", "bptt_time", report)


def _memory_conclusion(results: dict, report: str) -> Conclusion | None:
    rows = [r for r in results["bptt_steps"] if "peak_bytes" in r]
    t = max((r["seq_len"] for r in rows), default=None)
    cell = next((r["cell"] for r in rows), None)
    peak = {r["strategy"]: r["peak_bytes"] / 2**20 for r in rows
            if r["seq_len"] == t and r["cell"] == cell}
    trunc = [s for s in peak if s.startswith("tbptt k=")]
    if "full" not in peak or not trunc:
        return None
    return Conclusion(
        f"**Its memory does not depend on the sequence length:** at T = {t:,} the "
        f"{cell.upper()} peaks at {peak[trunc[0]]:.1f} MiB with {trunc[0].replace('tbptt ', '')} "
        f"against {peak['full']:,.0f} MiB for full BPTT, which grows linearly with T.",
        "bptt_memory", report)


def _fidelity_conclusion(results: dict, report: str) -> Conclusion | None:
    cos = {(r["cell"], r["trained"], r["strategy"]): r["cosine"] for r in results["fidelity"]}
    cell = next(iter(cos))[0]
    k64, k8 = cos.get((cell, True, "tbptt k=64")), cos.get((cell, True, "tbptt k=8"))
    if k64 is None:
        return None
    text = (f"**It keeps nearly the whole gradient:** on the trained {cell.upper()} the "
            f"TBPTT k = 64 gradient has cosine {k64:.5f} to the full-BPTT gradient (it drops "
            f"{1 - k64:.2%})")
    if k8 is not None:
        text += f"; at k = 8 only {k8:.3f}"
    uneven = cos.get((cell, True, "tbptt k1=32 k2=64"))
    if uneven is not None:
        text += (f". For an essentially exact gradient use k1 < k2: TBPTT(32, 64) reaches "
                 f"{uneven:.6f}, at about twice the time per character")
    return Conclusion(text + ".", "fidelity", report)


def _convergence_conclusion(results: dict, report: str) -> Conclusion | None:
    rows = results["convergence"]
    cell = rows[0]["cell"]
    final = {}
    for r in rows:
        if r["cell"] == cell and r["seconds"] >= final.get(r["strategy"], r)["seconds"]:
            final[r["strategy"]] = r
    if "full" not in final or len(final) < 2:
        return None
    seconds = final["full"]["seconds"]
    others = sorted((r["val_bpc"], s) for s, r in final.items() if s != "full")
    listed = ", ".join(f"{s} {bpc:.2f}" for bpc, s in others)
    return Conclusion(
        f"**Where whole sequences fit in memory, as poems do, full BPTT learned best at equal "
        f"time:** {final['full']['val_bpc']:.2f} validation bits per character after "
        f"{seconds:.0f} s against {listed} ({cell.upper()}). Randomized truncation is unbiased "
        f"but slower and noisier.", "convergence", report)


def _layers_conclusion(results: dict, report: str) -> Conclusion | None:
    ratios: dict = {}
    for r in results["layers"]:
        if r["engine"] == "bptt" and r.get("ratio_to_native") is not None:
            ratios.setdefault(r["cell"], []).append(r["ratio_to_native"])
    if not ratios:
        return None
    spans = ", ".join(f"{c.upper()} {min(v):.2f}–{max(v):.2f}x" for c, v in ratios.items())
    return Conclusion(
        f"**The hand-derived engine against torch.nn** (time ratio, lower is better): {spans}. "
        "torch's LSTM runs oneDNN's fused kernel; its GRU and RNN a plain loop.",
        "layers", report)


def _step_conclusion(results: dict, report: str) -> Conclusion | None:
    parts = {(r["engine"], r["part"]): r for r in results["step"]}
    ours = parts.get(("bptt", "step"))
    if ours is None or ("bptt", "head") not in parts:
        return None
    text = (f"**In a whole training step the softmax head costs as much as the recurrence:** "
            f"{parts[('bptt', 'head')]['share']:.0%} of the time against "
            f"{parts[('bptt', 'recurrent')]['share']:.0%} (V = {ours['vocab_size']:,}, "
            f"{_threads(results)}); "
            f"{ours['chars_per_s']:,.0f} characters per second")
    native = parts.get(("native", "step"))
    if native:
        text += f" against {native['chars_per_s']:,.0f} with torch.nn.LSTM"
    return Conclusion(text + ".", "step", report)


def _qps_conclusion(results: dict, report: str) -> Conclusion | None:
    qps = results["qps"]
    s, seeds = qps["summary"], len(qps["config"]["seeds"])
    per = s["trainers"]
    ours, plain = per["rnncore"]["final_bpc"]["mean"], per["torch.nn"]["final_bpc"]["mean"]
    met = sum(t["status"] == "pass" for t in results.get("targets") or [])
    corpus = {"tang": "the bundled 七律", "quantangshi": "the full Tang corpus"}.get(
        _corpus(results), _corpus(results))
    return Conclusion(
        f"**Train with `python -m rnncore train` rather than a plain torch.nn loop:** on "
        f"{corpus}, after {qps['config']['seconds']:g} s of training it reaches {ours:.2f} held-out bits per "
        f"character against {plain:.2f} (mean of {seeds} seed{'s' if seeds != 1 else ''}, "
        f"{s['bpc_gain']:+.2f}) at {s['speed_ratio']:.2f}x the characters per second "
        f"(head {qps['default_head']}; {met} of 2 targets met).", "qps", report)


def _decoding_conclusion(results: dict, report: str) -> Conclusion | None:
    d = results["decoding"]
    picks = ", ".join(
        f"{f['form_name']} {f['chosen']['temperature']:g} ({f['chosen']['attested_pair_share']:.3f}"
        f" against {f['real']['attested_pair_share']:.3f})" for f in d["forms"].values())
    return Conclusion(
        f"**Sample each form at its own temperature** (top-p {d['chosen_top_p']:g}; attested "
        f"pairs of {d['num']} poems, mean of {len(d['seeds'])} seeds, against the form's "
        f"held-out real poems): {picks}. These are the CLI's and the Generate page's "
        "defaults.", "decoding", report)


def _threads(results: dict) -> str:
    n = results.get("machine", {}).get("torch_threads")
    return f"{n} thread{'s' if n != 1 else ''}" if n else "threads unknown"


_CONCLUDE = {"bptt_time": _time_conclusion, "bptt_memory": _memory_conclusion,
             "fidelity": _fidelity_conclusion, "convergence": _convergence_conclusion,
             "layers": _layers_conclusion, "step": _step_conclusion, "qps": _qps_conclusion,
             "decoding": _decoding_conclusion}


def what_to_choose(out: str | os.PathLike,
                   by_kind: dict[str, list[Path]] | None = None) -> list[Conclusion]:
    """The conclusions, in ``KINDS`` order, each from the newest full-size report that
    draws its figure (``by_kind``: ``reports_by_kind(out)``, if already at hand)."""
    by_kind = reports_by_kind(out) if by_kind is None else by_kind
    found = []
    for kind, conclude in _CONCLUDE.items():
        for newest in _newest_full(kind, by_kind):
            conclusion = conclude(*newest)
            if conclusion is not None:
                found.append(conclusion)
    return found


def targets_note(results: dict) -> str | None:
    """Why a quick run's targets say little (None for a full-size run): the targets are set
    for the full sizes, and at the quick ones fixed per-call costs dominate."""
    cfg = results.get("config") or {}
    if not cfg.get("quick"):
        return None
    sizes = ", ".join("B{} T{} I{} H{}".format(*s) for s in cfg.get("layer_sizes") or [])
    return (f"These are the quick preset's tiny sizes ({sizes or 'tiny'}): a forward and "
            "backward pass takes well under a millisecond, so fixed costs per call (Python, "
            "dispatching each small op) dominate, where torch.nn runs one fused kernel. The "
            "targets are set for the full sizes; measure those with `python -m benchmarks` "
            "(the reports above).")

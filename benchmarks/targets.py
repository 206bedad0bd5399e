"""The benchmark targets: pass/fail of each, computed from a results dict."""
from __future__ import annotations


def _target(name: str, measured: float | None, limit: str, passed: bool | None, detail: str
            ) -> dict:
    return {"target": name, "measured": measured, "limit": limit,
            "status": "n/a" if passed is None else ("pass" if passed else "fail"),
            "detail": detail}


def linear_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of y on x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else float("nan")


def check_targets(results: dict) -> list[dict]:
    """Pass/fail of each target with the measured value (not asserted anywhere: a report)."""
    out = []
    for r in results.get("layers", []):
        if r["engine"] == "bptt" and r.get("ratio_to_native") is not None:
            ok = r["ratio_to_native"] <= r["target_ratio"]
            out.append(_target(f"{r['cell']} bptt vs torch.nn, {r['size']}", r["ratio_to_native"],
                               f"<= {r['target_ratio']}x", ok,
                               f"{r['median_s'] * 1e3:.2f} ms, {r['gflops']:.1f} GFLOP/s"))
    steps = results.get("bptt_steps", [])
    cfg = results.get("config", {})
    mem_rows = [r for r in steps if "peak_bytes" in r]
    for cell in dict.fromkeys(r["cell"] for r in steps):
        # truncated memory independent of T
        trunc = sorted((r for r in mem_rows if r["cell"] == cell and r["kind"] == "truncated"),
                       key=lambda r: r["seq_len"])
        if len(trunc) >= 2:
            lo, hi = trunc[0], trunc[-1]
            ratio = hi["peak_bytes"] / max(lo["peak_bytes"], 1)
            out.append(_target(f"{cell} {hi['strategy']} peak memory T={hi['seq_len']} vs "
                               f"T={lo['seq_len']}", ratio, "within 5% (<= 1.05x)",
                               abs(ratio - 1) <= 0.05,
                               f"{hi['peak_bytes'] / 2**20:.2f} MiB vs "
                               f"{lo['peak_bytes'] / 2**20:.2f} MiB"))
        full = sorted((r for r in mem_rows if r["cell"] == cell and r["kind"] == "full"),
                      key=lambda r: r["seq_len"])
        if len(full) >= 2:
            slope = linear_slope([r["seq_len"] for r in full], [r["peak_bytes"] for r in full])
            analytic = full[0]["analytic_per_step_bytes"]
            ratio = slope / analytic
            out.append(_target(f"{cell} full BPTT memory slope / analytic activations", ratio,
                               "within 1.5x (1/1.5 .. 1.5)", 1 / 1.5 <= ratio <= 1.5,
                               f"slope {slope / 1024:.1f} KiB/step, analytic "
                               f"{analytic / 1024:.1f} KiB/step"))
            kept = [r for r in full if "retained_bytes" in r]
            if len(kept) >= 2:
                slope_kept = linear_slope([r["seq_len"] for r in kept],
                                          [r["retained_bytes"] for r in kept])
                out.append(_target(f"{cell} full BPTT activations kept by the forward / "
                                   f"analytic", slope_kept / analytic,
                                   "within 1.5x (1/1.5 .. 1.5)",
                                   1 / 1.5 <= slope_kept / analytic <= 1.5,
                                   f"slope {slope_kept / 1024:.1f} KiB/step"))
        timed = [r for r in steps if r["cell"] == cell and r.get("timed")]
        if timed:
            t_max = max(r["seq_len"] for r in timed)
            full_t = [r for r in timed if r["seq_len"] == t_max and r["kind"] == "full"]
            k_min = 32 if not cfg.get("quick") else 0
            for r in timed:
                if (r["seq_len"] == t_max and r["kind"] == "truncated" and full_t
                        and r["truncation_len"] >= k_min
                        and r["update_interval"] == r["truncation_len"]):  # k1 < k2 re-reads
                    ratio = r["us_per_token"] / full_t[0]["us_per_token"]
                    out.append(_target(f"{cell} {r['strategy']} time/token vs full, T={t_max}",
                                       ratio, "<= 1.1x", ratio <= 1.1,
                                       f"{r['us_per_token']:.2f} vs "
                                       f"{full_t[0]['us_per_token']:.2f} µs/token"))
    return out


# quality per second (``measure_qps``): our trainer against the plain torch.nn loop
QPS_BPC_GAIN = 0.2      # bits per character better, mean over the seeds
QPS_SPEED_RATIO = 1.5   # times the plain loop's training characters per second


def qps_targets(summary: dict) -> list[dict]:
    """The two targets of a ``measure_qps`` summary (``bpc_gain``, ``speed_ratio``)."""
    per = summary["trainers"]
    bpc = {t: per[t]["final_bpc"]["mean"] for t in per}
    cps = {t: per[t]["chars_per_s"]["mean"] for t in per}
    return [
        _target("held-out bpc: plain torch.nn loop - ours (mean of seeds)", summary["bpc_gain"],
                f">= {QPS_BPC_GAIN}", summary["bpc_gain"] >= QPS_BPC_GAIN,
                f"{bpc['rnncore']:.3f} vs {bpc['torch.nn']:.3f} bpc"),
        _target("characters per second: ours / plain torch.nn loop", summary["speed_ratio"],
                f">= {QPS_SPEED_RATIO}x", summary["speed_ratio"] >= QPS_SPEED_RATIO,
                f"{cps['rnncore']:,.0f} vs {cps['torch.nn']:,.0f} chars/s"),
    ]

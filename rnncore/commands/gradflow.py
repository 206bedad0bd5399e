"""``python -m rnncore gradflow``: measure gradient flow in a model and print the numbers.

Builds the same ``GradFlowConfig`` the app does: a fresh model of the given cell, size and
initialisation (or a checkpoint), on a Tang poem or random tokens. A bad option prints
``error: ...`` and exits 2 (through ``rnncore.cli``).
"""
from __future__ import annotations

import dataclasses
import math

from rnncore.commands import print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("gradflow", help="gradient-flow probes (BPTT norms, Jacobians)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--cell", default=None, help="rnn | lstm | gru (lstm; from the checkpoint)")
    p.add_argument("--checkpoint", default=None, help="probe a trained checkpoint directory")
    p.add_argument("--rho", type=float, default=None,
                   help="rescale every W_hh gate block to this spectral radius (0.5..1.5)")
    p.add_argument("--init", default="default", help="default | orthogonal (fresh models)")
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--source", default="poem", help="poem | random input tokens (poem)")
    p.add_argument("--poem-index", type=int, default=0)
    p.add_argument("--layer", type=int, default=-1, help="layer to probe (-1 = top)")
    p.add_argument("--method", default="auto", help="Jacobian norms: auto | exact | power")
    p.add_argument("--draws", type=int, default=16,
                   help="randomized-truncation draws per probability")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(func=run)


def build_config(args):
    from rnncore.gradflow import GradFlowConfig

    return GradFlowConfig(
        cell=args.cell or "lstm", hidden_size=args.hidden_size, num_layers=args.layers,
        init=args.init, rho=args.rho, seq_source=args.source, seq_len=args.seq_len,
        poem_index=args.poem_index, seed=args.seed, checkpoint=args.checkpoint,
        layer=args.layer, jacobian_method=args.method, truncation_draws=args.draws)


def _fmt(x) -> str:
    if x is None:
        return "none"
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.4g}"
    return str(x)


def run(args) -> int:
    from rnncore import gradflow as gf

    cfg = build_config(args)
    probe = gf.prepare(cfg)
    if args.cell is not None and args.cell != probe.cell:
        raise gf.GradFlowError(f"--cell {args.cell} does not match the checkpoint's "
                               f"{probe.cell} model")
    if cfg.checkpoint is not None:   # report the checkpoint's architecture, not the defaults
        cfg = dataclasses.replace(cfg, cell=probe.cell, hidden_size=probe.hidden_size,
                                  num_layers=probe.num_layers,
                                  embedding_dim=probe.model.embedding.embedding_dim)
        probe.config = cfg
    out = gf.run_probes(cfg, probe)
    if args.json:
        print_json(out, default=_fmt)
        return 0
    jac = out["jacobian"]
    norms = jac["norms"]
    print(f"{out['cell']}  H={out['hidden_size']}  layers={out['num_layers']}  "
          f"T={out['seq_len']}  probing layer {out['layer']}")
    print(f"input: {out['text'][:80]}")
    for loss, layers in out["hidden_grad_norms"].items():
        g = layers[str(out["layer"])]
        print(f"||dL/dh_t|| (loss={loss}): t=0 {_fmt(g[0])}  t=T/2 {_fmt(g[len(g) // 2])}  "
              f"t=T-1 {_fmt(g[-1])}")
    print(f"||dh_T/dh_T-L||_2 ({jac['method']}): lag 1 {_fmt(norms[0])}  "
          f"lag {len(norms) // 2} {_fmt(norms[len(norms) // 2 - 1])}  "
          f"lag {len(norms)} {_fmt(norms[-1])}")
    print(f"  slope of ln-norm per step {_fmt(jac['slope'])} "
          f"(x{_fmt(math.exp(jac['slope']))} per step); "
          f"vanish lag (< 1e-3 of lag 1): {_fmt(jac['vanish_lag'])}")
    radii = ", ".join(f"L{r['layer']}:{r['gate']}={r['spectral_radius']:.3f}"
                      for r in out["spectral_radii"])
    print(f"spectral radius of W_hh: {radii}")
    print("rho sweep:  rho  slope   jac@lagT   vanish_lag  textbook  observed")
    for r in out["rho_sweep"]:
        print(f"          {r['rho']:4.2f}  {r['slope']:+.3f}  {r['jac_lag_max']:.3e}  "
              f"{_fmt(r['vanish_lag']):>9}   {r['textbook']:8}  {r['observed']}")
    if "gate_path" in out:
        gp, gs = out["gate_path"], out["gate_stats"]
        print(f"gate path: d/d(prev) = diag({gp['gate']}) to {gp['max_err_diag_gate']:.1e} "
              f"(vs diag(1-{gp['gate']}): {gp['min_err_diag_one_minus']:.2e}); "
              f"mean {gs['gate']} = {gs['mean']:.3f}")
    tw = out["tied_weights"]
    print(f"tied W_hh: sum of per-step terms vs autograd max|diff| {tw['max_abs_err']:.1e}")
    print("truncation: scheme      k/p    cosine  rel_norm  rel_error")
    for r in out["truncation"]:
        kp = r["truncation_len"] if r["scheme"] == "regular" else r["prob"]
        print(f"            {r['scheme']:10}  {_fmt(kp):>5}  {r['cosine']:.4f}  "
              f"{r['rel_norm']:.4f}    {r['rel_error']:.4f}")
    return 0

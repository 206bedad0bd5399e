"""Gradient-flow probes: how dL/dh_t and dh_T/dh_k behave in a real model.

Every number here is computed from a model (a trained ``CharRNN`` checkpoint or a fresh one)
on an input (a poem's characters or random tokens); nothing is read off a formula.

Notation (one layer, one sequence, time steps t = 0..T-1 consume x_t):

    vanilla RNN   a_t = W_hh h_{t-1} + W_ih x_t + b,   h_t = tanh(a_t),   o_t = V h_t + c
    BPTT          dL/dh_t = W_hh^T (dL/dh_{t+1} * f'(a_{t+1})) + V^T dL/do_t
    tied weights  dL/dW_hh = sum_t delta_t h_{t-1}^T,  delta_t = dL/d(W_hh h_{t-1} + b_hh)
    Jacobians     dh_{T-1}/dh_{T-1-L} = J_{T-1} ... J_{T-L},  J_t = ds_t/ds_{t-1}

``s_t`` is the cell's state: ``h_t`` (RNN, GRU) or ``(h_t, c_t)`` (LSTM). All probes run
on a float64 copy of the model in eval mode with batch size 1 (``prepare``).

    config           GradFlowConfig, GradFlowError, constants
    spectral         W_hh gate blocks: spectral radii, rescaling to rho
    probe            Probe, prepare (model + input sequence)
    unroll           step-by-step forward, sequence_loss, dL/dh_t
    jacobians        per-step Jacobians, their lag-L products' norms, the rho sweep
    gates            LSTM f / GRU z direct paths, gate statistics, activations
    tied             dL/dW_hh as a sum of per-step terms
    truncation_bias  regular / randomized truncation vs full BPTT
    logs             clipping from a training run's step records

``run_probes`` runs them all (the CLI's numbers).
"""
from __future__ import annotations

import numpy as np

from rnncore.gradflow.config import (INITS, JACOBIAN_METHODS, LOSSES, SOURCES, GradFlowConfig,
                                     GradFlowError)
from rnncore.gradflow.gates import (Activations, activations, gate_path_check,
                                    gate_path_jacobians, gate_stats)
from rnncore.gradflow.jacobians import (  # noqa: F401  (the tests check the private helpers)
    JacobianResult, StepLinearization, _step_fn, _summarise_norms, _verdict, jacobian_norms,
    linearize, rho_sweep, step_jacobians_autograd)
from rnncore.gradflow.logs import CLIP_COLUMNS, clip_rate, clipping_frame, load_step_records
from rnncore.gradflow.probe import Probe, prepare
from rnncore.gradflow.spectral import rescale_recurrent_, spectral_radii
from rnncore.gradflow.tied import TiedWeightGrad, tied_weight_grads
from rnncore.gradflow.truncation_bias import (batched_param_grads, randomized_truncation_grads,
                                              randomized_truncation_scale,
                                              regular_truncation_scale, rnn_param_grad,
                                              truncation_bias)
from rnncore.gradflow.unroll import (LayerTrace, hidden_grad_norms, hidden_grads,
                                     hidden_grads_autograd, sequence_loss, unroll)
from rnncore.kinds import layer_weights  # noqa: F401  (the tests call gradflow.layer_weights)

__all__ = [
    "INITS", "SOURCES", "LOSSES", "JACOBIAN_METHODS", "CLIP_COLUMNS",
    "GradFlowConfig", "GradFlowError", "Probe", "prepare",
    "LayerTrace", "unroll", "sequence_loss", "hidden_grads", "hidden_grads_autograd",
    "hidden_grad_norms",
    "StepLinearization", "linearize", "step_jacobians_autograd", "JacobianResult",
    "jacobian_norms", "rho_sweep", "spectral_radii", "rescale_recurrent_",
    "gate_path_jacobians", "gate_path_check", "gate_stats", "Activations", "activations",
    "TiedWeightGrad", "tied_weight_grads",
    "regular_truncation_scale", "randomized_truncation_scale", "rnn_param_grad",
    "batched_param_grads", "randomized_truncation_grads", "truncation_bias",
    "clipping_frame", "clip_rate", "load_step_records", "run_probes",
]


def run_probes(cfg: GradFlowConfig, probe: Probe | None = None) -> dict:
    """A JSON-ready summary of every probe for ``cfg``."""
    probe = prepare(cfg) if probe is None else probe
    layer = probe.layer_index(cfg.layer)
    norms = hidden_grad_norms(probe)
    jac = jacobian_norms(probe, layer, cfg.jacobian_method, cfg.power_iters)
    sweep = rho_sweep(probe, cfg.rho_values, layer, cfg.jacobian_method, cfg.power_iters)
    tied = tied_weight_grads(probe, layer)
    trunc = truncation_bias(probe, probs=cfg.truncation_probs, draws=cfg.truncation_draws,
                            seed=cfg.seed)
    out = {
        "config": cfg.to_dict(), "cell": probe.cell, "hidden_size": probe.hidden_size,
        "num_layers": probe.num_layers, "seq_len": probe.seq_len, "layer": layer,
        "text": "".join(probe.chars),
        "hidden_grad_norms": {
            loss: {str(lay): g.grad_norm.tolist() for lay, g in df.groupby("layer")}
            for loss, df in norms.groupby("loss")},
        "jacobian": jac.to_dict(),
        "spectral_radii": spectral_radii(probe.model).to_dict(orient="records"),
        "rho_sweep": sweep.to_dict(orient="records"),
        "tied_weights": {"max_abs_err": tied.max_abs_err,
                         "total_norm": float(np.linalg.norm(tied.total)),
                         "contribution_norms": tied.per_step.contribution_norm.tolist()},
        "truncation": trunc.to_dict(orient="records"),
    }
    if probe.kind.direct_gate is not None:
        check = gate_path_check(probe, layer)
        stats = gate_stats(probe, layer=layer)
        out["gate_path"] = {"gate": str(check.gate.iloc[0]),
                            "max_err_diag_gate": float(check.err_diag_gate.max()),
                            "min_err_diag_one_minus": float(check.err_diag_one_minus.min()),
                            "max_offdiag": float(check.offdiag_max.max())}
        out["gate_stats"] = {"gate": str(stats.gate.iloc[0]),
                             "mean": float(stats["mean"].mean()),
                             **{c: float(stats[c].mean()) for c in stats.columns
                                if c.startswith("q")}}
    return out

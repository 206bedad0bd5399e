"""Gradient Flow: how dL/dh_t and dh_T/dh_k behave in RNN, LSTM and GRU on one poem."""
import math

import numpy as np
import streamlit as st

from pages._common import job_manager
from rnncore import gradflow as G
from rnncore import plots
from rnncore.checkpoint import checkpoint_stamp, is_checkpoint_dir
from rnncore.kinds import CELLS

EMBEDDING = 8  # of the fresh models: at hidden 128, rho 1.0 vanishes and 1.3 explodes

st.title("Gradient flow through time")
st.markdown(
    "Every chart below is measured on models built with the settings here (fresh, untrained "
    "weights: the textbook situation at the start of training; embedding size 8, a weak input "
    "drive that keeps tanh near its linear range, so the recurrent weights decide whether "
    "gradients vanish or explode) and, if you pick one, a trained model, all reading the "
    "same Tang poem. The probes run in float64 so tiny gradients at long lags stay visible.")

c1, c2, c3, c4, c5 = st.columns(5)
hidden = c1.select_slider("Hidden size", [16, 32, 64, 128], 128, key="gf_hidden")
seq_len = c2.slider("Characters (time steps)", 16, 128, 32, 8, key="gf_seq_len")
poem = c3.number_input("Poem number", 0, 7000, 0, key="gf_poem")
init = c4.selectbox("W_hh init", list(G.INITS), key="gf_init")
seed = c5.number_input("Seed", 0, 10_000, 0, key="gf_seed")
base = dict(hidden_size=int(hidden), seq_len=int(seq_len), poem_index=int(poem), init=init,
            seed=int(seed), embedding_dim=EMBEDDING)


def _summary(probe) -> dict:
    norms = G.hidden_grad_norms(probe, losses=("last", "sum"))
    jac = G.jacobian_norms(probe)
    entry = {"cell": probe.cell, "chars": list(probe.chars), "norms": norms, "jac": jac.frame,
             "slope": jac.slope, "vanish_lag": jac.vanish_lag,
             "activations": G.activations(probe).values}
    if probe.cell != "rnn":
        entry["gates"] = G.gate_stats(probe)
        entry["gate_check"] = G.gate_path_check(probe)
    return entry


@st.cache_data(show_spinner="Running the probes (RNN, LSTM, GRU) ...", max_entries=16)
def cell_probes(settings: dict) -> dict:
    """Everything per cell that does not depend on the sliders below."""
    return {cell: _summary(G.prepare(G.GradFlowConfig(cell=cell, **settings)))
            for cell in CELLS}


@st.cache_data(show_spinner="Probing the trained model ...", max_entries=8)
def trained_probe(settings: dict, checkpoint: str, stamp: str) -> dict:
    """The same probes on a trained checkpoint (its own cell and sizes, same poem);
    ``stamp`` (its meta.json mtime) keys the cache, so a re-saved checkpoint is probed anew."""
    keep = {k: settings[k] for k in ("seq_len", "poem_index", "seed")}
    return _summary(G.prepare(G.GradFlowConfig(checkpoint=checkpoint, **keep)))


@st.cache_data(show_spinner="Rescaling W_hh and measuring ...", max_entries=64)
def rho_probe(settings: dict, rho: float) -> dict:
    """The RNN rescaled to ``rho``: its lag curve and slope (one ``rho_sweep`` row), W_hh's
    spectral norm and radius."""
    probe = G.prepare(G.GradFlowConfig(cell="rnn", rho=rho, **settings))
    radii = G.spectral_radii(probe.model)
    sweep = G.rho_sweep(probe, [rho]).iloc[0].to_dict()
    return {"lags": np.arange(1, len(sweep["norms"]) + 1), "norms": np.asarray(sweep["norms"]),
            "slope": sweep["slope"], "spectral_norm": float(radii.spectral_norm.max()),
            "spectral_radius": float(radii.spectral_radius.max()), "sweep": sweep}


@st.cache_data(show_spinner="Comparing truncated and full BPTT gradients ...", max_entries=16)
def truncation_probe(settings: dict, cell: str, draws: int):
    probe = G.prepare(G.GradFlowConfig(cell=cell, **settings))
    return G.truncation_bias(probe, probs=(0.5, 0.75, 0.9), draws=draws, seed=settings["seed"])


# an optional trained model next to the fresh ones (the bundled one or any run on disk)
trained_choices = {}
try:
    from rnncore.generate import default_model_path

    if is_checkpoint_dir(default_model_path()):
        trained_choices["the bundled model"] = str(default_model_path())
except ImportError:
    pass
for info in job_manager().list_runs():
    trained_choices[info.describe()] = info.path
trained_pick = st.selectbox("Also probe a trained model", ["(none)"] + list(trained_choices),
                            key="gf_trained")

try:
    probes = cell_probes(base)
    if trained_pick != "(none)":
        path = trained_choices[trained_pick]
        trained = trained_probe(base, path, checkpoint_stamp(path))
        probes[f"trained {trained['cell']}"] = trained
except (G.GradFlowError, ValueError, OSError) as exc:
    st.error(str(exc))
    st.stop()
SHOWN = tuple(probes)  # the three fresh cells, then the trained model if chosen
chars = probes["rnn"]["chars"]
st.caption("Poem: " + "".join(c for c in chars if len(c) == 1))

# --------------------------------------------------------------------------- 1. heatmap
st.header("1. Gradient reaching each step")
loss = st.radio("Loss", ["last", "sum"], horizontal=True, key="gf_loss",
                format_func=lambda k: {"last": "on the last character only",
                                       "sum": "summed over all characters"}[k])
per_cell = {}
for cell in SHOWN:
    df = probes[cell]["norms"]
    df = df[(df["loss"] == loss) & (df["layer"] == df["layer"].max())].sort_values("t")
    per_cell[cell] = df["grad_norm"].to_numpy()
st.plotly_chart(plots.grad_norm_heatmap_figure(per_cell, chars), key="gf_heatmap")
ratios = {c: v[0] / v[-1] if v[-1] > 0 else math.nan for c, v in per_cell.items()}
if loss == "last":
    st.markdown(
        "Each square is ‖∂L/∂h_t‖ for the loss on the **last** character, from the "
        "hand-derived BPTT engine: how strongly that one prediction depends on the state t "
        "steps into the poem, so moving left is moving back in time. Here the first step "
        "receives " + ", ".join(f"{c.upper()} {r:.1e}" for c, r in ratios.items())
        + " times the gradient of the last step; a ratio far below 1 is the vanishing "
        "gradient.")
else:
    st.markdown(
        "With the loss **summed** over the poem, ‖∂L/∂h_t‖ adds the direct gradient of "
        "step t's own prediction to everything flowing back from later steps (BPTT's "
        "recursion δ_t = ∂L_t/∂h_t + J_{t+1}ᵀ δ_{t+1}). If the back-flowing part vanished "
        "quickly, every column would look alike, carrying only its local term; a gradient "
        "that grows towards the start shows contributions from later steps adding up.")

# --------------------------------------------------------------------------- 2. lag curves
st.header("2. How far back a state still matters")
curves = {c.upper(): (probes[c]["jac"]["lag"], probes[c]["jac"]["norm"]) for c in SHOWN}
st.plotly_chart(plots.jacobian_lag_figure(curves), key="gf_lag")
factors = {c: math.exp(probes[c]["slope"]) for c in SHOWN if math.isfinite(probes[c]["slope"])}
st.markdown(
    "Each curve is the largest singular value of ∂h_T/∂h_(T−L) = J_T ⋯ J_(T−L+1), the "
    "product of per-step Jacobians, against the lag L; on this log axis a straight line "
    "means a constant factor per step, measured here (exp of the fitted slope) as "
    + ", ".join(f"{c.upper()} {f:.3f}" for c, f in factors.items()) + ". "
    "A factor below 1 means the influence of an old state shrinks geometrically with the "
    "lag (vanishing), above 1 that it grows (exploding).")

# --------------------------------------------------------------------------- 3. spectral radius
st.header("3. Spectral radius of W_hh (vanilla RNN)")
rho = st.slider("Rescale W_hh to spectral radius ρ", 0.5, 1.5, 1.0, 0.05, key="gf_rho")
r = rho_probe(base, float(rho))
lags, norms, sigma = r["lags"], r["norms"], r["spectral_norm"]
reference = {f"σ_max(W_hh)^L = {sigma:.2f}^L (upper bound)": (lags, sigma ** lags.astype(float)),
             f"ρ^L = {rho:.2f}^L": (lags, float(rho) ** lags.astype(float))}
st.plotly_chart(plots.jacobian_lag_figure({f"RNN, ρ = {rho:.2f}": (lags, norms)}, reference),
                key="gf_rho_chart")
factor = math.exp(r["slope"]) if math.isfinite(r["slope"]) else math.nan
verdict = ("vanishes" if factor < 1 - 1e-2 else "explodes" if factor > 1 + 1e-2
           else "stays roughly level")
sat = r["sweep"].get("saturated", math.nan)
st.markdown(
    f"Because |tanh′| ≤ 1, every step multiplies by a matrix of norm at most σ_max(W_hh) = "
    f"{sigma:.2f}, so the measured curve can never rise above the σ_max^L line, and when "
    f"σ_max < 1 the gradient can only vanish. The spectral radius ρ = {r['spectral_radius']:.2f}"
    f" only sets the long-run rate of the *linear* recurrence (ρ^L); measured here the "
    f"per-step factor is {factor:.3f}, so the gradient {verdict}"
    + (f", with {sat:.0%} of the units saturated (|h| > 0.99, where tanh′ ≈ 0)."
       if isinstance(sat, float) and math.isfinite(sat) else "."))

# --------------------------------------------------------------------------- 4. gates
st.header("4. Forget gate (LSTM) and update gate (GRU)")
frames = {c: probes[c]["gates"] for c in SHOWN if "gates" in probes[c]}
st.plotly_chart(plots.gate_stats_figure(frames), key="gf_gates")
err_f = float(probes["lstm"]["gate_check"]["err_diag_gate"].max())
err_z = float(probes["gru"]["gate_check"]["err_diag_gate"].max())
ret = {c: float(frames[c]["retention"].iloc[0]) for c in frames}
mean_gate = {c: float(frames[c]["mean"].mean()) for c in frames}
st.markdown(
    f"The LSTM's cell path has Jacobian ∂c_t/∂c_(t−1) = diag(f_t) (checked here by autograd to "
    f"{err_f:.1e}) and the GRU's direct path ∂h_t/∂h_(t−1) = diag(z_t) ({err_z:.1e}): where a "
    f"gate sits near 1 that path passes the gradient back unchanged, with no W_hh and no "
    f"tanh′ in between. Here the mean gate is {mean_gate['lstm']:.2f} (LSTM f) and "
    f"{mean_gate['gru']:.2f} (GRU z), so the product of mean gates from the first step to the "
    f"end is {ret['lstm']:.1e} and {ret['gru']:.1e}"
    + "".join(f"; for the {c} model: mean gate {mean_gate[c]:.2f}, product {ret[c]:.1e}"
              for c in frames if c.startswith("trained"))
    + ": a gated path carries the gradient far only where its gate stays close to 1.")

# --------------------------------------------------------------------------- 5. truncation
st.header("5. Truncation bias")
t1, t2 = st.columns(2)
tcell = t1.radio("Cell", CELLS, horizontal=True, key="gf_trunc_cell",
                 format_func=str.upper)
draws = t2.slider("Randomized draws", 4, 64, 16, 4, key="gf_draws")
tb = truncation_probe(base, tcell, int(draws))
st.plotly_chart(plots.truncation_bias_figure(tb), key="gf_trunc")
reg = tb[tb["scheme"] == "regular"].sort_values("truncation_len")
rnd = tb[tb["scheme"] == "randomized"]
k_small, e_small = int(reg["truncation_len"].iloc[0]), float(reg["rel_error"].iloc[0])
best = rnd.sort_values("prob").iloc[-1] if len(rnd) else None
text = (f"Regular truncation at k drops every path longer than k steps, so its gradient "
        f"differs from full BPTT (relative error {e_small:.2f} at k = {k_small}) until k "
        f"reaches the sequence length T = {int(reg['truncation_len'].max())}, where the "
        f"error is {float(reg['rel_error'].iloc[-1]):.0e}.")
if best is not None:
    text += (f" Randomized truncation keeps each step back with probability p and divides "
             f"by p, which makes it unbiased: at p = {best['prob']:g} one draw is off by "
             f"{best['mean_rel_error']:.2f} on average, the mean of {int(best['draws'])} draws "
             f"by {best['rel_error']:.2f} — bias traded for variance that averages out.")
st.markdown(text)

# --------------------------------------------------------------------------- 6. activations
st.header("6. Activations over the poem")
a1, a2 = st.columns(2)
acell = a1.radio("Cell", SHOWN, horizontal=True, index=1, key="gf_act_cell",
                 format_func=str.upper)
values = probes[acell]["activations"]
name = a2.selectbox("Quantity", list(values), key="gf_act_name")
st.plotly_chart(plots.activation_heatmap_figure(np.asarray(values[name]), chars, name),
                key="gf_act")
st.markdown(
    "Each column is one character of the poem and each row one unit. For h, values near ±1 "
    "are saturated tanh units, where tanh′ = 1 − h² ≈ 0 blocks the gradient through that "
    "unit. Repeated characters give columns to compare: the more alike they look, the more "
    "the state reflects the current character rather than what came before it.")

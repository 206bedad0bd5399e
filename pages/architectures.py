"""Architectures: the rest of the textbook chapter, each claim measured on a model."""
import streamlit as st

from rnncore import plots
from rnncore import textbook as TB

st.title("Architectures: the textbook's claims, measured")
st.markdown(
    "Each section states a claim from the RNN chapter, measures it on real models reading "
    "Tang poems and says whether the numbers agree. The sentences under each chart are "
    "computed from the measurement shown; **Run** repeats it with your settings (each "
    "within a minute on a small CPU).")

# --------------------------------------------------------------------------- 1. leaky units
st.header("1. Leaky units")
st.markdown(
    "**Claim.** A unit with a fixed self-connection α close to 1, "
    "h_t = α h_(t−1) + (1 − α) tanh(W_hh h_(t−1) + W_ih x_t + b), accumulates information "
    "over long spans (its gradient survives ~1/(1 − α) steps) but cannot forget; the "
    "LSTM's forget gate can choose, character by character.")
with st.form("arch_leaky_form"):
    c1, c2, c3, c4 = st.columns(4)
    alphas = c1.multiselect("α values", [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999],
                            default=list(TB.ALPHAS), key="arch_alphas")
    hidden = c2.select_slider("Hidden size", [16, 32, 64, 128], 64, key="arch_leaky_hidden")
    seq_len = c3.slider("Characters", 16, 96, 64, 8, key="arch_leaky_len")
    poem = c4.number_input("Poem number", 0, 7000, 0, key="arch_leaky_poem")
    trained = st.checkbox("Include the bundled trained LSTM (2×256, top layer)", True,
                          key="arch_leaky_trained")
    st.form_submit_button("Run")


@st.cache_data(show_spinner="Multiplying Jacobians for each α and the LSTMs ...",
               max_entries=8)
def leaky(alphas: tuple, hidden: int, seq_len: int, poem: int, trained: bool):
    return TB.leaky_sweep(alphas, hidden_size=hidden, seq_len=seq_len, poem_index=poem,
                          trained_lstm=trained)


try:
    sweep = leaky(tuple(sorted(alphas)) or TB.ALPHAS, int(hidden), int(seq_len), int(poem),
                  bool(trained))
except ValueError as exc:
    st.error(str(exc))
else:
    st.plotly_chart(plots.leaky_lag_figure(sweep.lags), key="arch_leaky_lags")
    st.plotly_chart(plots.retention_figure(sweep.retention, sweep.chars),
                    key="arch_leaky_retention")
    st.markdown("**What the data say.** " + sweep.describe())
    st.caption("Leaky units use the weights of one fresh tanh RNN (α = 0 is that RNN); "
               "Jacobians from autograd in float64, c_(T−L) held fixed for the LSTMs.")

# --------------------------------------------------------------------------- 2. trees
st.header("2. Recursive networks")
st.markdown(
    "**Claim.** A balanced binary tree over a sequence has depth O(log T) instead of T, so "
    "the gradient from its root reaches every input through few nonlinearities and does "
    "not vanish the way it does along a chain.")
with st.form("arch_tree_form"):
    c1, c2, c3, c4, c5 = st.columns(5)
    t_hidden = c1.select_slider("Hidden size", [16, 32, 64], 32, key="arch_tree_hidden")
    t_len = c2.slider("Characters", 8, 128, 64, 8, key="arch_tree_len")
    t_poem = c3.number_input("Poem number", 0, 7000, 0, key="arch_tree_poem")
    t_init = c4.selectbox("W init", ["default", "orthogonal"], key="arch_tree_init")
    t_seed = c5.number_input("Seed", 0, 10_000, 0, key="arch_tree_seed")
    st.form_submit_button("Run")


@st.cache_data(show_spinner="Differentiating the chain and the tree ...", max_entries=8)
def tree(hidden: int, seq_len: int, poem: int, init: str, seed: int):
    return TB.tree_vs_chain(hidden, seq_len, poem, seed, init)


try:
    tr = tree(int(t_hidden), int(t_len), int(t_poem), t_init, int(t_seed))
except ValueError as exc:
    st.error(str(exc))
else:
    st.plotly_chart(plots.tree_chain_figure(tr.frame, tr.chars), key="arch_tree")
    st.markdown("**What the data say.** " + tr.describe())
    st.caption("One combine h = tanh(W_hh h_left + W_ih h_right + b) from a fresh tanh RNN "
               "(embedding size = hidden size); the chain is that RNN, the tree pairs "
               "halves. ‖∂root/∂x_i‖ by autograd, float64.")

# --------------------------------------------------------------------------- 3. exposure
st.header("3. Teacher forcing versus free running")
st.markdown(
    "**Claim.** Trained with teacher forcing, a model only ever reads true histories; "
    "writing, it reads its own samples, and its errors compound along the sequence "
    "(exposure bias). Here the bundled model scores each held-out poem's true next "
    "character given the true history, its own sampled history and, as a control, "
    "another held-out poem's true history, at the same positions.")
try:
    shipped = TB.load_result()
except ValueError as exc:
    shipped = None
    st.info(f"No shipped result: {exc}")
with st.form("arch_exp_form"):
    c1, c2, c3 = st.columns(3)
    e_poems = c1.number_input("Held-out poems", 2, 362, 24, key="arch_exp_poems")
    e_samples = c2.number_input("Samples per poem", 1, 8, 2, key="arch_exp_samples")
    e_seed = c3.number_input("Seed", 0, 10_000, 0, key="arch_exp_seed")
    if st.form_submit_button("Run"):
        with st.spinner("Scoring the poems under each history ..."):
            try:
                st.session_state["arch_exp_live"] = TB.measure_exposure(TB.ExposureConfig(
                    max_poems=int(e_poems), samples=int(e_samples), seed=int(e_seed)))
            except ValueError as exc:
                st.error(str(exc))
live = st.session_state.get("arch_exp_live")
curves = {}
if shipped is not None:
    curves[f"all {shipped.poems} poems"] = shipped.to_dict()
if live is not None:
    curves[f"this run, {live.poems} poems"] = live.to_dict()
if curves:
    st.plotly_chart(plots.exposure_figure(curves), key="arch_exposure")
if shipped is not None:
    st.markdown("**What the data say.** " + shipped.describe())
    st.caption(f"Shipped result, recomputed by `{shipped.command}`.")
if live is not None:
    st.markdown("**This run.** " + live.describe())

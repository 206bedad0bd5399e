"""Architectures page: leaky units (a fixed self-connection) beside the LSTM."""
import streamlit as st

from rnncore import plots
from rnncore import textbook as TB


@st.cache_data(show_spinner="Multiplying Jacobians for each α and the LSTMs ...",
               max_entries=8)
def leaky(alphas: tuple, hidden: int, seq_len: int, poem: int, trained: bool):
    return TB.leaky_sweep(alphas, hidden_size=hidden, seq_len=seq_len, poem_index=poem,
                          trained_lstm=trained)


def render(number: int) -> None:
    st.header(f"{number}. Leaky units")
    st.markdown(
        "**Claim.** A unit with a fixed self-connection α close to 1, "
        "h_t = α h_(t−1) + (1 − α) tanh(W_hh h_(t−1) + W_ih x_t + b), accumulates information "
        "over long spans (its gradient survives ~1/(1 − α) steps) but cannot forget; the "
        "LSTM's forget gate can choose, character by character.")
    with st.form("arch_leaky_form"):
        c1, c2, c3, c4 = st.columns(4)
        alphas = c1.multiselect("α values", [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999],
                                default=list(TB.ALPHAS), key="arch_alphas")
        hidden = c2.select_slider("Hidden size", [16, 32, 64, 128], 64,
                                  key="arch_leaky_hidden")
        seq_len = c3.slider("Characters", 16, 96, 64, 8, key="arch_leaky_len")
        poem = c4.number_input("Poem number", 0, 7000, 0, key="arch_leaky_poem")
        trained = st.checkbox("Include the bundled trained LSTM (2×256, top layer)", True,
                              key="arch_leaky_trained")
        st.form_submit_button("Run")
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

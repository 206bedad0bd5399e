"""Architectures page: a balanced tree against a chain of the same cell."""
import streamlit as st

from rnncore import plots
from rnncore import textbook as TB


@st.cache_data(show_spinner="Differentiating the chain and the tree ...", max_entries=8)
def tree(hidden: int, seq_len: int, poem: int, init: str, seed: int):
    return TB.tree_vs_chain(hidden, seq_len, poem, seed, init)


def render(number: int) -> None:
    st.header(f"{number}. Recursive networks")
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

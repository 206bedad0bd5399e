"""Architectures page: design pattern 1 (hidden recurrence) against pattern 2 (output
recurrence, teacher forced) at equal CPU time."""
import streamlit as st

from pages.arch._live import bundled_data, show_results
from rnncore import plots
from rnncore import textbook as TB


def render(number: int) -> None:
    st.header(f"{number}. Recurrence through the hidden state or through the output")
    st.markdown(
        "**Claim.** Of the chapter's design patterns, (1) hidden-to-hidden recurrence with "
        "an output every step can compute anything a Turing machine can; (2) recurrence only "
        "from the output at t to the hidden units at t+1, trained with teacher forcing (the "
        "true y(t) fed in at t+1), has no hidden chain to backpropagate through, so every "
        "step trains in parallel: easier to train, but less expressive, since the output "
        "must carry all the history; (3) reads a whole sequence and emits one output (the "
        "sequence readers elsewhere on this page). Here (1) and (2) train on the poems for "
        "the same CPU time. In a character model the true previous output y(t−1) is the "
        "current input x(t), so pattern 2 reads a fixed window of the last k true "
        "characters (the textbook's figure: k = 1); how much history each model actually "
        "uses is measured by cutting its context to the last c characters.")
    try:
        shipped = TB.load_patterns()
    except ValueError as exc:
        shipped = None
        st.info(f"No shipped result: {exc}")
    with st.form("arch_pat_form"):
        c1, c2, c3, c4 = st.columns(4)
        seconds = c1.slider("CPU seconds per model", 1, 20, 5, key="arch_pat_seconds")
        orders = c2.multiselect("Pattern 2 windows k", [1, 2, 4, 8], default=[1],
                                key="arch_pat_orders")
        hidden = c3.select_slider("Hidden size", [32, 64, 128], 64, key="arch_pat_hidden")
        poems = c4.number_input("Held-out poems", 4, 362, 24, key="arch_pat_poems")
        if st.form_submit_button("Run"):
            with st.spinner("Training both patterns ..."):
                try:
                    st.session_state["arch_pat_live"] = TB.measure_patterns(
                        TB.PatternsConfig(seconds=float(seconds), orders=tuple(orders),
                                          hidden_size=int(hidden), val_poems=int(poems),
                                          contexts=(1, 2, 4, 8, 16)), data=bundled_data())
                except ValueError as exc:
                    st.error(str(exc))
    show_results(shipped, st.session_state.get("arch_pat_live"), plots.patterns_figure,
                 "arch_patterns",
                 "Pattern 2: h(t) = tanh(U x(t) + Σ_j W_j y(t−j) + b), y the one-hot true "
                 "character; “own feedback” puts softmax(o(t−j)) in its place. CPU time on "
                 "one thread.")

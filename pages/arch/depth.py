"""Architectures page: depth between input and hidden, hidden and hidden, hidden and
output, at equal parameter count."""
import streamlit as st

from pages.arch._live import bundled_data, show_results
from rnncore import plots
from rnncore import textbook as TB


def render(number: int) -> None:
    st.header(f"{number}. Deep recurrent networks: depth in three places")
    st.markdown(
        "**Claim.** A recurrent network can be made deep in three places: an MLP between "
        "the input and the hidden state, inside the recurrence h(t−1) → h(t) (the deep "
        "transition of Pascanu et al.), or between the hidden state and the output; the "
        "extra depth helps, at the price of longer paths for the gradient and slower steps. "
        "Here each place adds one tanh layer, every model is sized to the shallow RNN's "
        "parameter count, and all train for the same number of steps on the poems.")
    try:
        shipped = TB.load_depth()
    except ValueError as exc:
        shipped = None
        st.info(f"No shipped result: {exc}")
    with st.form("arch_depth_form"):
        c1, c2, c3, c4 = st.columns(4)
        steps = c1.slider("Steps per model", 2, 100, 30, key="arch_depth_steps")
        places = c2.multiselect("Places", list(TB.PLACES), default=list(TB.PLACES),
                                key="arch_depth_places")
        hidden = c3.select_slider("Shallow hidden size", [32, 64, 128], 64,
                                  key="arch_depth_hidden")
        poems = c4.number_input("Held-out poems", 4, 362, 24, key="arch_depth_poems")
        if st.form_submit_button("Run"):
            with st.spinner("Training each place ..."):
                try:
                    st.session_state["arch_depth_live"] = TB.measure_depth(
                        TB.DepthConfig(places=tuple(places), steps=int(steps),
                                       hidden_size=int(hidden), val_poems=int(poems)),
                        data=bundled_data())
                except ValueError as exc:
                    st.error(str(exc))
    show_results(shipped, st.session_state.get("arch_depth_live"), plots.depth_figure,
                 "arch_depth", "Every model runs the same autograd time loop; CPU time per "
                 "step on one thread.")

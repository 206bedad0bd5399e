"""Architectures page: teacher forcing against free running (exposure bias)."""
import streamlit as st

from rnncore import plots
from rnncore import textbook as TB
from pages.arch._live import show_results


def render(number: int) -> None:
    st.header(f"{number}. Teacher forcing versus free running")
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
    show_results(shipped, live, plots.exposure_figure, "arch_exposure",
                 labels=(f"all {shipped.poems} poems" if shipped else "",
                         f"this run, {live.poems} poems" if live else ""))

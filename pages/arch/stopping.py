"""Architectures page: deciding the length (<eos>, a stop unit, a predicted length)."""
import streamlit as st

from rnncore import plots
from rnncore import textbook as TB
from rnncore.data.tang import tarball_path


def render(number: int) -> None:
    st.header(f"{number}. Deciding the length")
    st.markdown(
        "**Claim.** A sequence model must also decide when to stop: with an end symbol in "
        "its softmax, with a separate Bernoulli output p(stop | h_t) at every step (the "
        "softmax then never ends the poem), or by predicting the length first and writing "
        "exactly that much. One LSTM with all three outputs learns the full corpus's "
        "free-length poems (古體 and other shapes, 2 to 24 lines); each way of stopping then "
        "writes poems, and their line counts are compared with the held-out poems' "
        "(total variation TV and Wasserstein W1, in lines).")
    try:
        shipped = TB.load_stopping_result()
    except ValueError as exc:
        shipped = None
        st.info(f"No shipped result: {exc}")
    if shipped is not None:
        st.plotly_chart(plots.length_distribution_figure(
            shipped.lines, "Lines per poem: held-out poems and each way of stopping"),
            key="arch_stopping")
        st.markdown("**What the data say.** " + shipped.describe())
        st.caption(f"Shipped result, recomputed by `{shipped.command}`.")
    if not tarball_path().is_file():
        st.info("Free-length poems are only in the full corpus: run "
                "`python -m rnncore corpus fetch` to download it, then **Run** appears here.")
        return
    with st.form("arch_stop_form"):
        c1, c2, c3 = st.columns(3)
        poems = c1.number_input("Poems", 100, 3000, 400, step=100, key="arch_stop_poems")
        samples = c2.number_input("Samples per way", 16, 200, 32, key="arch_stop_samples")
        seed = c3.number_input("Seed", 0, 10_000, 0, key="arch_stop_seed")
        if st.form_submit_button("Run"):
            with st.spinner("Training one model, then writing poems three ways ..."):
                try:
                    st.session_state["arch_stop_live"] = TB.measure_stopping(
                        TB.StoppingConfig(max_poems=int(poems), samples=int(samples),
                                          seed=int(seed), epochs=2, hidden_size=48, min_freq=2,
                                          embedding_dim=32))
                except ValueError as exc:
                    st.error(str(exc))
    live = st.session_state.get("arch_stop_live")
    if live is not None:
        st.plotly_chart(plots.length_distribution_figure(
            live.lines, f"This run: {live.n_train} training poems"), key="arch_stop_live")
        st.markdown("**This run.** " + live.describe())

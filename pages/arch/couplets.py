"""Architectures page: the encoder-decoder, a fixed context c against attention, on
couplets (上句 -> 下句)."""
import streamlit as st

from rnncore import plots
from rnncore import textbook as TB
from pages.arch._live import show_results


def render(number: int) -> None:
    st.header(f"{number}. Encoder-decoder: fixed context versus attention")
    st.markdown(
        "**Claim.** An encoder RNN reads the input and hands its final state, a fixed-length "
        "context c, to a decoder RNN that writes the output; a small c cannot summarise a "
        "long input, and attention (a context recomputed at every output step from all the "
        "encoder's states) is the remedy. Here the input is the first line of a couplet "
        "(上句) and the output the second (下句), trained on the couplets of the training "
        "poems and scored on the held-out poems' couplets against a decoder of the same size "
        "that never sees the 上句.")
    try:
        shipped = TB.load_couplets_result()
    except ValueError as exc:
        shipped = None
        st.info(f"No shipped result: {exc}")
    with st.form("arch_cpl_form"):
        c1, c2, c3, c4 = st.columns(4)
        n_train = c1.number_input("Training couplets", 200, 27_480, 3000, 100,
                                  key="arch_cpl_train")
        hidden = c2.select_slider("Hidden size", [16, 32, 64, 128], 64, key="arch_cpl_hidden")
        epochs = c3.number_input("Epochs", 0.5, 10.0, 3.0, 0.5, key="arch_cpl_epochs")
        small = c4.number_input("Small c", 1, 64, 8, key="arch_cpl_small")
        if st.form_submit_button("Run"):
            with st.spinner("Training four small encoder-decoders ..."):
                try:
                    st.session_state["arch_cpl_live"] = TB.measure_couplets(TB.CoupletsConfig(
                        epochs=float(epochs), hidden_size=int(hidden), embedding_dim=32,
                        small_context=int(small), max_train=int(n_train), max_val=400,
                        examples=3))
                except ValueError as exc:
                    st.error(str(exc))
    live = st.session_state.get("arch_cpl_live")

    def examples() -> None:
        if shipped.examples:
            st.table({"上句 (held out)": [e["first"] for e in shipped.examples],
                      "real 下句": [e["real"] for e in shipped.examples],
                      "attention model's 下句": [e["model"] for e in shipped.examples]})

    show_results(shipped, live, plots.couplet_figure, "arch_couplets",
                 "The attention model writes 下句 on the Generate page "
                 "(**Match a line (對句)**).",
                 labels=(f"shipped, {shipped.val_couplets:,} couplets" if shipped else "",
                         f"this run, {live.train_couplets:,} training couplets" if live else ""),
                 extra=examples)

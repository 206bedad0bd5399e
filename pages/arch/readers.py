"""Architectures page: sequence to one, read in both directions (bidirectional readers)."""
import streamlit as st

from rnncore import plots
from rnncore import textbook as TB
from rnncore.data.tang import tarball_path

TITLES = {"rhyme": "Rhyme group of a 七律 from its first couplet (bundled corpus)",
          "dynasty": "Tang or Song (full corpus, forms balanced)"}


def render(number: int) -> None:
    st.header(f"{number}. Sequence to one, read in both directions")
    st.markdown(
        "**Claim.** When one output depends on the whole sequence, a bidirectional RNN "
        "summarises it better than a reader that runs forward only: its backward pass ends "
        "at the first character, its forward pass at the last. Each reader here is rnncore's "
        "own GRU (`bidirectional=True` or not) with a linear layer on its final states; the "
        "bag of characters (logistic regression on character frequencies) is the "
        "order-free baseline. The rhyme task sees only a 七律's first couplet with line 2's "
        "rhyme character masked (□); the dynasty task sees whole regulated poems, the same "
        "number of Tang and Song poems per form and no text found in both collections.")
    full = tarball_path().is_file()
    for task in TITLES:
        try:
            shipped = TB.load_reader_result(task)
        except ValueError as exc:
            st.info(f"No shipped {task} result: {exc}")
            continue
        st.plotly_chart(plots.reader_accuracy_figure({"shipped": shipped.to_dict()},
                                                     TITLES[task]), key=f"arch_reader_{task}")
        st.markdown("**What the data say.** " + shipped.describe())
        st.caption(f"Shipped result, recomputed by `{shipped.command}`.")
    if not full:
        st.caption("The dynasty task needs the full corpus: `python -m rnncore corpus fetch`.")
    with st.form("arch_reader_form"):
        c1, c2, c3, c4 = st.columns(4)
        tasks = ["rhyme", "dynasty"] if full else ["rhyme"]
        task = c1.selectbox("Task", tasks, key="arch_reader_task")
        epochs = c2.number_input("Epochs", 1, 6, 3, key="arch_reader_epochs")
        hidden = c3.select_slider("Hidden size", [16, 32, 64], 64, key="arch_reader_hidden")
        seed = c4.number_input("Seed", 0, 10_000, 0, key="arch_reader_seed")
        if st.form_submit_button("Run"):
            with st.spinner("Training the three readers ..."):
                try:
                    st.session_state["arch_reader_live"] = TB.measure_readers(TB.ReaderConfig(
                        task=task, epochs=int(epochs), hidden_size=int(hidden),
                        seed=int(seed), max_per_form=200 if task == "dynasty" else None))
                except ValueError as exc:
                    st.error(str(exc))
    live = st.session_state.get("arch_reader_live")
    if live is not None:
        figure = plots.reader_accuracy_figure({"this run": live.to_dict()}, TITLES[live.task])
        st.plotly_chart(figure, key="arch_reader_live")
        st.markdown("**This run.** " + live.describe())

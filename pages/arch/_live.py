"""What the Architectures sections share: the bundled poems split and encoded once per
server, and the shipped result beside this session's run."""
import streamlit as st

from rnncore import data as D
from pages._common import bundled_corpus


@st.cache_resource(show_spinner="Splitting and encoding the bundled poems ...")
def bundled_data() -> D.PreparedData:
    return D.prepare_data(D.DataConfig(), corpus=bundled_corpus())


def show_results(shipped, live, figure, key: str, caption: str = "",
                 labels: tuple[str, str] = ("shipped", "this run"), extra=None) -> None:
    """One chart of the shipped result (if any) and this session's run (if any), named by
    ``labels``, then the computed sentences of each: ``figure({label: result.to_dict()})``;
    ``extra()`` draws more of the shipped result under its sentence."""
    results = {}
    if shipped is not None:
        results[labels[0]] = shipped.to_dict()
    if live is not None:
        results[labels[1]] = live.to_dict()
    if results:
        st.plotly_chart(figure(results), key=key)
    if shipped is not None:
        st.markdown("**What the data say.** " + shipped.describe())
        if extra is not None:
            extra()
        st.caption(f"Shipped result, recomputed by `{shipped.command}`. {caption}".rstrip())
    if live is not None:
        st.markdown("**This run.** " + live.describe())

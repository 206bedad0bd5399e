"""rnncore in the browser: ``streamlit run streamlit_app.py``.

A short router; every page lives in ``pages/`` and stays thin (widgets, one call into
``rnncore``, a figure from ``rnncore.plots``).
"""
import sys
from pathlib import Path

import streamlit as st

# pages import their shared helpers as ``pages._common``: make the app folder importable
# however the app is started (``streamlit run``, AppTest, another working directory)
APP_DIR = str(Path(__file__).resolve().parent)
if APP_DIR not in sys.path:
    sys.path.insert(0, APP_DIR)

from pages._common import configure_torch, warm_up_generation  # noqa: E402  (needs APP_DIR)

st.set_page_config(page_title="rnncore", page_icon=":material/edit_note:", layout="wide")
configure_torch()
warm_up_generation()

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:",
            url_path="train"),
    st.Page("pages/generate.py", title="Generate", icon=":material/edit_note:",
            url_path="generate"),
    st.Page("pages/gradient_flow.py", title="Gradient Flow", icon=":material/waves:",
            url_path="gradient_flow"),
    st.Page("pages/benchmarks.py", title="Benchmarks", icon=":material/speed:",
            url_path="benchmarks"),
    st.Page("pages/architectures.py", title="Architectures", icon=":material/account_tree:",
            url_path="architectures"),
]

st.navigation(PAGES).run()

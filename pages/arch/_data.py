"""The bundled poems split and encoded once per server, for the sections that train models
live (design patterns, depth)."""
import streamlit as st

from rnncore import data as D
from pages._common import bundled_corpus


@st.cache_resource(show_spinner="Splitting and encoding the bundled poems ...")
def bundled_data() -> D.PreparedData:
    return D.prepare_data(D.DataConfig(), corpus=bundled_corpus())

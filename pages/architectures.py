"""Architectures: the rest of the textbook chapter, each claim measured on a model.

A short router: every experiment is one section module in ``pages/arch/`` with a
``render(number)``; the order here is the order on the page.
"""
import streamlit as st

from pages.arch import (couplets, depth, exposure, leaky, patterns, readers, stopping,
                        trees)

SECTIONS = [patterns, exposure, couplets, readers, leaky, stopping, depth, trees]  # chapter order

st.title("Architectures: the textbook's claims, measured")
st.markdown(
    "Each section states a claim from the RNN chapter, measures it on real models reading "
    "Tang poems and says whether the numbers agree. The sentences under each chart are "
    "computed from the measurement shown; **Run** repeats it with your settings (each "
    "within a minute on a small CPU).")
for number, section in enumerate(SECTIONS, start=1):
    section.render(number)

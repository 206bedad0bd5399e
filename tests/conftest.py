"""Shared test setup.

Tests use small tensors, where intra-op threads only cost: when the two cores are busy
(a streamlit server, a background training job, pytest-xdist), OpenMP's spin-waiting
threads make tiny ops up to 100x slower. One thread keeps the suite fast and stable.
"""
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """The app's runs directory for one test module (AppTest): fresh, with a fresh job
    manager; torch threads restored after."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("runs")
    mp.setenv("RNNCORE_RUNS_DIR", str(path))
    threads = torch.get_num_threads()
    import streamlit as st

    st.cache_resource.clear()  # the job manager reads RNNCORE_RUNS_DIR when created
    yield path
    st.cache_resource.clear()  # stops nothing by itself: jobs below are waited for
    torch.set_num_threads(threads)
    mp.undo()


@pytest.fixture(scope="session", autouse=True)
def _fused_kernels_built():
    """Build the fused LSTM/GRU extension (or load it from torch's cache) once, before any
    test: a fresh machine's compile (~45 s) then never lands inside a timed test."""
    from rnncore.functional import fused

    fused.kernels(torch.empty(0))

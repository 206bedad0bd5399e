"""Shared test setup.

Tests use small tensors, where intra-op threads only cost: when the two cores are busy
(a streamlit server, a background training job, pytest-xdist), OpenMP's spin-waiting
threads make tiny ops up to 100x slower. One thread keeps the suite fast and stable.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

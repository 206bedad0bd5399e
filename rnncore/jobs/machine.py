"""What the app says about, and asks of, the machine it trains on."""
from __future__ import annotations

import os

import torch


def device_summary() -> str:
    """One line saying which device training and generation use ("auto" device)."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return f"CUDA GPU ({name}), torch {torch.__version__}"
    return (f"CPU ({os.cpu_count()} cores, torch threads: {torch.get_num_threads()}), "
            f"torch {torch.__version__}")


def default_torch_threads() -> int:
    """Leave one core to the web server (and the other sessions) when training on CPU."""
    return max(1, (os.cpu_count() or 2) - 1)

"""Recording dL/dh_t for the gradient-flow probes.

While a ``record_hidden_grads()`` block is active, every "bptt" layer-direction that runs
backward hands its total dL/dh_t, flat (N, H), here; it is stored padded as (T, B, H)
with the layer and direction it came from. Only the hand-written backward records: one
that runs the differentiable reference instead (``create_graph=True``, batched gradients
under vmap) or a compiled one records nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rnncore.functional.layout import Schedule, _to_padded


@dataclass
class HiddenGrad:
    layer: int
    direction: int
    grad: Tensor  # (T, B, H), total dL/dh_t, zero where a sequence has ended


class HiddenGradRecorder:
    """Collects dL/dh_t from every "bptt" layer that runs backward while it is active."""

    def __init__(self):
        self.records: list[HiddenGrad] = []

    def __enter__(self):
        _RECORDERS.append(self)
        return self

    def __exit__(self, *exc):
        _RECORDERS.remove(self)
        return False


# A process-wide stack (not thread-local): CUDA backward runs on autograd's device threads.
_RECORDERS: list[HiddenGradRecorder] = []


def record_hidden_grads() -> HiddenGradRecorder:
    """``with record_hidden_grads() as rec: loss.backward()`` -> ``rec.records``."""
    return HiddenGradRecorder()


def recording(tag) -> bool:
    """Whether the backward of the layer-direction ``tag`` = (layer, direction) must form
    dL/dh_t for a recorder. An untagged call is never recorded, nor a compiled backward:
    appending to a recorder is a side effect torch.compile cannot keep inside the graph."""
    return bool(_RECORDERS) and tag is not None and not torch.compiler.is_compiling()


def publish(tag, dH: Tensor, sched: Schedule) -> None:
    """Hand the flat dL/dh_t ``dH`` (N, H) of layer-direction ``tag`` to every recorder."""
    padded = _to_padded(dH, sched)
    for rec in _RECORDERS:
        rec.records.append(HiddenGrad(tag[0], tag[1], padded))

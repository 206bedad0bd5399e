"""The non-finite guard's pieces: whether the weights are finite, and the in-memory
``Snapshot`` of the last good model and optimizer that a hit update rolls back to."""
from __future__ import annotations

import copy

import torch
from torch import nn


def params_finite(model: nn.Module) -> bool:
    # one host sync for all parameters, not one per tensor
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all())


class Snapshot:
    """Copies of ``model``'s and ``optimizer``'s state dicts, taken at ``step``."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        self.model = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.optimizer = copy.deepcopy(optimizer.state_dict())
        self.step = step

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        model.load_state_dict(self.model)
        # a copy: the snapshot must survive the optimizer's later in-place updates
        optimizer.load_state_dict(copy.deepcopy(self.optimizer))

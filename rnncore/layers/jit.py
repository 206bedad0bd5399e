"""TorchScript and tracing for rnncore's layers and cells.

TorchScript can compile neither the "bptt" engine (a Python ``torch.autograd.Function``)
nor the Python step loops of the others, so ``torch.jit.script`` gets, through the
``__prepare_scriptable__`` hook, torch.nn's own module holding the very same Parameters:
torch's kernels, i.e. engine="native". (torch.jit.script also puts that module in place
of the rnncore submodule in the eager model it scripts: the hook's contract.)

``torch.jit.trace`` records what runs, and a Python loop over time steps would be
recorded unrolled to the example's length and batch: traced layers run the "native"
engine, one kernel call per layer. Cells are one step without a loop and trace as they are.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn


def torch_twin(module: nn.Module, *args, **kwargs) -> nn.Module:
    """torch.nn's counterpart (``module._torch_cls``) built from ``args``/``kwargs`` on the
    meta device (no memory, no draw from the RNG), then given ``module``'s Parameters,
    shared, not copied, and its training mode."""
    twin = module._torch_cls(*args, **kwargs, device="meta")
    for name, param in module.named_parameters(recurse=False):
        setattr(twin, name, param)
    return twin.train(module.training)


def _warn_native(module, what: str) -> None:
    warnings.warn(f"rnncore.{type(module).__name__}: {what} runs the 'native' engine "
                  f"(torch's kernels) in place of engine={module.engine!r}", stacklevel=4)


def scripted_twin(layer, *args, **kwargs) -> nn.Module:
    """What ``torch.jit.script`` compiles for an rnncore layer (see the module docstring)."""
    if layer.engine != "native":
        _warn_native(layer, "torch.jit.script")
    return torch_twin(layer, *args, **kwargs)


def forward_engine(layer) -> str:
    """The engine a layer's forward runs: its own, or "native" under torch.jit.trace."""
    if torch.jit.is_tracing() and layer.engine != "native":
        _warn_native(layer, "torch.jit.trace")
        return "native"
    return layer.engine

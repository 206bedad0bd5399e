"""rnncore: recurrent networks with hand-derived backpropagation through time.

``rnncore.RNN / LSTM / GRU`` are drop-in replacements for their ``torch.nn`` namesakes
(same arguments, parameter names, gate order and returns) with an ``engine`` argument:
"bptt" (hand-written BPTT, default), "autograd" (reference loop) or "native" (torch's
kernels).

The names below load on first use (PEP 562), so ``import rnncore.poetry`` (the torch-free
text rules) does not pull in torch.
"""
import importlib

_EXPORTS = {"RNN": "rnncore.layers", "LSTM": "rnncore.layers", "GRU": "rnncore.layers",
            "RNNCell": "rnncore.layers", "LSTMCell": "rnncore.layers",
            "GRUCell": "rnncore.layers", "ShapeError": "rnncore.layers",
            "ArgTypeError": "rnncore.layers", "record_hidden_grads": "rnncore.functional",
            "HiddenGrad": "rnncore.functional"}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rnncore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

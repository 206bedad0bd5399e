"""Recurrent layers and cells that are drop-in replacements for torch.nn's.

Same constructor signatures, parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``,
``weight_hr_l0``, ...), gate order (LSTM i,f,g,o; GRU r,z,n), initialisation
(U(-1/sqrt(H), 1/sqrt(H))), argument and shape errors, and ``forward(input, hx=None)``
returns, so state dicts move both ways. The layers take one extra keyword, ``engine``,
which picks how the sequence is computed:

- ``"bptt"``    our hand-derived forward/backward through time (rnncore.functional);
- ``"autograd"`` a Python loop over cell steps (cells.py) that autograd differentiates:
                 the reference the tests and the app compare against;
- ``"native"``  torch's own kernels (oneDNN on CPU, cuDNN on CUDA), for comparison.

One concern per module: ``base`` RNNBase (parameters, input handling, engines),
``recurrent`` RNN/LSTM/GRU, ``cell`` the cells, ``checks`` torch's checks and our error
classes, ``jit`` TorchScript and tracing.
"""
from rnncore.layers.base import RNNBase
from rnncore.layers.cell import GRUCell, LSTMCell, RNNCell
from rnncore.layers.checks import ArgTypeError, ShapeError
from rnncore.layers.recurrent import GRU, LSTM, RNN

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "ShapeError",
           "ArgTypeError"]

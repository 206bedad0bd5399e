"""rnncore: recurrent networks with hand-derived backpropagation through time.

``rnncore.RNN / LSTM / GRU`` are drop-in replacements for their ``torch.nn`` namesakes
(same arguments, parameter names, gate order and returns) with an ``engine`` argument:
"bptt" (hand-written BPTT, default), "autograd" (reference loop) or "native" (torch's
kernels).
"""
from rnncore.functional import HiddenGrad, record_hidden_grads
from rnncore.layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "record_hidden_grads",
           "HiddenGrad"]
__version__ = "0.1.0"

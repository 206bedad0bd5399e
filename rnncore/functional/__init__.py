"""The ``"bptt"`` engine: hand-derived forward and backward through time for one layer and
one direction, as a single ``torch.autograd.Function``.

Every sequence is a flat, time-major (N, .) tensor, the layout of a PackedSequence (a
padded (T, B) batch is the case N = T*B); states h0, c0, h_n, c_n are (B, H) and a cell
with G gates projects to (N, G*H). One concern per module:

    layout    Step, Schedule, schedule, step_prev: which rows each time step holds
    forward   the forward loop of each cell (table FORWARD) and final_states
    backward  the backward loop of each cell (table BACKWARD) and the blocked weight/input
              gradients (_Grads); its CHUNK and GRAD_BLOCK_BYTES tune the working set
    record    record_hidden_grads / HiddenGrad: dL/dh_t for the gradient-flow probes
    engine    recurrence, the entry point, and the autograd Function _BPTT
    projection  projected_recurrence: the same for an LSTM with proj_size (W_hr)
    fused     the LSTM/GRU steps' pointwise work (and the RNN's backward step) as one C++
              call (fused.cpp, built on first use); the loops' eager ops where it cannot
              serve or RNNCORE_FUSED=0
    stepgemm  StepGemm: the per-step recurrent GEMM with its weight laid out once per call
              (contiguous W^T; MKL's packed form with more than one thread)
    reference the differentiable step loop (the "autograd" engine) that stands in for the
              loops under create_graph=True and torch.func transforms
"""
from rnncore.functional.engine import recurrence
from rnncore.functional.forward import final_states
from rnncore.functional.layout import Schedule, Step, schedule, step_prev
from rnncore.functional.record import HiddenGrad, HiddenGradRecorder, record_hidden_grads

__all__ = ["recurrence", "final_states", "Schedule", "Step", "schedule", "step_prev",
           "HiddenGrad", "HiddenGradRecorder", "record_hidden_grads"]

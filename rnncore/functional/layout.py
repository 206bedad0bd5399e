"""Where each time step's rows live in a flat, time-major batch, and where its h_{t-1} is.

Every sequence is kept *flat and time-major*, the layout of a PackedSequence: rows
``[off_t, off_t + bs_t)`` of an (N, .) tensor hold time step t for the bs_t sequences
still running (sorted by length, longest first). A padded (T, B) batch is the special
case bs_t = B, off_t = t*B, so one code path serves both. A ``Schedule`` lists the steps
in processing order (reversed within each sequence for the second direction of a
bidirectional layer); h0, c0 are (B, H).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor


@dataclass(frozen=True)
class Step:
    off: int        # first row of this step in the flat layout
    bs: int         # active sequences at this step
    off_prev: int   # first row of the step whose output is this step's h_{t-1}
    n_carry: int    # rows [0, n_carry) take h_{t-1} from that step; rows [n_carry, bs) from h0


class Schedule:
    """Processing order for a flat, time-major batch; ``reverse`` runs each sequence
    backwards within its own length (the second direction of a bidirectional layer)."""

    def __init__(self, batch_sizes: tuple[int, ...], reverse: bool):
        self.batch_sizes = batch_sizes
        self.reverse = reverse
        self.T = len(batch_sizes)
        self.B = batch_sizes[0]
        offs = [0]
        for bs in batch_sizes[:-1]:
            offs.append(offs[-1] + bs)
        self.offsets = offs
        self.N = offs[-1] + batch_sizes[-1]
        order = range(self.T - 1, -1, -1) if reverse else range(self.T)
        steps, prev_t = [], None
        for t in order:
            bs = batch_sizes[t]
            if prev_t is None:
                steps.append(Step(offs[t], bs, 0, 0))
            else:
                steps.append(Step(offs[t], bs, offs[prev_t], min(bs, batch_sizes[prev_t])))
            prev_t = t
        self.steps = steps
        self.uniform = all(bs == self.B for bs in batch_sizes)   # a padded batch, not packed
        self._cache: dict = {}

    def table(self, backward: bool = False) -> Tensor:
        """The steps as an (S, 4) int64 CPU tensor [off, bs, off_prev, n_carry], in
        processing order (reversed when ``backward``): what the C++ step loops read."""
        key = ("table", backward)
        if key not in self._cache:
            steps = self.steps[::-1] if backward else self.steps
            with torch.inference_mode(False):    # see indices(): the cache outlives the call
                self._cache[key] = torch.tensor(
                    [(s.off, s.bs, s.off_prev, s.n_carry) for s in steps], dtype=torch.long)
        return self._cache[key]

    def indices(self, device) -> tuple[Tensor, Tensor]:
        """(prev_index (N,), last_index (B,)) into ``cat([out, h0])``: the row holding each
        row's h_{t-1}, and the row holding each sequence's final state."""
        if torch.compiler.is_compiling():
            # built inside the compiled graph: filling the cache from within the traced
            # Function would be a side effect, which Dynamo answers with a graph break
            return self._build_indices(device)
        key = str(device)
        if key not in self._cache:
            # the cache outlives the call: made under inference_mode (generation) these
            # would be inference tensors, which a later training forward cannot save
            with torch.inference_mode(False):
                self._cache[key] = self._build_indices(device)
        return self._cache[key]

    def _build_indices(self, device) -> tuple[Tensor, Tensor]:
        prev = torch.empty(self.N, dtype=torch.long)
        last = torch.empty(self.B, dtype=torch.long)
        for s in self.steps:
            rows = torch.arange(s.bs)
            src = torch.where(rows < s.n_carry, s.off_prev + rows, self.N + rows)
            prev[s.off:s.off + s.bs] = src
            last[:s.bs] = s.off + rows
        return prev.to(device), last.to(device)


_shared = lru_cache(maxsize=256)(Schedule)


def schedule(batch_sizes: tuple[int, ...], reverse: bool) -> Schedule:
    """The shared ``Schedule`` of these batch sizes: cached, so the windows of a training
    loop reuse its index tensors and backward blocks. torch.compile builds its own while
    tracing (it would trace through the cache, and warn that it does)."""
    if torch.compiler.is_compiling():
        return Schedule(batch_sizes, reverse)
    return _shared(batch_sizes, reverse)


def step_prev(prev_rows: Tensor | None, init: Tensor, s: Step) -> Tensor:
    """This step's h_{t-1} (bs, H): the first ``n_carry`` rows of the previous step's output
    ``prev_rows``, then rows of the initial state."""
    if s.n_carry == s.bs:
        return prev_rows[:s.bs]
    if s.n_carry == 0:
        return init[:s.bs]
    return torch.cat([prev_rows[:s.n_carry], init[s.n_carry:s.bs]])


def _prev(buf: Tensor, init: Tensor, s: Step) -> Tensor:
    """``step_prev`` over a flat (N, H) buffer."""
    return step_prev(buf[s.off_prev:s.off_prev + s.n_carry], init, s)


def _gather_prev(buf: Tensor, init: Tensor, idx: Tensor) -> Tensor:
    """Rows ``idx`` of ``cat([buf, init])`` without materialising the concatenation."""
    n = buf.shape[0]
    from_init = (idx >= n).unsqueeze(1)
    return torch.where(from_init, init[(idx - n).clamp(min=0)], buf[idx.clamp(max=n - 1)])


def _to_padded(flat: Tensor, sched: Schedule) -> Tensor:
    """Flat (N, F) rows -> (T, B, F), zero where a sequence has ended."""
    if sched.uniform:
        return flat.reshape(sched.T, sched.B, -1).clone()
    out = flat.new_zeros(sched.T, sched.B, flat.shape[-1])
    for t, (off, bs) in enumerate(zip(sched.offsets, sched.batch_sizes)):
        out[t, :bs] = flat[off:off + bs]
    return out


"""``WindowFeed``: the windows one process trains on, in order, and what carries between them.

``full``: batches of whole poems, padded (``data.collate_poems``), in a shuffled order per
epoch (``data.epoch_order``), each from the zero state. ``truncated``/``randomized``: the
epoch's poems, shuffled and concatenated (``data.poem_stream``), cut into ``B`` rows
(``data.StreamBatcher``); a window is ``[prefix | next k1 columns]`` (B, W), where the
prefix is the last ``k2 - k1`` tokens of the previous window (``truncation.carry_point``)
and the start state is the one carried from there. ``randomized`` adds keep factors
xi (W, B) (``truncation.draw_keep_factors``) from a generator of its own per rank, so they
never shift torch's global RNG (dropout).
"""
from __future__ import annotations

import torch
from torch import Tensor

from rnncore import data as D
from rnncore.model import State
from rnncore.trainer.config import TrainConfig, TrainConfigError, streams_poems
from rnncore.truncation import carry_point, draw_keep_factors


class WindowFeed:
    """The training windows of ``poems`` (this rank's shard) under ``cfg``'s strategy."""

    def __init__(self, poems: list[list[int]], cfg: TrainConfig, rank: int = 0) -> None:
        self.poems = poems
        self.cfg = cfg
        self.stream_layout = streams_poems(cfg.strategy)
        self.xi_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank + 1)
        self.carry: State | None = None
        self.prefix_x = torch.zeros(cfg.batch_size, 0, dtype=torch.long)
        self.prefix_y = torch.zeros(cfg.batch_size, 0, dtype=torch.long)
        self._order: list[int] = []    # "full": this epoch's poem order
        self._batch_index = 0          # "full": next batch of this epoch
        self._batcher: D.StreamBatcher | None = None

    def start_epoch(self, epoch: int) -> None:
        """Rewind to the start of ``epoch`` (a new order or stream; nothing carried)."""
        self._batch_index = 0
        self.reset_carry()
        if self.stream_layout:
            stream = D.poem_stream(self.poems, seed=self.cfg.seed, epoch=epoch)
            self._batcher = D.StreamBatcher(stream, self.cfg.batch_size,
                                            chunk_len=self.cfg.update_interval)
        else:
            self._order = D.epoch_order(len(self.poems), self.cfg.seed, epoch)

    def reset_carry(self) -> None:
        """The next window starts from the zero state, with no prefix."""
        self.carry = None
        self.prefix_x = self.prefix_x[:, :0]
        self.prefix_y = self.prefix_y[:, :0]

    @property
    def exhausted(self) -> bool:
        if self.stream_layout:
            return self._batcher.exhausted
        return self._batch_index >= D.num_poem_batches(len(self.poems), self.cfg.batch_size)

    def next_window(self) -> tuple[Tensor, Tensor, State | None, int | None, int | None,
                                   Tensor | None]:
        """(inputs, targets, start state, loss_len, carry_at, keep factors) for
        ``truncation.window_loss``; inputs/targets (B, W) on the CPU."""
        cfg = self.cfg
        if not self.stream_layout:
            b = self._batch_index * cfg.batch_size
            self._batch_index += 1
            batch = D.collate_poems([self.poems[i] for i in self._order[b:b + cfg.batch_size]])
            return batch.inputs, batch.targets, None, None, None, None
        x_new, y_new = self._batcher.next_chunk(cfg.update_interval)
        inputs = torch.cat([self.prefix_x, x_new], dim=1)
        targets = torch.cat([self.prefix_y, y_new], dim=1)
        width = inputs.size(1)
        xi = None
        if cfg.strategy == "randomized":
            xi = draw_keep_factors(width, inputs.size(0), cfg.randomized_keep_prob, self.xi_gen)
        return (inputs, targets, self.carry, x_new.size(1),
                carry_point(width, cfg.truncation_len, cfg.update_interval), xi)

    def advance(self, carry: State, inputs: Tensor, targets: Tensor, carry_at: int) -> None:
        """After an applied update: the next window starts from ``carry`` (the state after
        ``carry_at`` tokens) and re-reads ``inputs[:, carry_at:]``."""
        if self.stream_layout:
            self.carry = carry
            self.prefix_x, self.prefix_y = inputs[:, carry_at:], targets[:, carry_at:]

    # ----------------------------------------------------------------- checkpoints

    def position(self, epoch: int) -> dict:
        """Where in ``epoch`` (the one last started) the feed is, JSON-ready (a checkpoint's
        ``data_position``)."""
        pos = {"layout": "stream" if self.stream_layout else "poems", "epoch": epoch}
        if self.stream_layout:
            pos.update(self._batcher.state_dict())
        else:
            pos["batch"] = self._batch_index
        return pos

    def restore_position(self, pos: dict) -> None:
        """Go back to where ``position`` said the feed was."""
        want = "stream" if self.stream_layout else "poems"
        if not isinstance(pos, dict) or pos.get("layout") != want:
            raise TrainConfigError(f"checkpoint data position does not fit strategy "
                                   f"{self.cfg.strategy!r}")
        self.start_epoch(int(pos["epoch"]))
        if self.stream_layout:
            self._batcher.load_state_dict({k: pos[k] for k in
                                           ("offset", "batch_size", "row_len", "num_tokens")})
        else:
            self._batch_index = int(pos["batch"])

    def tensors(self) -> dict:
        """The carried state, the prefix and the xi generator (for ``optimizer.pt``)."""
        carry = self.carry
        carry_list = [] if carry is None else list(carry if isinstance(carry, tuple) else (carry,))
        return {"carry": [t.detach().cpu() for t in carry_list],
                "buffer_inputs": self.prefix_x.clone(), "buffer_targets": self.prefix_y.clone(),
                "xi_generator": self.xi_gen.get_state()}

    def load_tensors(self, saved: dict, device: torch.device) -> None:
        """Undo ``tensors()``; the carried state goes to ``device``."""
        carry = [t.to(device) for t in saved["carry"]]
        self.carry = None if not carry else (tuple(carry) if len(carry) == 2 else carry[0])
        self.prefix_x, self.prefix_y = saved["buffer_inputs"], saved["buffer_targets"]
        self.xi_gen.set_state(saved["xi_generator"])

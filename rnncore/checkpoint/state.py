"""``TrainerState``: the trainer's data config and progress counters, ``meta.json``'s
``trainer_state``. Checkpoints written before that field kept the same dict in
``extra.trainer`` (the bundled model among them); ``from_meta`` reads either."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rnncore.checkpoint.files import CheckpointError
from rnncore.data import DataConfig


@dataclass
class TrainerState:
    """What a ``Trainer`` needs, besides the weights, the optimizer file, the data position
    and the RNG states, to continue a run exactly. ``elapsed_s`` is the training time of
    the whole run so far; ``world_size`` the number of processes it was trained with."""

    data_config: DataConfig
    epoch: int
    lr_scale: float
    best_val_loss: float | None
    bad_evals: int
    tokens_seen: int
    elapsed_s: float
    nonfinite_steps: int
    world_size: int = 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # data_config becomes a dict too

    @classmethod
    def from_dict(cls, data: dict) -> TrainerState:
        try:
            best = data["best_val_loss"]
            return cls(data_config=DataConfig.from_dict(data["data_config"]),
                       epoch=int(data["epoch"]), lr_scale=float(data["lr_scale"]),
                       best_val_loss=None if best is None else float(best),
                       bad_evals=int(data["bad_evals"]), tokens_seen=int(data["tokens_seen"]),
                       elapsed_s=float(data["elapsed_s"]),
                       nonfinite_steps=int(data["nonfinite_steps"]),
                       world_size=int(data.get("world_size", 1)))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"invalid trainer state ({type(exc).__name__}: {exc})") \
                from None

    @classmethod
    def from_meta(cls, meta: dict) -> TrainerState | None:
        """The state in a checkpoint's meta data; None for one not saved by a trainer."""
        data = meta.get("trainer_state")
        if data is None:
            data = (meta.get("extra") or {}).get("trainer")
        return None if data is None else cls.from_dict(data)

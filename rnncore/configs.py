"""The one piece every config dataclass shares: a JSON-safe round trip.

``ModelConfig``, ``DataConfig``, ``TrainConfig`` and ``GradFlowConfig`` each describe one
concern; checkpoints store them as dicts and the CLI and the app build them. Loading
refuses unknown fields (a checkpoint from a newer version, a typo) instead of dropping them.
"""
from __future__ import annotations

import dataclasses


class DictConfig:
    """Mixin for config dataclasses: ``to_dict()`` / ``from_dict()``.

    ``config_error`` is the ``ValueError`` subclass raised for a malformed dict.
    """

    config_error: type[ValueError] = ValueError

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise cls.config_error(f"{cls.__name__} must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise cls.config_error(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:  # a value of the wrong type (a hand-edited file)
            raise cls.config_error(f"invalid {cls.__name__}: {exc}") from None


def check_positive_ints(cfg, names, optional=()) -> None:
    """Raise ``cfg.config_error`` (one line) unless each field in ``names`` is an int >= 1;
    the fields in ``optional`` may also be None."""
    for name in names:
        value = getattr(cfg, name)
        if value is None and name in optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise cfg.config_error(f"{name} must be a positive integer, got {value!r}")

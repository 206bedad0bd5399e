"""The subcommands of ``python -m rnncore`` (one module each, see ``rnncore.cli``) and the
output helpers they share."""
from __future__ import annotations

import json
import math


def json_ready(obj):
    """``obj`` with every non-finite float replaced by None: JSON has no NaN or infinity,
    and a bare ``NaN`` breaks strict parsers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: json_ready(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(value) for value in obj]
    return obj


def print_json(obj, **kwargs) -> None:
    """Print ``obj`` as one strict JSON document on stdout."""
    print(json.dumps(json_ready(obj), ensure_ascii=False, allow_nan=False, **kwargs))

"""RNG states as JSON data (``meta.json``'s ``rng_state``): Python, NumPy, torch CPU, CUDA."""
from __future__ import annotations

import base64
import random
import struct

import torch

from rnncore.checkpoint.files import CheckpointError


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _byte_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def capture_rng_state() -> dict:
    """Python, NumPy, torch CPU (and, once initialised, CUDA) RNG states as JSON data."""
    version, internal, gauss_next = random.getstate()
    state: dict = {
        # the Mersenne Twister words are packed (little-endian uint32) to keep meta.json short
        "python": {"version": version, "gauss_next": gauss_next,
                   "internal": _b64(struct.pack(f"<{len(internal)}I", *internal))},
        "torch": _b64(torch.get_rng_state().numpy().tobytes()),
    }
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = {"name": name, "keys": _b64(keys.astype("<u4").tobytes()), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    except ImportError:  # numpy is optional for rnncore itself
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of ``capture_rng_state`` (missing parts are left alone)."""
    try:
        if "python" in state:
            py = state["python"]
            words = base64.b64decode(py["internal"])
            internal = struct.unpack(f"<{len(words) // 4}I", words)
            random.setstate((py["version"], internal, py["gauss_next"]))
        if "torch" in state:
            torch.set_rng_state(_byte_tensor(state["torch"]))
        if "numpy" in state:
            import numpy as np

            npst = state["numpy"]
            keys = np.frombuffer(base64.b64decode(npst["keys"]), dtype="<u4").astype(np.uint32)
            np.random.set_state((npst["name"], keys,
                                 npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
        if "cuda" in state and torch.cuda.is_available():
            states = [_byte_tensor(s) for s in state["cuda"]]
            if len(states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states)
    except (KeyError, TypeError, ValueError, RuntimeError, struct.error) as exc:
        raise CheckpointError(f"invalid RNG state in checkpoint: {exc}") from None

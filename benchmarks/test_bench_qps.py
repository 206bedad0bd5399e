"""Quality per second (``benchmarks/measure_qps.py``) at a tiny size and budget: the report's
structure, one evaluator for both trainers, and no report overwritten."""
from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import measure_qps as mq


@pytest.fixture(scope="module")
def qps_run(tmp_path_factory):
    """One seed, 4 s of training each, the tiny model, side by side."""
    root = tmp_path_factory.mktemp("qps")
    out, work = root / "report", root / "work"
    code = mq.main(["--quick", "--seconds", "4", "--seeds", "0", "--out", str(out),
                    "--work", str(work), "--no-png"])
    assert code == 0
    return out, work


def test_report_structure(qps_run):
    from benchmarks.report import figure_names, load_results

    out, work = qps_run
    results = load_results(out)
    assert results["sections"] == ["qps"] and figure_names(results) == ["qps"]
    assert (out / "qps.html").is_file() and (out / "report.md").is_file()
    qps = results["qps"]
    assert [r["trainer"] for r in qps["runs"]] == list(mq.TRAINERS)
    assert qps["val_poems"] == 362 and qps["config"]["model"] == mq.TINY_MODEL
    for r in qps["runs"]:
        assert r["seed"] == 0 and r["steps"] >= 1 and r["final_characters"] > 20_000
        # the budget is training time: reached, and overshot by about one step at most
        assert 4.0 <= r["train_seconds"] <= 4.0 + 2 * r["train_seconds"] / r["steps"] + 1
        assert 0 < r["final_bpc"] < math.log2(qps["vocab_size"]) + 1
        steps = [p["step"] for p in r["curve"]]
        assert steps == sorted(steps) and steps[-1] == r["steps"]
    ours, plain = qps["runs"]
    assert ours["head"] == "adaptive" and ours["checkpoint_step"] == ours["steps"]
    assert plain["head"] == "full"
    per = qps["summary"]["trainers"]
    assert per["rnncore"]["final_bpc"]["mean"] == ours["final_bpc"]
    assert qps["summary"]["bpc_gain"] == pytest.approx(plain["final_bpc"] - ours["final_bpc"])
    assert qps["summary"]["speed_ratio"] == pytest.approx(
        ours["chars_per_s"] / plain["chars_per_s"])
    assert [t["status"] in ("pass", "fail") for t in results["targets"]] == [True, True]
    assert json.loads((work / "runs.jsonl").read_text().splitlines()[0])[0]["trainer"] == \
        "rnncore"


def test_one_evaluator_scores_the_plain_loop_as_torch_does(qps_run):
    """The plain loop's final weights in CharRNN through ``evaluate_model`` (batched,
    padded) give the bits per character of torch.nn's own forward, poem by poem."""
    from benchmarks import side_by_side as sbs
    from benchmarks.plain_loop import MODEL_FILE

    out, work = qps_run
    data = sbs.held_out()
    plain, as_charrnn = mq.load_plain(work / "torch.nn-seed0", len(data.vocab), mq.TINY_MODEL)
    state = torch.load(work / "torch.nn-seed0" / MODEL_FILE, weights_only=True)
    emb, head = state["embedding.weight"], (state["head.weight"], state["head.bias"])
    lstm = torch.nn.LSTM(mq.TINY_MODEL["embedding_dim"], mq.TINY_MODEL["hidden_size"],
                         mq.TINY_MODEL["num_layers"])
    lstm.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("rnn.")})
    poems = data.val[:3]
    nats, count = 0.0, 0
    with torch.no_grad():
        for p in poems:  # time-major, no batch dimension: independent of both modules
            x = torch.tensor(p[:-1])
            out_t, _ = lstm(emb[x][:, None])
            logits = out_t[:, 0] @ head[0].T + head[1]
            nats += float(torch.nn.functional.cross_entropy(
                logits, torch.tensor(p[1:]), reduction="sum"))
            count += len(p) - 1
    by_torch = nats / count / math.log(2.0)
    assert sbs.score_model(as_charrnn, poems)["bpc"] == pytest.approx(by_torch, abs=1e-4)
    assert mq.torch_nn_bpc(plain, poems) == pytest.approx(by_torch, abs=1e-4)
    check = json.loads((out / "results.json").read_text())["qps"]["runs"][1]["evaluator_check"]
    assert check["abs_diff"] < 1e-4
    # the report's final score is the evaluator's on every held-out poem
    plain_final = json.loads((out / "results.json").read_text())["qps"]["runs"][1]["final_bpc"]
    assert sbs.score_model(as_charrnn, data.val)["bpc"] == pytest.approx(plain_final, rel=1e-9)


def test_refuses_an_existing_report_and_bad_flags(qps_run, tmp_path, capsys):
    out, _ = qps_run
    before = (out / "results.json").read_text()
    assert mq.main(["--quick", "--seconds", "1", "--out", str(out),
                    "--work", str(tmp_path / "w")]) == 2
    assert "exists" in capsys.readouterr().err and not (tmp_path / "w").exists()
    assert (out / "results.json").read_text() == before
    for bad in (["--seeds", "0,x"], ["--seeds", "1,1"], ["--seconds", "0"]):
        assert mq.main(["--quick", *bad, "--out", str(tmp_path / "o"),
                        "--work", str(tmp_path / "w")]) == 2
        assert capsys.readouterr().err.startswith("error: ")

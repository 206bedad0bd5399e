"""The encoder-decoder on couplets (rnncore.textbook.seq2seq / couplets / duiju): attention
and the whole model against hand-written references, the verse rules on decoded lines, a
small live run, the shipped result and model, the command line and the Generate page."""
import math
from pathlib import Path

import pytest
import torch

from rnncore.poetry import PING, is_ideograph, rhyme_table
from rnncore.textbook import couplets as C
from rnncore.textbook import duiju as DJ
from rnncore.textbook import seq2seq as S


def test_attention_hand_computed_and_against_loops():
    # one query [1, 0] against keys [1, 0], [0, 1] with W_a = I: scores (1, 0)
    s = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    a, alpha = S.attend(s, h, torch.eye(2, dtype=torch.float64))
    e = math.e
    assert torch.allclose(alpha, torch.tensor([[[e / (e + 1), 1 / (e + 1)]]], dtype=torch.float64))
    assert torch.allclose(a, torch.tensor([[[e / (e + 1), 1 / (e + 1)]]], dtype=torch.float64))
    # random shapes against explicit sums, and autograd against finite differences
    g = torch.Generator().manual_seed(0)
    B, T, Sn, H = 2, 3, 4, 5
    q, k, w = (torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
               for shape in ((B, T, H), (B, Sn, H), (H, H)))
    a, alpha = S.attend(q, k, w)
    for b in range(B):
        for t in range(T):
            sc = torch.stack([q[b, t] @ (w @ k[b, j]) for j in range(Sn)])
            al = torch.exp(sc - sc.max()) / torch.exp(sc - sc.max()).sum()
            assert torch.allclose(alpha[b, t], al)
            assert torch.allclose(a[b, t], sum(al[j] * k[b, j] for j in range(Sn)))
    assert torch.autograd.gradcheck(lambda *x: S.attend(*x)[0], (q, k, w))


def _gru_ref(x, h, p, suffix=""):
    """torch's GRU equations, one step, with the layer's own parameters (gate order r, z, n)."""
    wi, wh = p["weight_ih_l0" + suffix], p["weight_hh_l0" + suffix]
    bi, bh = p["bias_ih_l0" + suffix], p["bias_hh_l0" + suffix]
    gi, gh = x @ wi.T + bi, h @ wh.T + bh
    H = h.shape[-1]
    r = torch.sigmoid(gi[:, :H] + gh[:, :H])
    z = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
    n = torch.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
    return (1 - z) * n + z * h


def _reference_logp(m, src, inp):
    """The module docstring's equations, written out step by step."""
    enc = dict(m.encoder.named_parameters())
    dec = dict(m.decoder.named_parameters())
    x = m.embedding(src)
    B, Sn, _ = x.shape
    Hh = m.cfg.hidden_size // 2
    hf, hb = x.new_zeros(B, Hh), x.new_zeros(B, Hh)
    fw, bw = [], [None] * Sn
    for j in range(Sn):
        hf = _gru_ref(x[:, j], hf, enc)
        fw.append(hf)
    for j in reversed(range(Sn)):
        hb = _gru_ref(x[:, j], hb, enc, "_reverse")
        bw[j] = hb
    states = torch.stack([torch.cat([f, b_], -1) for f, b_ in zip(fw, bw)], 1)
    c = torch.tanh(m.to_context(torch.cat([fw[-1], bw[0]], -1)))
    s = torch.tanh(m.to_state(c))
    out = []
    for t in range(inp.shape[1]):
        s = _gru_ref(torch.cat([m.embedding(inp[:, t]), c], -1), s, dec)
        e = torch.stack([(s * (states[:, j] @ m.attn.T)).sum(-1) for j in range(Sn)], 1)
        alpha = torch.softmax(e, -1)
        a = (alpha[..., None] * states).sum(1)
        o = torch.tanh(m.combine(torch.cat([s, a], -1)))
        out.append(torch.log_softmax(m.head(o), -1))
    return torch.stack(out, 1)


def test_seq2seq_forward_and_gradients_match_the_equations():
    torch.manual_seed(0)
    cfg = S.Seq2SeqConfig(vocab_size=20, embedding_dim=6, hidden_size=8, context_size=5,
                          attention=True, head="full", dropout=0.0)
    m = S.Seq2Seq(cfg).double().eval()
    src, inp = torch.randint(4, 20, (3, 7)), torch.randint(4, 20, (3, 7))
    tgt = torch.randint(4, 20, (3, 7))
    logp = m(src, inp)
    ref = _reference_logp(m, src, inp)
    assert torch.allclose(logp, ref, atol=1e-10)
    params = [p for p in m.parameters()]
    got = torch.autograd.grad(m.loss_sum(src, inp, tgt), params)      # hand-derived BPTT
    want = torch.autograd.grad(-ref.gather(-1, tgt[..., None]).sum(), params)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-9)


def test_only_the_conditional_models_read_the_source():
    torch.manual_seed(0)
    src, inp = torch.randint(4, 30, (2, 5)), torch.randint(4, 30, (2, 5))
    other = src.roll(1, 1)
    for context, reads in ((0, False), (4, True)):
        m = S.Seq2Seq(S.Seq2SeqConfig(vocab_size=30, embedding_dim=4, hidden_size=6,
                                      context_size=context, head="full")).eval()
        with torch.no_grad():
            assert torch.allclose(m(src, inp), m(other, inp)) != reads
    with pytest.raises(S.Seq2SeqError, match="attention needs"):
        S.Seq2SeqConfig(context_size=0, attention=True)
    with pytest.raises(S.Seq2SeqError, match="even"):
        S.Seq2SeqConfig(hidden_size=7)


def test_poem_couplets_and_config_errors():
    text = "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。"
    assert C.poem_couplets(text) == [("白日依山盡", "黃河入海流"), ("欲窮千里目", "更上一層樓")]
    with pytest.raises(C.CoupletError, match="variants"):
        C.CoupletsConfig(variants=["lstm"])
    with pytest.raises(C.CoupletError, match="epochs"):
        C.CoupletsConfig(epochs=0)
    with pytest.raises(C.CoupletError, match="num"):
        DJ.MatchConfig(num=0)


def test_small_live_run_and_its_model_file(tmp_path):
    cfg = C.CoupletsConfig(epochs=0.5, hidden_size=16, embedding_dim=8, small_context=2,
                           max_train=200, max_val=40, examples=2)
    r = C.measure_couplets(cfg, save_model=str(tmp_path / "m.safetensors"))
    assert r.val_couplets == 40 and r.train_couplets == 200 and r.line_length == 7
    assert list(r.bpc) == list(C.VARIANTS) and all(len(v) == 7 for v in r.per_position.values())
    assert all(0 < b < 20 for b in r.bpc.values())
    assert len(r.examples) == 2 and all(len(e["model"]) == 7 for e in r.examples)
    assert "held-out couplets" in r.describe() and "C = 2" in r.describe()
    again = C.CoupletsResult.from_dict(r.to_dict())
    assert again.describe() == r.describe()
    model, itos, extra = S.load_seq2seq(tmp_path / "m.safetensors")
    assert model.cfg.attention and len(itos) == model.cfg.vocab_size
    with pytest.raises(S.Seq2SeqError, match="cannot load"):
        S.load_seq2seq(tmp_path / "missing.safetensors")


def test_shipped_result_and_model():
    r = C.load_couplets_result()
    assert r.val_couplets == 362 * 4 and r.train_couplets > 27_000
    assert list(r.bpc) == list(C.VARIANTS) and r.config["max_train"] is None
    assert r.bpc["attention"] < r.bpc["unconditional"]       # the 上句 helps
    assert len(r.examples) == 5 and "python -m rnncore.textbook.couplets" in r.command
    assert DJ.model_path().stat().st_size < 5_000_000
    model, vocab = DJ.load_couplet_model()
    assert model.cfg.attention and len(vocab) == model.cfg.vocab_size


FIRST_LINES = ("白日依山盡", "床前明月光", "無邊落木蕭蕭下", "春風得意馬蹄疾", "国破山河在")


def test_rules_hold_on_100_matched_lines():
    table = rhyme_table()
    _, vocab = DJ.load_couplet_model()
    for k, first in enumerate(FIRST_LINES):
        up = DJ.check_first_line(first)
        for m in DJ.match_line(first, DJ.MatchConfig(num=20, seed=k, temperature=1.0)):
            line = m.line
            assert len(line) == len(first) and all(map(is_ideograph, line))
            assert all(c in vocab for c in line)
            assert table.can_be(line[-1], PING) and table.rhyme_groups(line[-1])
            if table.info(up[-1]).tones == {PING}:           # 首句入韻: rhymes with it
                assert table.rhyme_groups(line[-1]) & table.rhyme_groups(up[-1])
            assert m.checks["tones"] == 1.0 and m.checks["rhyme"]
            assert table.info(line[-1]).tones == {PING} or m.notes
            assert not set(line) & set(up) or any("repetition" in n for n in m.notes)
            assert len(m.bits) == len(first)


def test_matching_is_seeded_and_rejects_bad_lines():
    a = DJ.match_line("白日依山盡", DJ.MatchConfig(num=3, seed=7))
    b = DJ.match_line("白日依山盡", DJ.MatchConfig(num=3, seed=7))
    assert [m.line for m in a] == [m.line for m in b]
    g = DJ.match_line("白日依山盡，", DJ.MatchConfig(strategy="greedy", num=2))
    assert g[0].line == g[1].line and g[0].first == "白日依山盡"
    # a simplified 上句 reads as its traditional form (the vocabulary's script)
    simp = DJ.match_line("国破山河在", DJ.MatchConfig(strategy="greedy"))[0].line
    assert simp == DJ.match_line("國破山河在", DJ.MatchConfig(strategy="greedy"))[0].line
    for bad, msg in (("", "type a 上句"), ("abcde", "Chinese characters only"),
                     ("白日依山", "5 or 7"), ("白日依山盡黃河入海", "5 or 7"),
                     ("白日依山\U00020001", "vocabulary")):
        with pytest.raises(C.CoupletError, match=msg):
            DJ.match_line(bad)


def test_command_line(capsys):
    assert C.main(["--match", "白日依山盡", "--num", "2", "--seed", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(line.startswith("白日依山盡，") for line in out)
    assert C.main(["--match", "abc"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_generate_page_matches_a_line():
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    app = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
    at = AppTest.from_file(app, default_timeout=120)
    at.run()
    at.switch_page("pages/generate.py").run()
    submit = "FormSubmitter:gen_cpl_form-Write the 下句"
    at.text_input(key="gen_cpl_first").set_value("白日依山盡")
    at.button(key=submit).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    matches = at.session_state["gen_cpl"]
    assert len(matches) == 3 and all(len(m.line) == 5 for m in matches)
    assert sum("白日依山盡，" in m.value for m in at.markdown) == 3
    at.text_input(key="gen_cpl_first").set_value("hello")
    at.button(key=submit).click().run()
    assert not at.exception and len(at.error) == 1
    assert "Chinese characters only" in at.error[0].value
    assert at.session_state["gen_poems"]                   # the rest of the page still works


def test_describe_follows_the_numbers():
    r = C.load_couplets_result().to_dict()
    r["bpc"] = {"unconditional": 8.5, "fixed_small": 8.4, "fixed": 8.2, "attention": 7.5}
    r["sem_saving"] = {"unconditional": 0.0, "fixed_small": 0.02, "fixed": 0.02,
                       "attention": 0.02}
    r["training"] = {v: {"final_loss": b * C.LN2} for v, b in r["bpc"].items()}
    text = C.CoupletsResult.from_dict(r).describe()
    assert "saves +0.30 ± 0.02" in text and "beats the fixed c" in text
    assert "as the chapter says" in text and "the bottleneck bites" in text
    assert "not yet overfit" in text
    r["bpc"]["attention"] = 8.3
    text = C.CoupletsResult.from_dict(r).describe()
    assert "does not beat" in text and "as the chapter says" not in text

"""Constrained decoding (rnncore.generate) and the ``generate`` command.

Constraints must hold for ANY model, so most tests use a small random CharRNN; the vocab
comes from a slice of the bundled corpus.
"""
import math

import pytest
import torch

from rnncore import generate as G
from rnncore import poetry as P
from rnncore.data import Vocab, load_corpus
from rnncore.generate import GenerationConfig, GenerationError, generate
from rnncore.model import CharRNN, ModelConfig


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("tang")


@pytest.fixture(scope="module")
def vocab(corpus):
    return Vocab.build(p.text for p in corpus.poems[:400])


def _model(vocab, cell="lstm", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(cell=cell, vocab_size=len(vocab), embedding_dim=16, hidden_size=24,
                      num_layers=1)
    return CharRNN(cfg).eval()


@pytest.fixture(scope="module")
def model(vocab):
    return _model(vocab)


def _gen(model, vocab, **kw):
    return generate(model, vocab, GenerationConfig(**kw))


OPTIONS = [
    {},
    {"rhyme": True},
    {"tones": True},
    {"rhyme": True, "tones": True},
    {"rhyme": True, "tones": True, "constraint": "soft"},
    {"rhyme": True, "tones": True, "strategy": "greedy"},
    {"rhyme": True, "tones": True, "strategy": "beam", "beam_width": 3, "num": 2},
    {"rhyme": True, "tones": True, "top_k": 20, "top_p": 0.8, "temperature": 0.7},
    {"rhyme": True, "tones": True, "acrostic": True},
]


@pytest.mark.parametrize("form", list(P.FORMS))
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(f"{k}" for k in o) or "plain")
def test_every_form_and_option_is_valid(model, vocab, form, opts):
    opts = dict(opts)
    spec = P.FORMS[form]
    if opts.pop("acrostic", False):
        opts["acrostic"] = "春夏秋冬江山風月"[: spec.num_lines]
    hard = opts.get("constraint", "hard") == "hard"
    opts.setdefault("num", 3)
    for seed in range(3):
        poems = _gen(model, vocab, form=form, seed=seed, **opts)
        assert len(poems) == opts["num"]
        for poem in poems:
            m = poem.metrics
            assert m["form_valid"], poem.text
            assert P.check_form(poem.lines, form)
            assert len(poem.chars) == len(poem.probs) == spec.num_tokens
            assert all(0.0 < p <= 1.0 for p in poem.probs)
            if "acrostic" in opts:
                assert "".join(line[0] for line in poem.lines) == opts["acrostic"]
            if opts.get("rhyme") and hard:
                assert m["rhyme_valid"], poem.text
            if opts.get("tones") and hard:
                assert m["tone_match"] == 1.0, poem.text
            if hard:
                assert not any("relaxed" in n for n in poem.notes)


def test_rhyme_groups_shared_by_even_lines(model, vocab):
    table = P.rhyme_table()
    for poem in _gen(model, vocab, form="qilv", rhyme=True, num=8, seed=5):
        ends = [line[-2] for line in poem.lines[1::2]]
        shared = set(table.ping_groups)
        for c in ends:
            shared &= table.rhyme_groups(c)
        assert shared, ends


def test_tone_template_positions(model, vocab):
    table = P.rhyme_table()
    for poem in _gen(model, vocab, form="wulv", tones=True, num=6, seed=1):
        bodies = P.line_bodies(poem.lines)
        fits = [all(table.can_be(c, t) for b, pat in zip(bodies, tmpl.lines)
                    for c, t in zip(b, pat)) for tmpl in P.tone_templates("wulv")]
        assert any(fits)


def test_seed_reproducibility(model, vocab):
    a = [p.text for p in _gen(model, vocab, form="qijue", num=4, seed=7, rhyme=True)]
    b = [p.text for p in _gen(model, vocab, form="qijue", num=4, seed=7, rhyme=True)]
    c = [p.text for p in _gen(model, vocab, form="qijue", num=4, seed=8, rhyme=True)]
    assert a == b and a != c
    assert len(set(a)) > 1  # rows of one batch are different samples


def test_greedy_batch_equals_single(model, vocab):
    one = _gen(model, vocab, form="qilv", strategy="greedy", tones=True, rhyme=True)[0]
    many = _gen(model, vocab, form="qilv", strategy="greedy", tones=True, rhyme=True, num=4)
    assert all(p.text == one.text for p in many)
    assert all(p.logprobs == pytest.approx(one.logprobs, abs=1e-5) for p in many)


def test_top_k_one_and_beam_one_are_greedy(model, vocab):
    greedy = _gen(model, vocab, form="wujue", strategy="greedy", rhyme=True)[0].text
    assert _gen(model, vocab, form="wujue", top_k=1, rhyme=True, seed=3)[0].text == greedy
    assert _gen(model, vocab, form="wujue", top_p=1e-9, rhyme=True, seed=4)[0].text == greedy
    assert _gen(model, vocab, form="wujue", strategy="beam", beam_width=1,
                rhyme=True)[0].text == greedy


def test_beam_beats_greedy_and_is_sorted(model, vocab):
    greedy = _gen(model, vocab, form="qijue", strategy="greedy")[0]
    beams = _gen(model, vocab, form="qijue", strategy="beam", beam_width=6, num=3)
    scores = [p.score for p in beams]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] >= greedy.score - 1e-4
    assert len({p.text for p in beams}) == 3


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("opts", [{"num": 1}, {"num": 3, "acrostic": "春夏秋冬", "top_p": 0.7},
                                  {"num": 2, "strategy": "greedy", "prefix": "床前"}])
def test_logprobs_match_teacher_forcing(vocab, cell, opts):
    """The carried state gives the same per-character log-probs as one forward pass over
    [BOS] + poem (an independent reference for the step-by-step decoding). The LSTM runs
    through the fused stepper, whose head is skipped at forced tokens (marks, acrostic,
    prefix) and applied to them in one batch after the loop."""
    model = _model(vocab, cell=cell, seed=2)
    if cell == "lstm":
        assert G._LSTMStepper.supports(model)
    poems = _gen(model, vocab, form="qijue", rhyme=True, tones=True, seed=2, **opts)
    assert len(poems) == opts["num"]
    for poem in poems:
        ids = [vocab.bos_id] + [vocab.stoi[c] for c in poem.chars]
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids[:-1]]))
        want = torch.log_softmax(logits[0].double(), -1).gather(1, torch.tensor(ids[1:])[:, None])
        assert poem.logprobs == pytest.approx(want[:, 0].tolist(), abs=1e-4)
        assert poem.score == pytest.approx(sum(poem.logprobs))


def sample_scores(scores, gen):
    """One draw per row from softmax(scores), through the decoder's inverse-CDF sampler."""
    return G._sample_probs(torch.softmax(scores, -1), gen)


def filter_top_k_top_p(scores, top_k, top_p):
    """Scores outside the top-k / nucleus set to -inf, from the decoder's two filters."""
    scores = G._filter_top_k(scores, top_k)
    if top_p < 1.0:
        scores = scores.masked_fill(~G._nucleus_keep(torch.softmax(scores, -1), top_p),
                                    float("-inf"))
    return scores


def test_sampler_matches_softmax():
    torch.manual_seed(0)
    scores = torch.randn(1, 6)
    scores[0, 2] = float("-inf")
    gen = torch.Generator().manual_seed(0)
    n = 20000
    draws = sample_scores(scores.expand(n, -1).contiguous(), gen)
    freq = torch.bincount(draws, minlength=6).double() / n
    want = torch.softmax(scores[0].double(), -1)
    assert freq[2] == 0
    assert torch.allclose(freq, want, atol=0.015)


def test_top_k_top_p_filter_against_direct_computation():
    torch.manual_seed(1)
    scores = torch.randn(3, 10)
    out = filter_top_k_top_p(scores, top_k=4, top_p=1.0)
    for row, orow in zip(scores, out):
        keep = set(torch.topk(row, 4).indices.tolist())
        assert {i for i in range(10) if math.isfinite(orow[i])} == keep
    out = filter_top_k_top_p(scores, top_k=0, top_p=0.6)
    for row, orow in zip(scores, out):
        probs = torch.softmax(row, -1)
        order = torch.argsort(probs, descending=True).tolist()
        keep, mass = set(), 0.0
        for i in order:  # smallest prefix whose mass reaches 0.6
            keep.add(i)
            mass += float(probs[i])
            if mass >= 0.6:
                break
        assert {i for i in range(10) if math.isfinite(orow[i])} == keep


def _nucleus_by_hand(row, top_p):
    """The smallest prefix of tokens by decreasing probability whose mass reaches top_p."""
    probs = torch.softmax(row.double(), -1)
    keep, mass = set(), 0.0
    for i in torch.argsort(probs, descending=True).tolist():
        keep.add(i)
        mass += float(probs[i])
        if mass >= top_p:
            break
    return keep, probs


def test_nucleus_sampler_matches_filtered_softmax():
    """Rejection sampling from the nucleus has the law of softmax restricted to the nucleus
    and renormalised (the reference: the sorted-prefix definition, by hand)."""
    torch.manual_seed(3)
    scores = torch.randn(1, 12) * 1.5
    scores[0, 5] = float("-inf")
    keep, probs = _nucleus_by_hand(scores[0], 0.7)
    assert 1 < len(keep) < 11
    want = torch.zeros(12, dtype=torch.float64)
    for i in keep:
        want[i] = probs[i]
    want /= want.sum()
    n = 20000
    rows = torch.softmax(scores, -1).expand(n, -1).contiguous()
    draws = G._sample_nucleus(rows, 0.7, torch.Generator().manual_seed(0))
    freq = torch.bincount(torch.tensor(draws), minlength=12).double() / n
    assert set(torch.nonzero(freq).flatten().tolist()) <= keep
    assert torch.allclose(freq, want, atol=0.015)
    # same seed, same draws
    assert G._sample_nucleus(rows, 0.7, torch.Generator().manual_seed(0)) == draws


def test_nucleus_sampler_falls_back_to_the_exact_sort():
    """With a nucleus of mass ~1/1000 almost every row exhausts its rejection rounds and is
    finished by the sort: the result is still the best token everywhere."""
    scores = torch.zeros(64, 1000)
    scores[:, 417] = 0.01
    draws = G._sample_nucleus(torch.softmax(scores, -1), 1e-6, torch.Generator().manual_seed(1))
    assert draws == [417] * 64


def test_nucleus_keeps_ties_with_its_last_token():
    probs = torch.tensor([[0.4, 0.2, 0.2, 0.1, 0.1]])
    # the mass before either 0.2 token is 0.4 < 0.5, so both stay, whatever a sort does
    assert G._nucleus_keep(probs, 0.5).tolist() == [[True, True, True, False, False]]
    assert G._nucleus_keep(probs, 0.4).tolist() == [[True, False, False, False, False]]
    assert G._nucleus_keep(probs, 1e-9).tolist() == [[True, False, False, False, False]]


@pytest.mark.parametrize("constraint", ["hard", "soft"])
def test_scores_against_direct_masks(model, vocab, constraint):
    """Scores at a free position equal logits/T + structure mask - penalties (or -inf),
    built directly from the rhyme table and the tone templates."""
    cfg = GenerationConfig(form="qilv", rhyme=True, tones=True, num=2, constraint=constraint,
                           rhyme_weight=3.0, tone_weight=1.5)
    dec = G._Decoder(model, vocab, cfg, rows=2)
    dec.viol = [[0, 1, 1, 1], [1, 1, 0, 0]]  # row 0: template 0 alive, row 1: templates 2, 3
    table, templates = P.rhyme_table(), P.tone_templates("qilv")
    torch.manual_seed(0)
    logits = torch.randn(2, len(vocab))
    for line, col in [(2, 1), (1, 6)]:  # a tone position; the rhyme position of line 2
        got = dec._scores(logits, line, col, scale=0.5)
        for r, alive in enumerate([[0], [2, 3]]):
            needs = {templates[t].lines[line][col] for t in alive}
            for v, c in enumerate(vocab.itos):
                ok_char = v >= 4 and P.is_ideograph(c)
                info = table.info(c) if ok_char else None
                tone_ok = ok_char and (P.FREE in needs or any(
                    table.can_be(c, need) for need in needs))
                rhyme_ok = col != 6 or (ok_char and bool(info.ping_groups))
                want = 0.5 * float(logits[r, v])
                if not ok_char:
                    want = float("-inf")
                elif constraint == "hard":
                    if not (tone_ok and rhyme_ok):
                        want = float("-inf")
                else:
                    want -= 1.5 * (not tone_ok) + 3.0 * (not rhyme_ok)
                assert float(got[r, v]) == pytest.approx(want, abs=1e-5), (line, col, r, c)


def test_lstm_stepper_without_input_table(vocab, monkeypatch):
    """The per-token input projection table is an optimisation: without it (too big) the
    step multiplies the embedding row and gives the same logits."""
    model = _model(vocab, seed=7)
    tokens, state = torch.tensor([5, 9]), model.init_state(2)
    with torch.no_grad():
        with_table = G._LSTMStepper(model)
        assert with_table.input_table is not None
        a, _ = with_table(tokens, state)
        G._FUSED_CACHE.clear()
        monkeypatch.setattr(G._LSTMStepper, "MAX_INPUT_TABLE_BYTES", 0)
        plain = G._LSTMStepper(model)
        assert plain.input_table is None
        b, _ = plain(tokens, state)
        ref, _ = model.step(tokens, state)
    G._FUSED_CACHE.clear()
    assert torch.allclose(a, ref, atol=1e-5) and torch.allclose(b, ref, atol=1e-5)


def test_reports_are_the_same_in_any_batch(vocab, monkeypatch):
    """Per-character log-probs and relative scores are computed after the draws, many
    positions at once: flushing after every position gives the same numbers, bit for bit."""
    from rnncore.generate.reports import _Reports

    model = _model(vocab, seed=4)
    opts = dict(form="qilv", rhyme=True, tones=True, num=3, seed=5)
    batched = _gen(model, vocab, **opts)
    monkeypatch.setattr(_Reports, "MAX_PENDING", 1)
    each = _gen(model, vocab, **opts)
    assert [(p.text, p.logprobs, p.relative) for p in batched] == \
        [(p.text, p.logprobs, p.relative) for p in each]


def _fp16_valued_lstm(vocab, seed):
    """An LSTM CharRNN whose weights are float16 values held in float32 (as after loading a
    float16 checkpoint), 2 layers so the fused deeper layer is exercised too."""
    torch.manual_seed(seed)
    cfg = ModelConfig(cell="lstm", vocab_size=len(vocab), embedding_dim=16, hidden_size=24,
                      num_layers=2)
    model = CharRNN(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def test_fp16_packed_weights_match_float32(vocab, monkeypatch):
    """Float16-packed weights of a float16-valued model give the float32 logits (~1e-6)
    one row and many, and the same poems; a model with other weights never packs."""
    model = _fp16_valued_lstm(vocab, seed=8)
    fast = G._LSTMStepper(model)
    if fast.head_packed is None:
        pytest.skip("no fbgemm float16 kernels in this torch build")
    fast.fp16_one_row = True  # the packed path for one row too, whatever the thread count
    with torch.no_grad():
        for rows in (1, 3):
            state = ref_state = model.init_state(rows)
            for tokens in torch.randint(4, len(vocab), (5, rows)):
                logits, state = fast(tokens, state)
                ref_logits, ref_state = model.step(tokens, ref_state)
                assert torch.allclose(logits, ref_logits, atol=1e-5)
                assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(state, ref_state))
    assert G._LSTMStepper(_model(vocab, seed=8)).head_packed is None  # not float16 values

    opts = dict(form="qilv", rhyme=True, tones=True, num=4, top_p=0.9, seed=11)
    packed = _gen(model, vocab, **opts)
    monkeypatch.setattr(G._LSTMStepper, "FP16_WEIGHTS", False)
    plain = _gen(model, vocab, **opts)
    assert G._LSTMStepper(model).head_packed is None
    assert [p.text for p in packed] == [p.text for p in plain]
    for a, b in zip(packed, plain):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_locked_lines_and_prefix_are_kept(model, vocab):
    locked = {1: "千里江陵一日還", 3: "輕舟已過萬重山"}
    poems = _gen(model, vocab, form="qijue", locked_lines=locked, rhyme=True, tones=True, num=3)
    for poem in poems:
        assert poem.lines[1] == "千里江陵一日還。" and poem.lines[3] == "輕舟已過萬重山。"
        assert poem.metrics["form_valid"]
        assert any("candidates" in n for n in poem.notes)
    poem = _gen(model, vocab, form="wulv", prefix="床前明月光，疑是", seed=2)[0]
    assert poem.text.startswith("床前明月光，疑是")


def test_locked_rescoring_picks_best_candidate(model, vocab, monkeypatch):
    locked = {2: "兩岸猿聲啼不住"}
    seen = {}
    real_run = G._Decoder.run

    def spy(self, style_ids, generator):
        out = real_run(self, style_ids, generator)
        seen["locked"] = out[2]
        return out

    monkeypatch.setattr(G._Decoder, "run", spy)
    poems = _gen(model, vocab, form="qijue", locked_lines=locked, num=2, locked_candidates=5)
    cand = seen["locked"].reshape(2, 5)
    pos = [2 * 8 + j for j in range(7)]
    for poem, row in zip(poems, cand):
        assert sum(poem.logprobs[i] for i in pos) == pytest.approx(float(row.max()), abs=1e-4)


def test_style_primes_but_is_not_printed(model, vocab):
    plain = _gen(model, vocab, form="qijue", strategy="greedy")[0].text
    styled = _gen(model, vocab, form="qijue", strategy="greedy", style="秋風蕭瑟天氣涼")[0].text
    assert styled != plain and "秋風蕭瑟" not in styled


def test_simplified_output(model, vocab):
    poem = _gen(model, vocab, form="qijue", rhyme=True, acrostic="东南西北", simplified=True)[0]
    assert P.to_simplified(poem.text) == poem.text
    assert "".join(line[0] for line in poem.lines) == "东南西北"
    assert poem.metrics["rhyme_valid"] and poem.metrics["form_valid"]


def test_hard_masks_fall_back_gracefully():
    vocab = Vocab.build(["月日木竹石，。"])  # all 仄: no rhyme and no 平 position can be met
    model = _model(vocab, seed=1)
    poems = _gen(model, vocab, form="wujue", rhyme=True, tones=True, num=2)
    for poem in poems:
        assert poem.metrics["form_valid"]
        assert any("tone rule relaxed" in n for n in poem.notes)
        assert any("rhyme rule relaxed" in n for n in poem.notes)


def test_training_corpus_notes_and_novelty(model, vocab, corpus):
    poem = _gen(model, vocab, form="wujue", seed=0)[0]
    assert "longest_copied_run" not in poem.metrics
    poem = generate(model, vocab, GenerationConfig(form="wujue"), training_corpus=corpus)[0]
    assert any("form outside the training data (the model was trained on 七言律詩)" in n
               for n in poem.notes)
    assert 0 <= poem.metrics["longest_copied_run"] <= 20
    assert 0.0 <= poem.metrics["seen_4gram_share"] <= 1.0
    poem = generate(model, vocab, GenerationConfig(form="qilv"), training_corpus=corpus)[0]
    assert not any("outside the training data" in n for n in poem.notes)


@pytest.mark.parametrize("kwargs, message", [
    ({"form": "sonnet"}, "unknown form 'sonnet'"),
    ({"temperature": 0}, "temperature must be > 0"),
    ({"temperature": -1.0}, "temperature must be > 0"),
    ({"top_p": 0.0}, "top_p must be > 0"),
    ({"top_p": 1.5}, "top_p must be <= 1"),
    ({"top_k": -1}, "top_k must be >= 0"),
    ({"num": 0}, "num must be >= 1"),
    ({"strategy": "nucleus"}, "unknown strategy 'nucleus'"),
    ({"constraint": "medium"}, "constraint must be 'hard' or 'soft'"),
    ({"acrostic": "   "}, "acrostic is empty"),
    ({"acrostic": "春夏秋"}, "has 3 characters but a 七言絕句 has 4 lines"),
    ({"acrostic": "春夏秋x"}, "acrostic contains 'x'"),
    ({"prefix": "一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十"},
     "prefix has 30 characters but a 七言絕句 has only 28"),
    ({"locked_lines": {4: "千里江陵一日還"}}, r"locked_lines index 4 is outside 0..3 \(0-based\)"),
    ({"locked_lines": {1: "千里江陵"}}, r"locked_lines\[1\] must have 7 characters"),
    ({"locked_lines": {0: "千里江陵一日還"}, "acrostic": "春夏秋冬"},
     r"locked_lines\[0\] puts 千 at line 1 character 1 where acrostic has 春"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(GenerationError, match=message):
        GenerationConfig(**kwargs)


def test_out_of_vocabulary_characters(model, vocab):
    with pytest.raises(GenerationError, match="acrostic character 𪚥 is not in the model"):
        _gen(model, vocab, acrostic="春夏秋𪚥")
    with pytest.raises(GenerationError, match="prefix character"):
        _gen(model, vocab, prefix="𪚥")
    # a simplified head is mapped to the traditional vocab entry
    poem = _gen(model, vocab, acrostic="东风无语")[0]
    assert [line[0] for line in poem.lines] == ["東", "風", "無", "語"]


def test_default_model(monkeypatch, tmp_path):
    G.load_default_model.cache_clear()
    monkeypatch.setattr(G, "default_model_path", lambda: tmp_path / "missing")
    with pytest.raises(G.DefaultModelMissing, match="bundled model is missing"):
        G.load_default_model()
    G.load_default_model.cache_clear()


def test_default_model_path_is_inside_package():
    path = G.default_model_path()
    assert path.parts[-3:] == ("rnncore", "assets", "tang_default")


# --------------------------------------------------------------------------- CLI

@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, vocab):
    from rnncore.checkpoint import save_checkpoint

    model = _model(vocab)
    path = tmp_path_factory.mktemp("ckpt") / "step-0"
    save_checkpoint(path, model, vocab, model.cfg)
    return path


def test_cli_prints_poems(checkpoint_dir, capsys):
    from rnncore.cli import main

    rc = main(["generate", "--checkpoint", str(checkpoint_dir), "--form", "wujue",
               "--acrostic", "春夏秋冬", "--rhyme", "--tones", "--num", "2", "--seed", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert [line[0] for line in lines] == list("春夏秋冬") * 2
    assert "rhyme ok" in out and "tones 100%" in out


def test_cli_json_and_lock(checkpoint_dir, capsys):
    import json

    from rnncore.cli import main

    rc = main(["generate", "--checkpoint", str(checkpoint_dir), "--form", "qijue",
               "--lock", "2:千里江陵一日還", "--json", "--beam", "3", "--simplified"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert data["poems"][0]["lines"][1] == "千里江陵一日还。"
    assert data["config"]["strategy"] == "beam"


@pytest.mark.parametrize("argv, message", [
    (["--acrostic", "春夏"], "error: acrostic '春夏' has 2 characters"),
    (["--top-p", "2"], "error: top_p must be <= 1"),
    (["--form", "haiku"], "error: unknown form 'haiku'"),
    (["--lock", "x:abc"], "error: --lock expects N:LINE"),
    (["--greedy", "--beam", "2"], "error: --greedy and --beam exclude each other"),
])
def test_cli_errors(checkpoint_dir, capsys, argv, message):
    from rnncore.cli import main

    rc = main(["generate", "--checkpoint", str(checkpoint_dir)] + argv)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_fast_lstm_step_matches_model_step(vocab):
    torch.manual_seed(4)
    cfg = ModelConfig(cell="lstm", vocab_size=len(vocab), embedding_dim=12, hidden_size=20,
                      num_layers=2)
    model = CharRNN(cfg).eval()
    assert G._LSTMStepper.supports(model)
    assert not G._LSTMStepper.supports(_model(vocab, cell="gru"))
    fast = G._LSTMStepper(model)
    with torch.no_grad():
        state = model.init_state(3)
        ref_state = state
        for tokens in torch.randint(4, len(vocab), (6, 3)):
            logits, state = fast(tokens, state)
            ref_logits, ref_state = model.step(tokens, ref_state)
            assert torch.allclose(logits, ref_logits, atol=1e-5)
            assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(state, ref_state))


def test_fast_step_cache_follows_weight_updates(vocab):
    model = _model(vocab, seed=6)
    first = G._LSTMStepper(model)
    assert G._LSTMStepper(model).layers is first.layers  # reused while weights are unchanged
    with torch.no_grad():
        model.rnn.weight_hh_l0.add_(0.5)  # in-place update, like an optimizer step
    fresh = G._LSTMStepper(model)
    assert fresh.layers is not first.layers
    tokens, state = torch.tensor([5, 6]), model.init_state(2)
    with torch.no_grad():
        logits, _ = fresh(tokens, state)
        ref, _ = model.step(tokens, state)
    assert torch.allclose(logits, ref, atol=1e-5)

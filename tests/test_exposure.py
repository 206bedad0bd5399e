"""Teacher forcing against free running (rnncore.exposure): the per-position scores
against a teacher-forced recomputation, the shipped result, the command line."""
import json

import pytest
import torch
import torch.nn.functional as F

from rnncore import exposure as E
from rnncore.model import CharRNN, ModelConfig


def _tiny_model(vocab_size=12):
    torch.manual_seed(0)
    return CharRNN(ModelConfig(cell="lstm", vocab_size=vocab_size, embedding_dim=8,
                               hidden_size=16, num_layers=2)).eval()


def test_scores_equal_teacher_forced_recomputation():
    """The free-running loop's bits equal a teacher-forced pass over the histories it fed;
    teacher/other equal cross-entropy on the true and the next poem's inputs."""
    model, V, P, S, n = _tiny_model(), 12, 3, 2, 9
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, V, (P, n + 1), generator=gen)
    tokens[:, 0] = 2                                  # <bos>
    tokens[1, 7:] = 0                                 # a shorter poem, padded
    mask = torch.arange(V) >= 4
    bits, valid, fed = E.score_histories(model, tokens, 0, mask, S, gen)
    targets = tokens[:, 1:]
    with torch.no_grad():
        ce = lambda inp, tgt: F.cross_entropy(  # noqa: E731
            model(inp)[0].transpose(1, 2), tgt, reduction="none") / E.LN2
        ref_free = ce(fed, targets.repeat_interleave(S, 0))
        ref_teacher = ce(tokens[:, :-1], targets)
        ref_other = ce(tokens[:, :-1].roll(-1, 0), targets)
    assert torch.allclose(bits["free"], ref_free, atol=1e-4)
    assert torch.allclose(bits["teacher"], ref_teacher, atol=1e-4)
    assert torch.allclose(bits["other"], ref_other, atol=1e-4)
    assert (fed[:, 0] == 2).all() and mask[fed[:, 1:]].all()   # own samples: chars only
    assert valid["teacher"][1].tolist() == [True] * 6 + [False] * 3
    # poem 0 reads poem 1's inputs, real through input 6 (its targets end one earlier)
    assert valid["other"][0].tolist() == [True] * 7 + [False] * 2
    assert valid["free"].shape == (P * S, n)


def test_measure_on_the_bundled_model_and_a_few_poems():
    r = E.measure_exposure(E.ExposureConfig(max_poems=3, samples=1))
    assert r.poems == 3 and r.positions == list(range(1, 66)) and set(r.count) == {3}
    assert all(len(getattr(r, h)) == 65 for h in E.HISTORIES)
    # true history beats another poem's on average (the model reads its context)
    assert r.mean("teacher") < r.mean("other")
    assert "held-out poems" in r.describe()
    again = E.ExposureResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again.describe() == r.describe()


def test_shipped_result_is_the_full_validation_set():
    r = E.load_result()
    assert r.poems == 362 and r.config["max_poems"] is None
    assert len(r.positions) == len(r.teacher) == len(r.free) == len(r.other) == 65
    assert 6.5 < r.mean("teacher") < 8.5             # the model card's 7.37 bits per char
    assert r.mean("free") > r.mean("teacher")
    assert "python -m rnncore.exposure" in r.command


def test_bad_requests(tmp_path, capsys):
    with pytest.raises(E.ExposureError, match="at least 2"):
        E.ExposureConfig(max_poems=1)
    with pytest.raises(E.ExposureError, match="samples"):
        E.ExposureConfig(samples=0)
    with pytest.raises(E.ExposureError, match="cannot read"):
        E.load_result(tmp_path / "missing.json")
    assert E.main(["--max-poems", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: ")

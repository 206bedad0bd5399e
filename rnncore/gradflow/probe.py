"""The thing every probe measures: a float64 model and one input sequence (``prepare``).

The model is a trained ``CharRNN`` checkpoint or a fresh one; the input a Tang poem's
characters (BOS first) or random tokens. ``inputs`` x_0..x_{T-1} and ``targets``
x_1..x_T are (1, T): batch size 1, so every number is about one sequence. The model is
copied to float64 (tiny norms at long lags stay representable) and put in eval mode.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from rnncore.gradflow.config import GradFlowConfig, GradFlowError
from rnncore.gradflow.spectral import gate_blocks, rescale_recurrent_
from rnncore.kinds import CellKind, cell_kind, cell_of, layer_weights


@dataclass
class Probe:
    """A model ready to probe: float64 eval copy, one sequence (batch 1).

    ``inputs``/``targets``: (1, T) long, targets = inputs shifted by one.
    ``chars``: the T input characters (``"<bos>"`` for BOS) for axis labels.
    """

    model: torch.nn.Module
    cell: str
    inputs: Tensor
    targets: Tensor
    chars: list[str]
    source: str
    config: GradFlowConfig | None = None

    @property
    def kind(self) -> CellKind:
        return cell_kind(self.cell)

    @property
    def seq_len(self) -> int:
        return self.inputs.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.model.rnn.hidden_size

    @property
    def num_layers(self) -> int:
        return self.model.rnn.num_layers

    def layer_index(self, layer: int) -> int:
        n = self.num_layers
        if not -n <= layer < n:
            raise GradFlowError(f"layer {layer} out of range for a {n}-layer model")
        return layer % n


@functools.lru_cache(maxsize=2)
def _tang_corpus():
    from rnncore.data import Vocab, load_corpus

    corpus = load_corpus("tang")
    return corpus, Vocab.build(p.text for p in corpus.poems)


def _poem_tokens(vocab, poem_index: int, length: int) -> list[int]:
    corpus, _ = _tang_corpus()
    if poem_index >= len(corpus.poems):
        raise GradFlowError(f"poem_index {poem_index} out of range "
                            f"(the corpus has {len(corpus.poems)} poems)")
    tokens: list[int] = []
    index = poem_index
    while len(tokens) < length:
        poem = corpus.poems[index % len(corpus.poems)]
        tokens += vocab.encode_poem(poem.text, poem.form)  # a form-token model's start
        index += 1
    return tokens[:length]


def _fresh_model(cfg: GradFlowConfig, vocab_size: int):
    from rnncore.model import CharRNN, ModelConfig

    torch.manual_seed(cfg.seed)
    model = CharRNN(ModelConfig(cell=cfg.cell, vocab_size=vocab_size,
                                embedding_dim=cfg.embedding_dim, hidden_size=cfg.hidden_size,
                                num_layers=cfg.num_layers, engine="bptt"))
    if cfg.init == "orthogonal":
        with torch.no_grad():
            for layer in range(cfg.num_layers):
                w_hh = layer_weights(model.rnn, layer)[1]
                for block in gate_blocks(cfg.cell, w_hh, cfg.hidden_size).values():
                    torch.nn.init.orthogonal_(block)
    return model


def prepare(cfg: GradFlowConfig, model: torch.nn.Module | None = None, vocab=None) -> Probe:
    """Build (or load, or take) the model and the input sequence of ``cfg.seq_len`` steps."""
    from rnncore.data import Vocab

    if model is None and cfg.checkpoint is not None:
        from rnncore.checkpoint import load_checkpoint

        ckpt = load_checkpoint(cfg.checkpoint)
        model, vocab = ckpt.model, ckpt.vocab
    if model is None:
        if cfg.seq_source == "poem":
            vocab = _tang_corpus()[1]
        model = _fresh_model(cfg, len(vocab) if vocab is not None else cfg.vocab_size)
    if getattr(model.rnn, "bidirectional", False):
        raise GradFlowError("gradient-flow probes need a unidirectional model")
    cell = cell_of(model)
    length = cfg.seq_len + 1
    vocab_size = model.embedding.num_embeddings
    if cfg.seq_source == "poem":
        if vocab is None:
            vocab = _tang_corpus()[1]
            if len(vocab) != vocab_size:
                raise GradFlowError("a poem input needs the model's vocabulary")
        tokens = _poem_tokens(vocab, cfg.poem_index, length)
        itos = vocab.itos
    else:
        gen = torch.Generator().manual_seed(cfg.seed)
        tokens = torch.randint(Vocab.eos_id + 1, vocab_size, (length,), generator=gen).tolist()
        itos = vocab.itos if vocab is not None else None
    ids = torch.tensor(tokens, dtype=torch.long)[None]
    chars = [itos[i] if itos is not None else f"#{i}" for i in tokens[:-1]]
    model64 = copy.deepcopy(model).double().eval()
    for p in model64.parameters():
        p.requires_grad_(True)
    if cfg.rho is not None:
        rescale_recurrent_(model64, cfg.rho)
    return Probe(model64, cell, ids[:, :-1], ids[:, 1:], chars, cfg.seq_source, cfg)

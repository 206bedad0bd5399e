"""Constrained decoding of one batch of rows: sampling, greedy and beam search.

The decoder writes the form's ``L * (W + 1)`` tokens (``L`` lines of ``W`` characters,
each followed by its mark) one position at a time through an engine (``stepper``); the
rows are the poems (``B = num``, or ``num * locked_candidates`` with locked lines, or the
beam width).

Scores at a position, for each row b and token v::

    s[b, v] = log_softmax(logits / temperature)[b, v]
              - rhyme_weight * [v breaks the rhyme]  - tone_weight * [v breaks the tones]   (soft)
    s[b, v] = -inf  where v is not allowed                                                  (hard)

Masks (``True`` = allowed, each a (B, V) or (V,) bool tensor built from the vocab tables,
``tables``):

* structure: inside a line only CJK ideographs of the vocab; at a line end only its mark
  ("，" after odd lines, "。" after even lines) -- always hard, so every poem has the form;
* acrostic / prefix / locked lines: the given character is the only token (forced);
* rhyme (``rhyme=True``): at the end of every even line the character must share a 平水韻
  level-tone group with the rhyme groups still open for that row ``G_b`` (a (B, 30) bool
  tensor, all True at the start); choosing ``v`` sets ``G_b <- G_b & groups(v)``. At the end
  of line 1 a character that can only be read 平 (so it must rhyme) must share ``G_b``; one
  that can be read 仄 is free;
* tones (``tones=True``): the four 平仄 templates of the form (``poetry.tone_templates``)
  are kept alive per row: ``viol[b, t]`` counts characters breaking template t, the alive
  templates are those with the fewest violations and a character is allowed if some alive
  template accepts it. Characters forced by acrostic / prefix / locked lines are counted
  before decoding starts, so free positions already follow the template they fit.

Repetition rules, for every strategy (as the rules of 律詩 and 絕句 have it, and so greedy
and beam search cannot loop): a character that ends a rhyming line (line 1 and every even
line) never ends another one in the same poem, and no 3-character sequence inside a line
occurs twice in the poem (so no line repeats either). Forced characters are exempt.

If a hard mask leaves a row without any token, the repetition rule is dropped first, then
the tone mask for that position, then the rhyme mask (a note on the poem says where); the
structure mask is never dropped.

Sampling draws from the scores (``sampling``), greedy takes the argmax. Beam search keeps
``max(beam_width, num)`` rows scored by the sum of (penalised) log-probs at the given
temperature; ``top_k``/``top_p`` limit each row's expansions as they limit a draw.
"""
from __future__ import annotations

import torch

from rnncore.generate.config import GenerationConfig, GenerationError
from rnncore.generate.reports import _relative, _Reports
from rnncore.generate.sampling import _draw, _filter_top_k, _nucleus_keep, _Uniforms
from rnncore.generate.stepper import _LSTMStepper, _ModelEngine
from rnncore.generate.tables import _tables, _template_codes, _union_kinds, _vocab_char


class _Decoder:
    """One decoding run over ``rows`` rows (see the module docstring)."""

    def __init__(self, model, vocab, cfg: GenerationConfig, rows: int) -> None:
        self.vocab, self.cfg = vocab, cfg
        if _LSTMStepper.supports(model):
            self.engine = _LSTMStepper(model)
        else:
            self.engine = _ModelEngine(model)
        self.form = form = cfg.poem_form
        self.t = t = _tables(vocab)
        self.rows = rows
        self.notes: list[list[str]] = [[] for _ in range(rows)]
        for mark in ("，", "。"):
            if self.t.marks[mark] is None:
                raise GenerationError(f"the model's vocabulary has no {mark}, so it cannot "
                                      "write line ends")
        if not bool(self.t.char_ok.any()):
            raise GenerationError("the model's vocabulary has no Chinese characters")
        W = form.line_length
        # forced token per position (-1 = free); positions run over chars and marks
        self.forced = [-1] * form.num_tokens
        for li in range(form.num_lines):
            self.forced[li * (W + 1) + W] = self.t.marks[form.line_mark(li)]
        fixed = cfg.fixed_chars()
        what = {}
        for i, _ in enumerate(cfg.prefix):
            what[i] = "prefix"
        for li in range(len(cfg.acrostic)):
            what[li * W] = "acrostic"
        for li in cfg.locked_lines:
            for j in range(W):
                what[li * W + j] = f"locked_lines[{li}]"
        self.fixed_ids = {}
        for ci, char in fixed.items():
            line, col = divmod(ci, W)
            tok = _vocab_char(char, vocab, what[ci])
            self.fixed_ids[(line, col)] = tok
            self.forced[line * (W + 1) + col] = tok
        self.locked_positions = [li * (W + 1) + j for li in cfg.locked_lines for j in range(W)]
        codes = _template_codes(form.key)  # (T, L, W)
        T = codes.shape[0]
        # the tone state is a few small ints per row, kept in Python: per (line, col) the
        # requirement code of every template, and the union kind per alive-template set
        self.codes = codes.permute(1, 2, 0).tolist()  # (L, W, T)
        self.kinds = _union_kinds(form.key).tolist()  # (L, W, 2**T)
        self.viol = [[0] * T for _ in range(rows)]
        self.groups = torch.ones(rows, self.t.rhyme.shape[1], dtype=torch.bool)
        # additive mask row per tone requirement: hard -inf, soft -tone_weight (4, V)
        if cfg.constraint == "soft":
            self.tone_bias = t.struct_bias - cfg.tone_weight * (~t.tone_ok).float()
        else:
            self.tone_bias = t.tone_bias
        self.tone_rows = list(self.tone_bias.unbind(0))
        # repetition state per row: tokens so far, the 3-grams inside lines as
        # (a, b) -> {c}, and the characters that ended rhyming lines
        self.hist: list[list[int]] = [[] for _ in range(rows)]
        self.seen3: list[dict] = [{} for _ in range(rows)]
        self.rhyme_used: list[set] = [set() for _ in range(rows)]
        self._init_from_fixed()

    def _rhyming_end(self, line: int, col: int) -> bool:
        """(line, col) is the last character of a line that rhymes: line 1 (when its
        character is read 平) and every even line."""
        return col == self.form.line_length - 1 and (line % 2 == 1 or line == 0)

    def _init_from_fixed(self) -> None:
        """Count template violations and narrow the rhyme groups from fixed characters, so
        free positions before a locked line already agree with it."""
        t, W = self.t, self.form.line_length
        for (line, col), tok in self.fixed_ids.items():
            if self.cfg.tones:
                self._count_violations([tok] * self.rows, line, col)
            if self._rhyming_end(line, col):
                for used in self.rhyme_used:  # free line ends must not repeat it
                    used.add(tok)
            rhyme_pos = self._rhyming_end(line, col) and (line > 0 or bool(t.level_only[tok]))
            if self.cfg.rhyme and rhyme_pos:
                narrowed = self.groups & t.rhyme[tok]
                if bool(narrowed.any()):
                    self.groups = narrowed
                else:
                    self._note_all(f"the fixed character at line {line + 1} does not rhyme "
                                   "with the other fixed line ends")

    def _note_all(self, text: str) -> None:
        for n in self.notes:
            if text not in n:
                n.append(text)

    # masks ----------------------------------------------------------------------------
    def _tone_kinds(self, line: int, col: int) -> list[int]:
        """``tone_ok`` row per batch row: the union over the templates with the fewest
        violations (the alive ones) of what they accept at (line, col)."""
        table = self.kinds[line][col]
        out = []
        for v in self.viol:
            low = min(v)
            out.append(table[sum(1 << k for k, n in enumerate(v) if n == low)])
        return out

    def _rhyme_allowed(self, line: int) -> torch.Tensor:
        shares = (self.groups.float() @ self.t.rhyme_fT) > 0  # (B, V)
        if line == 0:  # a 仄-capable (or unknown) ending may leave line 1 unrhymed
            return shares | self.t.not_level_only
        return shares

    def _scores(self, base: torch.Tensor, line: int, col: int, scale: float = 1.0
                ) -> torch.Tensor:
        """Constrained log-scores (B, V) = ``scale * base`` plus the masks / penalties at a
        free character position (``base``: logits or log-probs)."""
        cfg, t = self.cfg, self.t
        rhyme_here = cfg.rhyme and self._rhyming_end(line, col)
        kinds = self._tone_kinds(line, col) if cfg.tones else [0] * self.rows
        hard = cfg.constraint == "hard"
        if not rhyme_here or not hard:
            if hard and not all(t.tone_nonempty[k] for k in kinds):
                # only with a vocab lacking every 平 (or 仄) character
                empty = torch.tensor([not t.tone_nonempty[k] for k in kinds])
                self._note_rows(empty, f"tone rule relaxed at line {line + 1} character "
                                       f"{col + 1} (no character fits)")
                kinds = [k if t.tone_nonempty[k] else 0 for k in kinds]
            first = kinds[0]
            if all(k == first for k in kinds):
                bias = self.tone_rows[first]  # (V,), broadcast over rows
            else:
                bias = self.tone_bias.index_select(0, torch.tensor(kinds))
            scores = torch.add(bias, base, alpha=scale)
            if rhyme_here:  # soft
                scores = scores - cfg.rhyme_weight * (~self._rhyme_allowed(line)).float()
            return scores
        # hard rhyme position (5 per 律詩): one cached 0 / -inf row per open rhyme groups
        # and tone requirement (``tables.rhyme_row``), its rules relaxed row by row
        rows = [t.rhyme_row(tuple(g), line == 0, k if cfg.tones else None)
                for g, k in zip(self.groups.tolist(), kinds)]
        for notes, (_, tone_relaxed, rhyme_relaxed) in zip(self.notes, rows):
            if tone_relaxed:
                notes.append(f"tone rule relaxed at line {line + 1} character {col + 1} "
                             "(no character fits)")
            if rhyme_relaxed:
                notes.append(f"rhyme rule relaxed at line {line + 1} (no rhyming character "
                             "fits)")
        first = rows[0]
        bias = first[0] if all(r is first for r in rows) else torch.stack([r[0] for r in rows])
        return torch.add(bias, base, alpha=scale)  # 0 + x = x: as base * scale, masked

    def _note_rows(self, rows: torch.Tensor, text: str) -> None:
        for r in rows.nonzero().flatten().tolist():
            self.notes[r].append(text)

    def _update(self, tok: torch.Tensor, ids: list[int], line: int, col: int,
                forced: bool) -> None:
        """Advance the tone and rhyme state after writing ``tok`` (B,) (``ids`` as a list)
        at (line, col)."""
        cfg, t = self.cfg, self.t
        if cfg.tones and not forced:  # fixed characters were counted up front
            self._count_violations(ids, line, col)
        if cfg.rhyme and self._rhyming_end(line, col):
            narrowed = self.groups & t.rhyme[tok]
            apply = narrowed.any(1)
            if line == 0:
                apply &= t.level_only[tok]
            self.groups = torch.where(apply[:, None], narrowed, self.groups)

    def _record(self, ids: list[int], line: int, col: int) -> None:
        """Remember what each row wrote at (line, col) for the repetition rules."""
        W, rhyming = self.form.line_length, self._rhyming_end(line, col)
        for hist, seen, used, i in zip(self.hist, self.seen3, self.rhyme_used, ids):
            hist.append(i)
            if 2 <= col < W:
                seen.setdefault((hist[-3], hist[-2]), set()).add(i)
            if rhyming:
                used.add(i)

    def _ban_repeats(self, scores: torch.Tensor, line: int, col: int) -> torch.Tensor:
        """``scores`` (B, V) with the repetition rules applied in place: -inf for a 3-gram
        this row already wrote and, at a rhyming line end, for a character that already
        ended one. A row the ban would leave without any token keeps its scores."""
        rows, toks = [], []
        rhyming = self._rhyming_end(line, col)
        for r, (hist, seen, used) in enumerate(zip(self.hist, self.seen3, self.rhyme_used)):
            banned = set(seen.get((hist[-2], hist[-1]), ())) if col >= 2 else set()
            if rhyming:
                banned |= used
            rows += [r] * len(banned)
            toks += banned
        if not rows:
            return scores
        index = (torch.tensor(rows), torch.tensor(toks))
        before = scores[index]
        scores[index] = float("-inf")
        # ~isfinite(scores).any(1) in float ops (s - s: 0 where finite, else NaN), faster
        empty = (scores - scores).nan_to_num_(nan=-1.0).amax(1) < 0
        if bool(empty.any()):
            keep = empty[index[0]]
            scores[index[0][keep], index[1][keep]] = before[keep]
            self._note_rows(empty, f"repetition allowed at line {line + 1} character "
                                   f"{col + 1} (no other character fits)")
        return scores

    def _count_violations(self, ids: list[int], line: int, col: int) -> None:
        """Add, per row, one violation to every template whose requirement at (line, col)
        the row's token ``ids[row]`` does not meet."""
        codes, ok_rows = self.codes[line][col], self.t.tone_ok_rows
        for v, i in zip(self.viol, ids):
            ok = ok_rows[i]
            for k, code in enumerate(codes):
                if not ok[code]:
                    v[k] += 1

    def _token_tensor(self, ids: list[int]) -> torch.Tensor:
        """(B,) long tensor of ``ids``; one row is a view of the id table (no allocation)."""
        if len(ids) == 1:
            return self.t.ids[ids[0]:ids[0] + 1]
        return torch.tensor(ids, dtype=torch.long)

    def reorder(self, index: torch.Tensor) -> None:
        rows = index.tolist()
        self.viol = [list(self.viol[i]) for i in rows]
        self.groups = self.groups.index_select(0, index)
        self.notes = [list(self.notes[i]) for i in rows]
        self.hist = [list(self.hist[i]) for i in rows]
        self.seen3 = [{k: set(v) for k, v in self.seen3[i].items()} for i in rows]
        self.rhyme_used = [set(self.rhyme_used[i]) for i in rows]

    def _prime_ids(self, style_ids: list[int]) -> list[int]:
        """``start`` (or ``BOS style EOS start``), fed once before the poem; ``start`` is
        the form's start token for a model trained with them, else ``BOS``."""
        v = self.vocab
        start = v.start_id(self.form.key)
        return ([v.bos_id] + style_ids + [v.eos_id] if style_ids else []) + [start]

    def run(self, style_ids: list[int], generator: torch.Generator):
        """Decode all positions; returns tokens (B, P), logprobs (B, P), locked log-prob (B,),
        beam scores (B,) (None unless beam search) and relative log-probs (B, P): the
        chosen token's minus the best allowed one's (``_relative``; NaN where forced).

        Sampling and greedy never compute the head where the token is forced (line-end
        marks, fixed characters): the top hidden state is kept and the log-probs of all
        forced tokens come from one batched head product after the loop."""
        if self.cfg.strategy == "beam":
            return self._run_beam(style_ids)
        cfg, form, engine = self.cfg, self.form, self.engine
        W, P, B = form.line_length, form.num_tokens, self.rows
        greedy = cfg.strategy == "greedy"
        inv_temp = 1.0 / cfg.temperature
        uniforms = _Uniforms(generator)
        top, state = engine.start(self._prime_ids(style_ids), B)
        tokens: list = [None] * P  # python ids per row
        logprobs: list = [None] * P  # (B, 1) each
        relative = torch.full((B, P), float("nan"))
        reports = _Reports(logprobs, relative)
        forced_tops, forced_at = [], []
        for pos in range(P):
            line, col = divmod(pos, W + 1)
            forced = self.forced[pos]
            if forced >= 0:
                ids = [forced] * B
                tok = self._token_tensor(ids)
                forced_tops.append(top)
                forced_at.append(pos)
            else:
                logits = engine.head(top)
                # softmax is shift-invariant, so scaled logits stand in for log-probs
                scores = self._ban_repeats(self._scores(logits, line, col, inv_temp), line, col)
                if greedy:
                    ids = scores.argmax(dim=-1).tolist()
                else:
                    ids = _draw(scores, cfg.top_k, cfg.top_p, uniforms)
                tok = self._token_tensor(ids)
                reports.add(pos, logits, scores, tok)
            tokens[pos] = ids
            self._record(ids, line, col)
            if col < W:
                self._update(tok, ids, line, col, forced >= 0)
            if pos + 1 < P:
                top, state = engine.advance(tok, state)
        reports.flush()
        if forced_at:
            logp = torch.log_softmax(engine.head(torch.cat(forced_tops)), dim=-1)
            ids = torch.tensor([self.forced[p] for p in forced_at]).repeat_interleave(B)
            chosen = logp.gather(1, ids[:, None]).view(len(forced_at), B, 1)
            for i, pos in enumerate(forced_at):
                logprobs[pos] = chosen[i]
        tokens = torch.tensor(tokens, dtype=torch.long).T  # (B, P)
        logprobs = torch.cat(logprobs, 1)
        locked = logprobs[:, self.locked_positions].sum(1) if self.locked_positions else None
        return tokens, logprobs, locked, None, relative

    def _run_beam(self, style_ids: list[int]):
        cfg, form, engine = self.cfg, self.form, self.engine
        W, P, B = form.line_length, form.num_tokens, self.rows
        inv_temp = 1.0 / cfg.temperature
        top, state = engine.start(self._prime_ids(style_ids), B)
        tokens = torch.empty(B, P, dtype=torch.long)
        logprobs = torch.empty(B, P)
        relative = torch.full((B, P), float("nan"))
        beam_score = torch.full((B,), float("-inf"))
        beam_score[0] = 0.0
        for pos in range(P):
            line, col = divmod(pos, W + 1)
            forced = self.forced[pos]
            logits = engine.head(top)
            logp = torch.log_softmax(logits, dim=-1)  # reported: the model's own
            # scored: at the temperature, like a draw
            slogp = logp if inv_temp == 1.0 else torch.log_softmax(logits * inv_temp, dim=-1)
            if forced >= 0:
                tok = torch.full((B,), forced, dtype=torch.long)
                beam_score = beam_score + slogp[:, forced]
            else:
                scores = self._ban_repeats(self._scores(slogp, line, col), line, col)
                scores = _filter_top_k(scores, cfg.top_k)
                if cfg.top_p < 1.0:
                    keep = _nucleus_keep(torch.softmax(scores, dim=-1), cfg.top_p)
                    scores = scores.masked_fill(~keep, float("-inf"))
                cand = (beam_score[:, None] + scores).reshape(-1)
                best, flat = torch.topk(cand, B)
                parent, tok = flat // logp.shape[1], flat % logp.shape[1]
                bad = ~torch.isfinite(best)
                if bool(bad.any()):  # fewer valid continuations than beams: repeat the best
                    parent[bad], tok[bad] = parent[0], tok[0]
                beam_score = best
                tokens = tokens.index_select(0, parent)
                logprobs = logprobs.index_select(0, parent)
                relative = relative.index_select(0, parent)
                relative[:, pos] = _relative(logp, scores, tok, parent)
                logp = logp.index_select(0, parent)
                state = engine.select(state, parent)
                self.reorder(parent)
            tokens[:, pos] = tok
            logprobs[:, pos] = logp.gather(1, tok[:, None])[:, 0]
            self._record(tok.tolist(), line, col)
            if col < W:
                self._update(tok, tok.tolist(), line, col, forced >= 0)
            if pos + 1 < P:
                top, state = engine.advance(tok, state)
        locked = logprobs[:, self.locked_positions].sum(1) if self.locked_positions else None
        return tokens, logprobs, locked, beam_score, relative


"""Train: settings, a background job, and every run in the runs folder with its curves."""
from pathlib import Path

import streamlit as st

from pages._common import (bundled_corpus, empty_upload, job_manager, session_id, show_poem,
                           uploaded_corpus)
from rnncore import data as D
from rnncore import plots
from rnncore.checkpoint import MAX_UPLOAD_MB, export_checkpoint_zip
from rnncore.jobs import ACTIVE, run_snapshot
from rnncore.kinds import AUTO_ADAPTIVE_MIN_VOCAB, DEFAULT_HEAD, HEAD_CHOICES
from rnncore.model import ModelConfig
from rnncore.trainer import TrainConfig

LEARNING_RATES = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0)

st.title("Train a character-level poet")
manager = job_manager()
sid = session_id()
snap = manager.snapshot(sid)
busy = snap is not None and snap.active

# --------------------------------------------------------------------------- settings
# open until this session starts a run, then folded away (the run's charts come first) and
# locked while it trains; a new key per state makes the new default apply
state = "new" if snap is None else "busy" if busy else "done"
with st.expander("Settings — locked while your run trains" if busy else "Settings",
                 expanded=snap is None, key=f"train_settings_{state}"):
    c1, c2, c3 = st.columns(3)
    with c1:
        st.subheader("Corpus")
        source = st.radio("Corpus", ["Bundled Tang poems (七言律詩)", "Upload a file"],
                          key="train_source", label_visibility="collapsed", disabled=busy)
        upload = None
        if source == "Upload a file":
            upload = st.file_uploader(
                f"chinese-poetry JSON or UTF-8 text, one poem per line (at most "
                f"{MAX_UPLOAD_MB} MB)", type=["json", "txt"], key="train_upload",
                disabled=busy)
        simplified = st.checkbox("Convert to simplified characters", key="train_simplified",
                                 disabled=busy)
        max_poems = st.number_input("Use at most this many poems (0 = all)", 0, 100_000, 2000,
                                    step=500, key="train_max_poems", disabled=busy,
                                    help="Fewer poems -> smaller vocabulary -> faster steps.")
    with c2:
        st.subheader("Model")
        cell = st.selectbox("Cell", ["lstm", "gru", "rnn"], key="train_cell", disabled=busy)
        hidden = st.select_slider("Hidden size", [16, 32, 64, 128, 256, 512], 128,
                                  key="train_hidden", disabled=busy)
        layers = st.slider("Layers", 1, 3, 1, key="train_layers", disabled=busy)
        embed = st.select_slider("Embedding size", [16, 32, 64, 128, 256], 64, key="train_embed",
                                 disabled=busy)
        engine = st.selectbox("BPTT engine", ["bptt", "autograd", "native"], key="train_engine",
                              disabled=busy,
                              help="bptt: hand-derived backward pass; autograd: reference loop; "
                                   "native: torch's fused kernels.")
        head = st.selectbox("Output head", HEAD_CHOICES, HEAD_CHOICES.index(DEFAULT_HEAD),
                            key="train_head", disabled=busy,
                            help="full: one softmax over every character; adaptive: frequent "
                                 "characters first, rare ones in smaller clusters (about 2x "
                                 "faster steps at 5,000 characters, exact probabilities); "
                                 f"auto: adaptive from {AUTO_ADAPTIVE_MIN_VOCAB:,} characters "
                                 "on.")
    with c3:
        st.subheader("Optimisation")
        strategy = st.selectbox("BPTT strategy", ["truncated", "randomized", "full"],
                                key="train_strategy", disabled=busy,
                                help="full: whole poems from a zero state; truncated: carry the "
                                     "state, cut the gradient every k steps; randomized: "
                                     "unbiased random cuts (Tallec & Ollivier).")
        trunc = st.slider("Truncation length k₂ (steps backpropagated)", 4, 256, 32,
                          key="train_trunc", disabled=busy or strategy == "full")
        k1 = st.slider("Update interval k₁ (new characters per update, at most k₂)", 1, 256, 32,
                       key="train_k1", disabled=busy or strategy == "full")
        keep = st.slider("Keep probability p (randomized)", 0.5, 0.99, 0.9, key="train_keep",
                         disabled=busy or strategy != "randomized")
        clip = st.number_input("Clip gradient norm at (0 = off)", 0.0, 100.0, 1.0, 0.5,
                               key="train_clip", disabled=busy)
        optimizer = st.selectbox("Optimizer", ["adam", "sgd"], key="train_optimizer",
                                 disabled=busy)
        lr = st.select_slider("Learning rate", LEARNING_RATES, 1e-2, format_func="{:g}".format,
                              key="train_lr", disabled=busy,
                              help="Adam: 1e-3 to 1e-2; SGD: 0.1 to 1.")
        batch = st.select_slider("Batch size", [4, 8, 16, 32, 64, 128], 32, key="train_batch",
                                 disabled=busy)
        budget = st.number_input("Time budget (seconds)", 5, 3600, 30, 5, key="train_budget",
                                 disabled=busy)
        eval_every = st.number_input("Evaluate (and sample a poem) every N steps", 1, 10_000,
                                     20, key="train_eval_every", disabled=busy)

# the configs of these settings, checked now: a bad combination shows before Start
problem = None
try:
    data_config = D.DataConfig(simplified=simplified, max_poems=max_poems or None)
    # vocab_size is a placeholder: the trainer sets it from the corpus vocabulary
    model_config = ModelConfig(cell=cell, vocab_size=len(D.Vocab.SPECIALS) + 1,
                               embedding_dim=embed, hidden_size=hidden, num_layers=layers,
                               engine=engine, head=head)
    train_config = TrainConfig(
        strategy=strategy, truncation_len=trunc,
        update_interval=None if strategy == "full" else k1, randomized_keep_prob=keep,
        batch_size=batch, optimizer=optimizer, lr=float(lr), clip_norm=float(clip),
        max_steps=None, max_minutes=budget / 60.0, eval_every=int(eval_every),
        eval_max_poems=200, checkpoint_every=0)
except ValueError as exc:
    problem = str(exc)

# corpus: loaded once per process (bundled) or per upload (validated on arrival, cached)
corpus, corpus_upload = None, None
if upload is not None:
    problem = problem or empty_upload(upload)
    if problem is None:
        raw = upload.getvalue()
        try:
            corpus = uploaded_corpus(raw, upload.name, simplified)
            corpus_upload = (upload.name, raw)
            if len(corpus) == 0:
                reasons = ", ".join(f"{k} ({v})" for k, v in corpus.skip_reasons.items())
                raise D.CorpusError(f"no usable poems (rejected: {reasons or 'none'})")
            D.check_trainable(corpus, data_config)
        except D.CorpusError as exc:
            corpus, problem = None, f"{upload.name}: {exc}"
elif source == "Bundled Tang poems (七言律詩)":
    corpus = bundled_corpus(simplified)
    if problem is None:
        try:
            D.check_trainable(corpus, data_config)
        except D.CorpusError as exc:
            problem = str(exc)
if problem:
    st.error(problem)
elif corpus is None:
    st.info("Choose a file to upload.")
else:
    st.caption(f"Corpus: {len(corpus):,} valid poems, {corpus.num_characters:,} characters"
               + (f"; {corpus.skipped:,} records skipped" if corpus.skipped else ""))

b1, b2, _ = st.columns([1, 1, 2])
if b1.button("Start training", type="primary", key="train_start",
             disabled=busy or corpus is None or problem is not None):
    try:
        manager.start(sid, model_config, train_config, data_config, corpus=corpus,
                      corpus_upload=corpus_upload,
                      label=f"{cell.upper()} {layers}×{hidden}, {strategy}")
    except ValueError as exc:
        st.error(str(exc))
    else:
        st.rerun()
if b2.button("Stop", key="train_stop", disabled=not busy):
    manager.stop(sid)
    st.rerun()

# --------------------------------------------------------------------------- runs
st.subheader("Runs")
on_disk = {info.run_dir: info for info in manager.list_runs()}  # every session's, the CLI's
choices = ([snap.run_dir] if snap else []) + [d for d in on_disk if not snap or d != snap.run_dir]
if snap is not None and st.session_state.get("train_shown_job") != snap.job_id:
    st.session_state["train_shown_job"] = snap.job_id  # a new job of this session: show it
    st.session_state["train_run_pick"] = snap.run_dir
if st.session_state.get("train_run_pick") not in choices:
    st.session_state.pop("train_run_pick", None)
if choices:
    pick = st.selectbox(
        "Run (every run in the runs folder)", choices, key="train_run_pick",
        format_func=lambda d: (f"{snap.label} — this session's run" if snap and d == snap.run_dir
                               else on_disk[d].describe()))
else:
    pick = None
    st.info(f"No runs in `{manager.runs_dir}` yet: choose settings and press **Start "
            "training**. Runs trained with `python -m rnncore train --out "
            f"{manager.runs_dir}/NAME` are listed here too.")
own = snap is not None and pick == snap.run_dir
checkpoint = snap.latest_checkpoint if own else on_disk[pick].path if pick else None
r1, r2, _ = st.columns([1, 1, 2])
if r1.button(f"Resume for {budget} s", key="train_resume",
             disabled=busy or checkpoint is None or (not own and on_disk[pick].status in ACTIVE)):
    try:
        manager.resume(sid, budget_s=float(budget), run_dir=None if own else pick)
    except ValueError as exc:
        st.error(str(exc))
    else:
        st.rerun()
r2.download_button("Download model (.zip)", key="train_download", disabled=checkpoint is None,
                   data=(lambda: export_checkpoint_zip(checkpoint, include_optimizer=False))
                   if checkpoint else b"", file_name=f"{Path(pick or 'run').name}.zip",
                   mime="application/zip",
                   help="The latest checkpoint without the optimizer state: what the Generate "
                        "page's upload takes.")
if pick is None:
    st.stop()


# --------------------------------------------------------------------------- one run
@st.fragment(run_every=1.0 if busy and own else None)
def run_view() -> None:
    s = manager.snapshot(sid) if own else run_snapshot(pick)
    st.progress(s.progress, text=s.status_line())
    if s.status == "failed":
        st.error(s.message)
    elif s.active and s.message:
        st.caption(s.message)  # the latest event (a skipped step, a halved learning rate)
    m = st.columns(5)
    bpc = s.latest("bpc")
    first = s.steps[0]["bpc"] if s.steps and s.steps[0].get("bpc") is not None else None
    m[0].metric("train bits/char", f"{bpc:.3f}" if bpc is not None else "–",
                delta=f"{bpc - first:+.3f} since step 1" if bpc is not None and first else None,
                delta_color="inverse")
    val = s.evals[-1]["val_bpc"] if s.evals else None
    m[1].metric("val bits/char", f"{val:.3f}" if val is not None else "–")
    cps = s.chars_per_s()
    m[2].metric("chars/s (last 20 steps)", f"{cps:,.0f}" if cps else "–")
    gn = s.latest("grad_norm")
    m[3].metric("grad norm", f"{gn:.3g}" if gn is not None else "–")
    m[4].metric("clipped steps", sum(1 for r in s.steps if r.get("clipped")))
    stats = s.data_stats
    st.caption((f"{stats['poems']:,} poems, " if "poems" in stats else "")
               + (f"vocabulary {stats['vocab_size']:,} characters — " if "vocab_size" in stats
                  else "") + f"run folder `{s.run_dir}`")
    c1, c2 = st.columns(2)
    c1.plotly_chart(plots.training_loss_figure(s.steps, s.evals), key="train_loss_chart")
    c2.plotly_chart(plots.grad_norm_figure(s.steps, s.clip_norm), key="train_grad_chart")
    c3, c4 = st.columns(2)
    c3.plotly_chart(plots.throughput_figure(s.steps), key="train_tps_chart")
    with c4:
        st.markdown("**Sample poems** (one per evaluation, temperature 0.8)")
        if not s.samples:
            st.caption("The first sample appears at the first evaluation." if own else
                       "Samples are kept while the app trains a run; write poems with this "
                       "run on the Generate page.")
        for sample in reversed(s.samples[-3:]):
            st.caption(f"step {sample['step']}")
            if sample["lines"]:
                show_poem(sample["lines"])
            else:
                st.caption(sample["note"])
    if own and not s.active and busy:
        st.rerun()  # the job ended: redraw the whole page (settings, buttons, polling off)


run_view()

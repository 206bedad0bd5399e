"""Train: pick a corpus and a model, start a background job, watch it learn."""
import streamlit as st

from pages._common import (bundled_corpus, check_upload_size, job_manager, session_id, show_poem,
                     uploaded_corpus)
from rnncore import data as D
from rnncore import plots
from rnncore.model import ModelConfig
from rnncore.trainer import TrainConfig

st.title("Train a character-level poet")
manager = job_manager()
sid = session_id()

# --------------------------------------------------------------------------- settings
with st.expander("Settings", expanded=True):
    c1, c2, c3 = st.columns(3)
    with c1:
        st.subheader("Corpus")
        source = st.radio("Corpus", ["Bundled Tang poems (七言律詩)", "Upload a file"],
                          key="train_source", label_visibility="collapsed")
        upload = None
        if source == "Upload a file":
            upload = st.file_uploader(
                "chinese-poetry JSON or UTF-8 text (one poem per line)", type=["json", "txt"],
                key="train_upload")
        simplified = st.checkbox("Convert to simplified characters", key="train_simplified")
        max_poems = st.number_input("Use at most this many poems (0 = all)", 0, 100_000, 2000,
                                    step=500, key="train_max_poems",
                                    help="Fewer poems -> smaller vocabulary -> faster steps.")
    with c2:
        st.subheader("Model")
        cell = st.selectbox("Cell", ["lstm", "gru", "rnn"], key="train_cell")
        hidden = st.select_slider("Hidden size", [16, 32, 64, 128, 256, 512], 128,
                                  key="train_hidden")
        layers = st.slider("Layers", 1, 3, 1, key="train_layers")
        embed = st.select_slider("Embedding size", [16, 32, 64, 128, 256], 64, key="train_embed")
        engine = st.selectbox("BPTT engine", ["bptt", "autograd", "native"], key="train_engine",
                              help="bptt: hand-derived backward pass; autograd: reference loop; "
                                   "native: torch's fused kernels.")
    with c3:
        st.subheader("Optimisation")
        strategy = st.selectbox("BPTT strategy", ["truncated", "randomized", "full"],
                                key="train_strategy",
                                help="full: whole poems from a zero state; truncated: carry the "
                                     "state, cut the gradient every k steps; randomized: "
                                     "unbiased random cuts (Tallec & Ollivier).")
        trunc = st.slider("Truncation length k₂ (steps backpropagated)", 4, 256, 32,
                          key="train_trunc", disabled=strategy == "full")
        k1 = st.slider("Update interval k₁ (new characters per update)", 1, 256, 32,
                       key="train_k1", disabled=strategy == "full")
        keep = st.slider("Keep probability p (randomized)", 0.5, 0.99, 0.9, key="train_keep",
                         disabled=strategy != "randomized")
        clip = st.number_input("Clip gradient norm at (0 = off)", 0.0, 100.0, 1.0, 0.5,
                               key="train_clip")
        optimizer = st.selectbox("Optimizer", ["adam", "sgd"], key="train_optimizer")
        lr = st.number_input("Learning rate", 1e-5, 5.0, 1e-2, format="%.4f", key="train_lr")
        batch = st.select_slider("Batch size", [4, 8, 16, 32, 64, 128], 32, key="train_batch")
        budget = st.number_input("Time budget (seconds)", 5, 3600, 30, 5, key="train_budget")
        eval_every = st.number_input("Evaluate (and sample a poem) every N steps", 1, 10_000,
                                     20, key="train_eval_every")

# corpus: loaded once per process (bundled) or per upload (validated, cached)
corpus, corpus_upload, corpus_problem = None, None, None
if upload is not None:
    corpus_problem = check_upload_size(upload)
    if corpus_problem is None:
        raw = upload.getvalue()
        try:
            corpus = uploaded_corpus(raw, upload.name, simplified)
            corpus_upload = (upload.name, raw)
        except D.CorpusError as exc:
            corpus_problem = f"{upload.name}: {exc}"
        else:
            if len(corpus) == 0:
                reasons = ", ".join(f"{k} ({v})" for k, v in corpus.skip_reasons.items())
                corpus_problem = f"{upload.name} has no usable poems (rejected: {reasons or 'none'})"
elif source == "Upload a file":
    corpus_problem = "Choose a file to upload."
else:
    corpus = bundled_corpus(simplified)
if corpus_problem:
    st.error(corpus_problem) if upload is not None else st.info(corpus_problem)
elif corpus is not None:
    st.caption(f"Corpus: {len(corpus):,} valid poems, {corpus.num_characters:,} characters"
               + (f"; {corpus.skipped:,} records skipped" if corpus.skipped else ""))

snap = manager.snapshot(sid)
b1, b2, b3, _ = st.columns([1, 1, 2, 2])
start = b1.button("Start training", type="primary", key="train_start",
                  disabled=corpus is None or (snap is not None and snap.active))
stop = b2.button("Stop", key="train_stop", disabled=snap is None or not snap.active)
resume = b3.button("Resume from latest checkpoint", key="train_resume",
                   disabled=snap is None or snap.active or not snap.checkpoints)

if start:
    try:
        # vocab_size is a placeholder: the trainer sets it from the corpus vocabulary
        model_config = ModelConfig(cell=cell, vocab_size=len(D.Vocab.SPECIALS) + 1,
                                   embedding_dim=embed, hidden_size=hidden, num_layers=layers,
                                   engine=engine)
        train_config = TrainConfig(
            strategy=strategy, truncation_len=trunc, update_interval=min(k1, trunc),
            randomized_keep_prob=keep, batch_size=batch, optimizer=optimizer, lr=float(lr),
            clip_norm=float(clip), max_steps=None, max_minutes=budget / 60.0,
            eval_every=int(eval_every), eval_max_poems=200, checkpoint_every=0)
        data_config = D.DataConfig(simplified=simplified, max_poems=max_poems or None)
        manager.start(sid, model_config, train_config, data_config, corpus=corpus,
                      corpus_upload=corpus_upload,
                      label=f"{cell.upper()} {layers}×{hidden}, {strategy}")
    except ValueError as exc:
        st.error(str(exc))
    else:
        st.rerun()
if stop:
    manager.stop(sid)
    st.rerun()
if resume:
    try:
        manager.resume(sid, budget_s=float(budget))
    except ValueError as exc:
        st.error(str(exc))
    else:
        st.rerun()


# --------------------------------------------------------------------------- live view
def _fmt_s(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


@st.fragment(run_every=1.0 if snap is not None and snap.active else None)
def live_view() -> None:
    s = manager.snapshot(sid)
    if s is None:
        st.info("No training run in this session yet: choose settings and press **Start**.")
        return
    status_text = {"preparing": "Preparing data and model ...", "running": "Training",
                   "stopping": "Stopping after the current step ...",
                   "finished": "Finished", "stopped": "Stopped", "failed": "Failed"}[s.status]
    st.progress(s.progress, text=f"{status_text} — {s.label} — step {s.step}, "
                                 f"elapsed {_fmt_s(s.elapsed_s)}, ETA {_fmt_s(s.eta_s)}")
    if s.status == "failed":
        st.error(s.message)
    elif s.message:
        st.caption(s.message)
    m = st.columns(5)
    bpc = s.latest("bpc")
    first = s.steps[0]["bpc"] if s.steps and s.steps[0].get("bpc") is not None else None
    m[0].metric("train bits/char", f"{bpc:.3f}" if bpc is not None else "–",
                delta=f"{bpc - first:+.3f} since step 1" if bpc is not None and first else None,
                delta_color="inverse")
    val = s.evals[-1]["val_bpc"] if s.evals else None
    m[1].metric("val bits/char", f"{val:.3f}" if val is not None else "–")
    tps = s.latest("tokens_per_s")
    m[2].metric("throughput", f"{tps:,.0f} chars/s" if tps else "–")
    gn = s.latest("grad_norm")
    m[3].metric("grad norm", f"{gn:.3g}" if gn is not None else "–")
    m[4].metric("clipped steps", sum(1 for r in s.steps if r.get("clipped")))
    if s.data_stats:
        st.caption(f"{s.data_stats.get('poems', 0):,} poems, vocabulary "
                   f"{s.data_stats.get('vocab_size', 0):,} characters — run folder "
                   f"`{s.run_dir}`")
    c1, c2 = st.columns(2)
    c1.plotly_chart(plots.training_loss_figure(s.steps, s.evals), key="train_loss_chart")
    c2.plotly_chart(plots.grad_norm_figure(s.steps, s.clip_norm), key="train_grad_chart")
    c3, c4 = st.columns(2)
    c3.plotly_chart(plots.throughput_figure(s.steps), key="train_tps_chart")
    with c4:
        st.markdown("**Sample poems** (one per evaluation, temperature 0.8)")
        if not s.samples:
            st.caption("The first sample appears at the first evaluation.")
        for sample in reversed(s.samples[-3:]):
            st.caption(f"step {sample['step']}")
            if sample["lines"]:
                show_poem(sample["lines"])
            else:
                st.caption(sample["note"])
    if not s.active and snap is not None and snap.active:
        st.rerun()  # the job ended: redraw the whole page (buttons, polling off)


live_view()

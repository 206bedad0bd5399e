"""Generate: write poems with the bundled model, a run from the runs folder or an uploaded
checkpoint."""
import hashlib
import json
import random

import streamlit as st

from pages._common import (POEM_CSS, bundled_corpus, empty_upload, job_manager,
                           shading_legend, show_poem)
from rnncore.checkpoint import (MAX_UPLOAD_MB, CheckpointError, checkpoint_stamp,
                                load_checkpoint, load_checkpoint_bytes)
from rnncore.generate import (FORM_TEMPERATURE, GenerationConfig, GenerationError,
                              default_temperature, form_outside_training, generate,
                              load_default_model)
from rnncore.poetry import FORMS
from rnncore.textbook.duiju import MatchConfig, match_line

DEFAULTS = GenerationConfig()

SEEDS = 2**31  # seeds drawn for a click are below this

st.title("Generate poems")

# --------------------------------------------------------------------------- 對句
with st.expander("Match a line (對句)"):
    st.caption("Type the first line of a couplet (上句); an encoder-decoder with attention, "
               "trained on the couplets of the bundled 七律 (see the Architectures page), "
               "writes the second (下句, in traditional characters): as many characters, "
               "ending on a 平水韻 rhyme in the level tone, its tones mirroring the 上句 (對), "
               "no character of the 上句 again.")
    with st.form("gen_cpl_form"):
        c1, c2, c3 = st.columns([3, 1, 2])
        first_line = c1.text_input("上句 (5 or 7 characters)", placeholder="白日依山盡",
                                   key="gen_cpl_first")
        cpl_num = c2.number_input("How many", 1, 8, 3, key="gen_cpl_num")
        cpl_temp = c3.slider("Temperature", 0.1, 1.5, 0.8, 0.05, key="gen_cpl_temp")
        if st.form_submit_button("Write the 下句"):
            try:
                st.session_state["gen_cpl"] = match_line(
                    first_line, MatchConfig(num=int(cpl_num), temperature=float(cpl_temp)))
            except ValueError as exc:
                st.session_state["gen_cpl"] = []
                st.error(str(exc))
    for match in st.session_state.get("gen_cpl", []):
        st.markdown(f"#### {match.couplet}")
        st.caption(match.summary())


@st.cache_resource(show_spinner="Loading the bundled model ...")
def default_model():
    return load_default_model()


@st.cache_resource(show_spinner="Loading the checkpoint ...", max_entries=4)
def checkpoint_at(path: str, stamp: str):
    """``stamp`` (the meta.json mtime) is part of the key so a re-saved run reloads."""
    return load_checkpoint(path, map_location="cpu", load_optimizer=False)


@st.cache_resource(show_spinner="Checking the uploaded checkpoint ...", max_entries=2)
def checkpoint_from_zip(digest: str, _raw: bytes):
    return load_checkpoint_bytes(_raw, map_location="cpu", load_optimizer=False)


# --------------------------------------------------------------------------- model
source = st.radio("Model", ["Bundled model", "A run trained here", "Upload a checkpoint (.zip)"],
                  horizontal=True, key="gen_source")
ckpt, model_problem, model_key = None, None, source
try:
    if source == "Bundled model":
        ckpt = default_model()
    elif source == "A run trained here":
        runs = job_manager().list_runs()  # every run in the runs folder, any session or CLI
        if not runs:
            model_problem = ("No trained run yet: train one on the Train page (or with "
                             "`python -m rnncore train`).")
        else:
            pick = st.selectbox("Run (every run in the runs folder)", range(len(runs)),
                                format_func=lambda i: runs[i].describe(), key="gen_run")
            stamp = checkpoint_stamp(runs[pick].path)
            ckpt = checkpoint_at(runs[pick].path, stamp)
            model_key = f"run:{runs[pick].path}:{stamp}"
    else:
        upload = st.file_uploader(
            f"A checkpoint zip with model.safetensors and meta.json, at most {MAX_UPLOAD_MB} MB "
            "(the Train page's **Download model** gives one; optimizer.pt is not needed). "
            "Nothing in it is executed.", type=["zip"], key="gen_upload")
        if upload is None:
            model_problem = "Choose a checkpoint zip to upload."
        else:
            model_problem = empty_upload(upload)
            if model_problem is None:
                raw = upload.getvalue()
                digest = hashlib.sha256(raw).hexdigest()
                ckpt = checkpoint_from_zip(digest, raw)
                model_key = f"zip:{digest}"
except (CheckpointError, GenerationError, OSError) as exc:
    model_problem = str(exc)
if model_problem:
    (st.info if model_problem.startswith(("No trained", "Choose")) else st.error)(model_problem)
    st.stop()

mc = ckpt.model_config
st.caption(f"{mc.cell.upper()} {mc.num_layers}×{mc.hidden_size}, vocabulary {len(ckpt.vocab):,}, "
           f"trained {ckpt.step:,} steps"
           + (f", val {ckpt.metrics['val_bpc']:.2f} bits/char"
              if isinstance(ckpt.metrics.get("val_bpc"), (int, float)) else ""))

# --------------------------------------------------------------------------- request
def _form_defaults() -> None:
    """A new form brings its own measured temperature (the CLI's default too)."""
    st.session_state["gen_temperature"] = default_temperature(st.session_state["gen_formkey"])


# outside the form below: choosing a form sets the temperature slider at once
form = st.selectbox("Form", list(FORMS), index=list(FORMS).index("qilv"),
                    format_func=lambda k: f"{FORMS[k].name} ({k})", key="gen_formkey",
                    on_change=_form_defaults)
st.session_state.setdefault("gen_temperature", default_temperature(form))
with st.form("gen_form"):
    c1, c2, c3 = st.columns(3)
    with c1:
        acrostic = st.text_input("Acrostic (one head character per line)", key="gen_acrostic")
        prefix = st.text_input("Begin with", key="gen_prefix")
        num = st.number_input("Number of poems", 1, 16, 1, key="gen_num")
    with c2:
        # on by default, as in the CLI: the decoding defaults were measured with them
        rhyme = st.toggle("Rhyme (平水韻) on even lines", value=True, key="gen_rhyme")
        tones = st.toggle("Follow the tone pattern (平仄)", value=True, key="gen_tones")
        simplified = st.toggle("Simplified characters", key="gen_simplified")
        vertical = st.toggle("Vertical, right to left", key="gen_vertical")
        novelty = st.toggle("Novelty vs the Tang corpus", key="gen_novelty",
                            help="Longest run copied from a training poem (slower the first "
                                 "time: the corpus is indexed).")
    with c3:
        strategy = st.selectbox("Decoding", ["sample", "beam", "greedy"], key="gen_strategy")
        # the CLI's defaults too (GenerationConfig: where sampled poems read most like real)
        temperature = st.slider(
            "Temperature", 0.1, 2.0, step=0.05, key="gen_temperature",
            help="Each form starts at its own, chosen by measurement (where 100 sampled poems "
                 "use attested character pairs as often as real ones): " + ", ".join(
                     f"{FORMS[k].name} {t}" for k, t in FORM_TEMPERATURE.items()))
        top_k = st.slider("Top-k (0 = off)", 0, 200, DEFAULTS.top_k, key="gen_topk")
        top_p = st.slider("Top-p (1 = off)", 0.05, 1.0, DEFAULTS.top_p, 0.05, key="gen_topp")
        beam = st.slider("Beam width", 1, 16, 4, key="gen_beam")
        seed = st.number_input("Seed (empty: a new one for every click)", 0, SEEDS - 1, None,
                               key="gen_seed", placeholder="new each time",
                               help="Enter the seed shown under the poems to write them again.")
    submitted = st.form_submit_button("Generate", type="primary")


def run_generation(locked_lines: dict | None = None, count: int | None = None, seed_=None):
    cfg = GenerationConfig(
        form=form, acrostic=acrostic, prefix=prefix, rhyme=rhyme, tones=tones,
        strategy=strategy, temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
        beam_width=int(beam), seed=int(seed_), num=int(count or num), simplified=simplified,
        locked_lines=locked_lines or {})
    corpus = bundled_corpus() if novelty and source == "Bundled model" else None
    return cfg, generate(ckpt.model, ckpt.vocab, cfg, training_corpus=corpus)


def poem_dicts(cfg, poems) -> list[dict]:
    return [dict(p.to_dict(), seed=cfg.seed) for p in poems]


# the first visit, and every change of model, writes one poem right away with the settings
model_changed = st.session_state.get("gen_model_key") != model_key
if model_changed:  # the previous model's poems go
    st.session_state["gen_model_key"] = model_key
    st.session_state["gen_poems"], st.session_state["gen_locked"] = [], {}
if submitted or model_changed:
    try:
        cfg, poems = run_generation(seed_=random.randrange(SEEDS) if seed is None else seed)
        st.session_state["gen_poems"] = poem_dicts(cfg, poems)
        st.session_state["gen_config"] = cfg.to_dict()
        st.session_state["gen_locked"] = {}
    except GenerationError as exc:
        st.error(str(exc))

# --------------------------------------------------------------------------- poems
poems = st.session_state.get("gen_poems", [])
used = st.session_state.get("gen_config") or {}
METRIC_LABELS = [("form_valid", "form"), ("rhyme_valid", "rhyme"), ("tone_match", "tones"),
                 ("longest_copied_run", "longest copied run")]
if poems:
    outside = form_outside_training(ckpt, used.get("form", form))
    if outside:
        st.warning(outside)
    st.html(POEM_CSS + shading_legend())
    st.caption("To write a poem again, enter its seed as Seed with the same settings and "
               "number of poems.")
cols = st.columns(min(len(poems), 3) or 1)
for i, poem in enumerate(poems):
    with cols[i % len(cols)]:
        st.markdown(f"**Poem {i + 1}** — seed {poem['seed']} — mean log-prob "
                    f"{poem['score'] / max(1, len(poem['chars'])):.2f} nats/char")
        show_poem(poem["lines"], poem.get("relative"), vertical,
                  locked=set(st.session_state.get("gen_locked", {}).get(i, [])),
                  probs=poem["probs"])
        m = poem["metrics"]
        bits = []
        for key, label in METRIC_LABELS:
            if key in m:
                value = m[key]
                bits.append(f"{label}: {'✓' if value else '✗'}" if isinstance(value, bool)
                            else f"{label}: {value:.0%}" if key == "tone_match"
                            else f"{label}: {value}")
        st.caption(" · ".join(bits))
        for note in poem.get("notes", []):
            st.caption(f"ℹ️ {note}")

if poems:
    st.subheader("Keep some lines, rewrite the rest")
    which = st.selectbox("Poem", range(len(poems)), format_func=lambda i: f"Poem {i + 1}",
                         key="gen_lock_poem")
    lines = poems[which]["lines"]
    keep = st.multiselect("Lines to keep", range(len(lines)),
                          format_func=lambda j: f"{j + 1}: {lines[j]}", key="gen_lock_lines")
    if st.button("Regenerate the other lines", key="gen_regen", disabled=not keep):
        try:
            # a fixed seed still rewrites the free lines differently on every click
            rewrites = st.session_state["gen_rewrites"] = st.session_state.get("gen_rewrites", 0) + 1
            cfg, new = run_generation({j: lines[j] for j in keep}, count=1,
                                      seed_=random.randrange(SEEDS) if seed is None
                                      else (int(seed) + 1000 * rewrites + which) % SEEDS)
            poems[which] = poem_dicts(cfg, new)[0]
            st.session_state["gen_poems"] = poems
            st.session_state.setdefault("gen_locked", {})[which] = list(keep)
            st.rerun()
        except GenerationError as exc:
            st.error(str(exc))

    d1, d2, _ = st.columns([1, 1, 4])
    d1.download_button("Download text", "\n\n".join("\n".join(p["lines"]) for p in poems),
                       file_name="poems.txt", mime="text/plain", key="gen_dl_txt")
    d2.download_button("Download JSON",
                       json.dumps({"config": st.session_state.get("gen_config"),
                                   "poems": poems}, ensure_ascii=False, indent=1),
                       file_name="poems.json", mime="application/json", key="gen_dl_json")

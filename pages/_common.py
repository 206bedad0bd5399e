"""What several pages share: the session id, the cached job manager and corpus, the empty
upload check and the poem HTML view with its shading. Display only -- every computation
lives in ``rnncore``."""
from __future__ import annotations

import html
import threading
import uuid

import streamlit as st

from rnncore import data as D
from rnncore.jobs import JobManager, default_torch_threads


def session_id() -> str:
    """A random id per browser session: jobs are keyed by it, so sessions stay apart."""
    if "rnncore_session_id" not in st.session_state:
        st.session_state["rnncore_session_id"] = uuid.uuid4().hex
    return st.session_state["rnncore_session_id"]


def configure_torch() -> int:
    """Leave a core to the web server (a contended OpenMP pool makes small ops many times
    slower). Called on every script run: OpenMP's thread count belongs to the calling
    thread, and Streamlit runs each rerun in a new one."""
    import torch

    threads = default_torch_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@st.cache_resource(show_spinner=False)
def warm_up_generation() -> threading.Thread:
    """Once per server: load the bundled model and write one poem in the background, so
    the Generate page's first poem comes from warm caches (``load_default_model`` and the
    per-vocabulary rhyme/tone tables are cached inside ``rnncore``)."""
    def work() -> None:
        import torch

        from rnncore.generate import GenerationConfig, generate, load_default_model

        torch.set_num_threads(default_torch_threads())  # per thread, see configure_torch
        try:
            ckpt = load_default_model()
            generate(ckpt.model, ckpt.vocab, GenerationConfig(form="qilv", num=1))
        except (ValueError, OSError):
            pass  # the Generate page reports a missing or broken model itself

    thread = threading.Thread(target=work, daemon=True, name="rnncore-warm-up")
    thread.start()
    return thread


@st.cache_resource(show_spinner=False)
def job_manager() -> JobManager:
    return JobManager(max_active=2, torch_threads=default_torch_threads())


@st.cache_resource(show_spinner="Loading the Tang corpus ...")
def bundled_corpus(simplified: bool = False) -> D.Corpus:
    return D.load_corpus("tang", simplified=simplified)


@st.cache_data(show_spinner="Checking the uploaded corpus ...", max_entries=4)
def uploaded_corpus(raw: bytes, name: str, simplified: bool = False) -> D.Corpus:
    """Validated corpus of an upload; raises ``CorpusError`` (not cached) when unusable."""
    return D.load_corpus_bytes(raw, name, simplified=simplified)


def empty_upload(upload) -> str | None:
    """"<name> is empty" for an empty file, else None (files over ``MAX_UPLOAD_MB`` the
    server refuses before a page sees them: the uploaders say the limit up front)."""
    return f"{upload.name} is empty" if upload.size == 0 else None


POEM_CSS = """
<style>
.rc-poem { font-family: "Noto Serif CJK TC", "Noto Serif CJK SC", "Noto Sans CJK TC",
           "Noto Sans CJK SC", serif; font-size: 1.45rem; line-height: 2.0rem;
           letter-spacing: 0.12em; margin: 0.4rem 0 0.8rem 0; }
.rc-poem.rc-vertical { writing-mode: vertical-rl; height: 10.5em; line-height: 2.4rem;
           overflow-x: auto; max-width: 100%; }
.rc-poem span.rc-c, .rc-legend span.rc-c { border-radius: 3px; padding: 0 1px; }
.rc-poem span.rc-locked { text-decoration: underline dotted; }
.rc-legend { font-size: 0.85rem; color: #555; }
</style>
"""
# shading by the chosen character's probability over the best one the rules allowed there
SHADES = ((0.5, "hsla(120, 70%, 45%, 0.30)", "the model's first choice, or at least half "
                                                "as likely"),
          (0.1, "hsla(55, 90%, 50%, 0.40)", "2 to 10 times less likely than its first choice"),
          (0.0, "hsla(0, 80%, 55%, 0.30)", "more than 10 times less likely"))


def _shade(relative: float | None) -> str:
    if relative is None:
        return "transparent"  # fixed by the form or by you: not the model's choice
    return next(color for floor, color, _ in SHADES if relative >= floor)


def shading_legend() -> str:
    swatches = " ".join(f'<span class="rc-c" style="background:{color}">字</span> {text}'
                        for _, color, text in SHADES)
    return (f'<div class="rc-legend">Each character is shaded by how likely the model found '
            f'it against the likeliest character the form allowed there: {swatches}; '
            f'unshaded: fixed by the form or by you. Hover for the numbers.</div>')


def poem_html(lines: list[str], relative: list | None = None, vertical: bool = False,
              locked: set[int] | None = None, probs: list[float] | None = None) -> str:
    """A poem as HTML: one line per row (or column, right to left, when ``vertical``).
    With ``relative`` (one per character, marks included, in order; ``GeneratedPoem``'s)
    every character is shaded by it (``SHADES``), ``probs`` shown on hover too."""
    locked = locked or set()
    parts, k = [], 0
    for li, line in enumerate(lines):
        cells = []
        for ch in line:
            text = html.escape(ch)
            if relative is not None and k < len(relative):
                cls = "rc-c rc-locked" if li in locked else "rc-c"
                rel = relative[k]
                tip = "fixed" if rel is None else f"{rel:.0%} of the likeliest allowed"
                if probs is not None and k < len(probs):
                    tip += f"; p = {probs[k]:.3f}"
                cells.append(f'<span class="{cls}" style="background:{_shade(rel)}" '
                             f'title="{tip}">{text}</span>')
            else:
                cells.append(text)
            k += 1
        parts.append("".join(cells))
    cls = "rc-poem rc-vertical" if vertical else "rc-poem"
    return f'<div class="{cls}">' + "<br>".join(parts) + "</div>"


def show_poem(lines: list[str], relative: list | None = None, vertical: bool = False,
              locked: set[int] | None = None, probs: list[float] | None = None) -> None:
    st.html(POEM_CSS + poem_html(lines, relative, vertical, locked, probs))

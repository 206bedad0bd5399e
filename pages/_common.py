"""What several pages share: the session id, the cached job manager and corpus, and the
poem HTML view. Display only -- every computation lives in ``rnncore``."""
from __future__ import annotations

import html
import threading
import uuid

import streamlit as st

from rnncore import data as D
from rnncore.jobs import JobManager, default_torch_threads

MAX_UPLOAD_MB = 20


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


def check_upload_size(upload) -> str | None:
    """A one-line problem with an upload's size, or None."""
    if upload.size > MAX_UPLOAD_MB * 2**20:
        return f"{upload.name} is {upload.size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_MB} MB"
    if upload.size == 0:
        return f"{upload.name} is empty"
    return None


POEM_CSS = """
<style>
.rc-poem { font-family: "Noto Serif CJK TC", "Noto Serif CJK SC", "Noto Sans CJK TC",
           "Noto Sans CJK SC", serif; font-size: 1.45rem; line-height: 2.0rem;
           letter-spacing: 0.12em; margin: 0.4rem 0 0.8rem 0; }
.rc-poem.rc-vertical { writing-mode: vertical-rl; height: 10.5em; line-height: 2.4rem;
           overflow-x: auto; max-width: 100%; }
.rc-poem span.rc-c { border-radius: 3px; padding: 0 1px; }
.rc-poem span.rc-locked { text-decoration: underline dotted; }
.rc-legend { font-size: 0.8rem; color: #666; }
</style>
"""


def _prob_color(p: float) -> str:
    """Low probability -> warm red, high -> green; alpha keeps the text readable."""
    p = min(max(float(p), 0.0), 1.0)
    hue = 120.0 * p
    return f"hsla({hue:.0f}, 75%, 50%, 0.30)"


def poem_html(lines: list[str], probs: list[float] | None = None, vertical: bool = False,
              locked: set[int] | None = None) -> str:
    """A poem as HTML: one line per row (or column, right to left, when ``vertical``).
    With ``probs`` (one per character, marks included, in order) every character is
    coloured by its model probability, the value in its ``title`` (shown on hover)."""
    locked = locked or set()
    parts, k = [], 0
    for li, line in enumerate(lines):
        cells = []
        for ch in line:
            text = html.escape(ch)
            if probs is not None and k < len(probs):
                cls = "rc-c rc-locked" if li in locked else "rc-c"
                cells.append(f'<span class="{cls}" style="background:{_prob_color(probs[k])}" '
                             f'title="p = {probs[k]:.3f}">{text}</span>')
            else:
                cells.append(text)
            k += 1
        parts.append("".join(cells))
    cls = "rc-poem rc-vertical" if vertical else "rc-poem"
    return f'<div class="{cls}">' + "<br>".join(parts) + "</div>"


def show_poem(lines: list[str], probs: list[float] | None = None, vertical: bool = False,
              locked: set[int] | None = None) -> None:
    st.html(POEM_CSS + poem_html(lines, probs, vertical, locked))

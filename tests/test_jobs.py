"""Background training jobs (rnncore.jobs): lifecycle, isolation, limits, resume, uploads."""
import json

import pytest
import torch

from rnncore import data as D
from rnncore.jobs import JobError, JobManager, form_for_poems, list_checkpoints
from rnncore.model import ModelConfig
from rnncore.trainer import TrainConfig

MODEL = ModelConfig(cell="gru", vocab_size=5, embedding_dim=16, hidden_size=32, num_layers=1)


@pytest.fixture(scope="module")
def small_corpus():
    corpus = D.load_corpus("tang")
    return D.Corpus(poems=corpus.poems[:60], source="tang[:60]")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """JobManager(torch_threads=1) as the app uses it on a 2-core machine (a contended
    OpenMP pool makes tiny ops ~50x slower); the process-wide setting is restored after."""
    before = torch.get_num_threads()
    yield 1
    torch.set_num_threads(before)


def _train_config(**kw):
    base = dict(strategy="truncated", truncation_len=16, batch_size=8, lr=1e-2,
                max_steps=30, eval_every=10, eval_max_poems=8)
    base.update(kw)
    return TrainConfig(**base)


def test_job_runs_to_the_end_and_lowers_the_loss(tmp_path, small_corpus):
    manager = JobManager(tmp_path, torch_threads=1)
    job_id = manager.start("A", MODEL, _train_config(), corpus=small_corpus, label="tiny")
    snap = manager.wait("A", job_id, timeout=60)
    assert snap.status == "finished", snap.message
    assert snap.step == 30 and snap.progress == 1.0
    assert [r["step"] for r in snap.steps] == list(range(1, 31))
    assert [e["step"] for e in snap.evals] == [10, 20, 30]
    first = sum(r["bpc"] for r in snap.steps[:3]) / 3
    last = sum(r["bpc"] for r in snap.steps[-3:]) / 3
    assert last < first - 0.5, (first, last)
    # one sample poem per evaluation, in the corpus' form (8 lines of 7 characters + mark)
    assert len(snap.samples) == 3
    assert all(len(s["lines"]) == 8 and all(len(line) == 8 for line in s["lines"])
               for s in snap.samples)
    assert snap.checkpoints and (tmp_path / job_id / "step-000030" / "meta.json").is_file()
    info = json.loads((tmp_path / job_id / "job.json").read_text(encoding="utf-8"))
    assert info["status"] == "finished" and info["session_id"] == "A"
    listed = manager.list_checkpoints("A")
    assert [c.run for c in listed] == [job_id] and listed[0].step == 30
    assert listed[0].val_bpc == pytest.approx(snap.evals[-1]["val_bpc"])


def test_sessions_do_not_see_each_other(tmp_path, small_corpus):
    manager = JobManager(tmp_path, torch_threads=1)
    job_id = manager.start("A", MODEL, _train_config(max_steps=5, eval_every=0),
                           corpus=small_corpus)
    manager.wait("A", job_id, timeout=60)
    assert manager.snapshot("B") is None
    assert manager.snapshot("B", job_id) is None
    assert manager.jobs("B") == []
    assert manager.stop("B", job_id) is False
    with pytest.raises(JobError):
        manager.resume("B", job_id)
    assert list_checkpoints(tmp_path, session_id="B") == []
    assert len(list_checkpoints(tmp_path, session_id="A")) == 1
    assert len(list_checkpoints(tmp_path)) == 1


def test_limit_stop_and_resume(tmp_path, small_corpus):
    manager = JobManager(tmp_path, max_active=1, torch_threads=1)
    cfg = _train_config(max_steps=None, max_minutes=2.0, eval_every=0)
    job_id = manager.start("A", MODEL, cfg, corpus=small_corpus)
    with pytest.raises(JobError, match="at most 1"):
        manager.start("B", MODEL, cfg, corpus=small_corpus)
    with pytest.raises(JobError, match="still training"):
        manager.resume("A", job_id)
    import time
    deadline = time.time() + 30
    while manager.snapshot("A").step < 3 and time.time() < deadline:
        time.sleep(0.05)
    assert manager.stop("A") is True
    snap = manager.wait("A", timeout=30)
    assert snap.status == "stopped", snap.message
    stopped_at = snap.step
    assert 3 <= stopped_at and snap.checkpoints[-1].endswith(f"step-{stopped_at:06d}")
    assert 0.0 < snap.progress < 1.0
    # resume continues the same run directory from the saved step
    new_id = manager.resume("A", budget_s=60)
    while manager.snapshot("A", new_id).step < stopped_at + 2 and time.time() < deadline + 30:
        time.sleep(0.05)
    manager.stop("A", new_id)
    resumed = manager.wait("A", new_id, timeout=30)
    assert resumed.status == "stopped", resumed.message
    assert resumed.run_dir == snap.run_dir
    steps = [r["step"] for r in resumed.steps]
    assert steps == list(range(1, resumed.step + 1))  # history carried over, no gap
    assert resumed.step >= stopped_at + 2


def test_bad_upload_is_rejected_before_anything_is_written(tmp_path):
    manager = JobManager(tmp_path, torch_threads=1)
    with pytest.raises(D.CorpusError):
        manager.start("A", MODEL, _train_config(), corpus_upload=("poems.json", b"{not json"))
    with pytest.raises(D.CorpusError, match="no usable poem"):
        manager.start("A", MODEL, _train_config(),
                      corpus_upload=("poems.txt", "hello world\n".encode()))
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []
    assert manager.snapshot("A") is None


def test_uploaded_corpus_is_saved_in_the_run(tmp_path, small_corpus):
    text = "\n".join(p.text for p in small_corpus.poems[:30]).encode()
    manager = JobManager(tmp_path, torch_threads=1)
    job_id = manager.start("A", MODEL, _train_config(max_steps=3, eval_every=0),
                           corpus_upload=("mine.txt", text))
    snap = manager.wait("A", job_id, timeout=60)
    assert snap.status == "finished", snap.message
    assert (tmp_path / job_id / "corpus.txt").read_bytes() == text
    assert snap.data_stats["poems"] == 30


def test_failure_is_reported_not_raised(tmp_path, small_corpus):
    manager = JobManager(tmp_path, torch_threads=1)
    # batch larger than the stream allows: the trainer raises inside the thread
    job_id = manager.start("A", MODEL, _train_config(batch_size=100_000), corpus=small_corpus)
    snap = manager.wait("A", job_id, timeout=60)
    assert snap.status == "failed" and "batch_size" in snap.message
    assert manager.active_count() == 0


def test_form_for_poems(small_corpus):
    assert form_for_poems(small_corpus.poems) == "qilv"
    wujue = D.Poem("t", "a", ["白日依山盡，", "黃河入海流。", "欲窮千里目，", "更上一層樓。"])
    assert form_for_poems([wujue]) == "wujue"


def test_two_sessions_train_at_the_same_time(tmp_path, small_corpus):
    """Two sessions' jobs run concurrently, each sees only its own, and the caller's thread
    (the app's script run) is never blocked by the training threads while they run."""
    import time

    manager = JobManager(tmp_path, torch_threads=1)
    cfg = _train_config(max_steps=80, eval_every=40)
    a = manager.start("A", MODEL, cfg, corpus=small_corpus)
    b = manager.start("B", MODEL, cfg, corpus=small_corpus)
    overlapped, slowest = False, 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        sa, sb = manager.snapshot("A"), manager.snapshot("B")
        slowest = max(slowest, time.perf_counter() - t0)
        assert sa.job_id == a and sb.job_id == b
        assert [j.job_id for j in manager.jobs("A")] == [a]
        assert [j.job_id for j in manager.jobs("B")] == [b]
        overlapped |= sa.status == "running" and sb.status == "running"
        if not sa.active and not sb.active:
            break
        time.sleep(0.05)
    assert overlapped, "the two jobs never ran at the same time"
    assert manager.snapshot("A").status == manager.snapshot("B").status == "finished"
    # polling is a lock-protected copy, not a wait on training (a liveness bound, not speed)
    assert slowest < 2.0, slowest
    assert len(list_checkpoints(tmp_path, session_id="A")) == 1
    assert len(list_checkpoints(tmp_path, session_id="B")) == 1

"""Background training jobs for the app (no streamlit here).

``job`` (one job's callbacks, records and snapshots), ``runs`` (run directories: new ones,
the listing of every run, one run read back from disk), ``manager`` (``JobManager``:
threads, sessions, capacity), ``machine`` (device line and default thread count).
"""
from rnncore.jobs.job import (ACTIVE, MAX_SAMPLES, MAX_STEP_RECORDS, JobError, JobSnapshot,
                              form_for_poems)
from rnncore.jobs.machine import default_torch_threads, device_summary
from rnncore.jobs.manager import JobManager
from rnncore.jobs.runs import (CheckpointInfo, default_runs_dir, list_checkpoints, list_runs,
                               new_run_dir, run_snapshot)

__all__ = [
    "ACTIVE", "MAX_SAMPLES", "MAX_STEP_RECORDS", "CheckpointInfo", "JobError", "JobManager",
    "JobSnapshot", "default_runs_dir", "default_torch_threads", "device_summary",
    "form_for_poems", "list_checkpoints", "list_runs", "new_run_dir", "run_snapshot",
]

"""Checkpoints and run directories: the only code that knows their files.

Rooms, everything re-exported here: ``files`` (every file name, atomic writes), ``rng``
(RNG states as JSON), ``state`` (``TrainerState``), ``meta`` (reading and checking
``meta.json``), ``store`` (save/load one checkpoint directory), ``rundir`` (a run
directory's layout: step dirs, pointers, step log, job file, lock), ``manager``
(``CheckpointManager``), ``archive`` (zip export and import).
"""
from rnncore.checkpoint.archive import (MAX_UPLOAD_MB, export_checkpoint_zip,
                                        import_checkpoint_zip, load_checkpoint_bytes)
from rnncore.checkpoint.files import (BEST_POINTER, CHECKPOINT_FILES, JOB_FILE, LATEST_POINTER,
                                      META_FILE, MODEL_FILE, OPTIMIZER_FILE, STEP_LOG_FILE,
                                      CheckpointError)
from rnncore.checkpoint.manager import CheckpointManager
from rnncore.checkpoint.meta import FORMAT, read_meta
from rnncore.checkpoint.rng import capture_rng_state, restore_rng_state
from rnncore.checkpoint.rundir import (RunLock, StepLog, best_checkpoint, checkpoint_stamp,
                                       is_checkpoint_dir, latest_checkpoint, list_checkpoints,
                                       read_job_file, read_step_records, resolve_checkpoint,
                                       write_job_file)
from rnncore.checkpoint.state import TrainerState
from rnncore.checkpoint.store import Checkpoint, load_checkpoint, save_checkpoint

__all__ = [
    "FORMAT", "MODEL_FILE", "META_FILE", "OPTIMIZER_FILE", "CHECKPOINT_FILES", "LATEST_POINTER",
    "BEST_POINTER", "STEP_LOG_FILE", "JOB_FILE", "CheckpointError", "Checkpoint",
    "TrainerState", "CheckpointManager", "RunLock", "StepLog", "save_checkpoint", "load_checkpoint",
    "read_meta", "resolve_checkpoint", "is_checkpoint_dir", "checkpoint_stamp",
    "list_checkpoints", "latest_checkpoint", "best_checkpoint", "capture_rng_state",
    "restore_rng_state", "read_step_records", "read_job_file", "write_job_file",
    "export_checkpoint_zip", "import_checkpoint_zip", "load_checkpoint_bytes", "MAX_UPLOAD_MB",
]

"""The names of the files a training run writes in its folder: one list for the run folder's own
code (runs.py: claiming, listing, deleting) and for the output rule (outputs.py: no command writes
over them), which runs.py itself builds on."""

from __future__ import annotations

from .run_lock import LOCK_FILE

RUN_FILE = "run.json"
HISTORY_FILE = "history.jsonl"
LOG_FILE = "train.log"
CHECKPOINT_FILE = "checkpoint.pt"
BUNDLE_FILE = "model.discomkd"
EMBEDDINGS_FILE = "embeddings.npz"
TEST_PREDICTIONS_FILE = "test_predictions.json"
SKIPPED_FILE = "skipped.tsv"  # every file the data reading skipped; run.json keeps the first ones only
# Files whose presence means a folder already holds a run that a new training would overwrite.
RUN_FILES = (RUN_FILE, HISTORY_FILE, CHECKPOINT_FILE, BUNDLE_FILE)
# Every file a training writes in its folder (Delete removes these and nothing else); a new kind of
# run file must be added here. Temporary files (".NAME-….tmp") and a moved-aside stale lock
# (".train.lock-PID.stale") are the run's too.
RUN_WRITTEN_FILES = (RUN_FILE, HISTORY_FILE, LOG_FILE, CHECKPOINT_FILE, BUNDLE_FILE, EMBEDDINGS_FILE, LOCK_FILE,
                     SKIPPED_FILE, TEST_PREDICTIONS_FILE)

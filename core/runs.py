"""Run folders: the one module that reads and writes them.

A run folder holds ``run.json`` (name, status, config, classes, specs, best epochs, test metrics),
``history.jsonl`` (one line per epoch), ``train.log``, ``checkpoint.pt`` (state to continue
training), ``model.discomkd`` (the bundle) and ``embeddings.npz`` (2-D projections for the
results page). Every file is replaced atomically.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import DataError
from .paths import runs_dir

RUN_FORMAT_VERSION = 1
RUN_FILE = "run.json"
HISTORY_FILE = "history.jsonl"
LOG_FILE = "train.log"
CHECKPOINT_FILE = "checkpoint.pt"
BUNDLE_FILE = "model.discomkd"
EMBEDDINGS_FILE = "embeddings.npz"


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text), text=True)


def new_run_dir(parent: Path | None = None, label: str = "run") -> Path:
    parent = Path(parent) if parent else runs_dir()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-") or "run"
    candidate = parent / f"{stamp}-{slug}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{stamp}-{slug}-{n}"
    candidate.mkdir(parents=True)
    return candidate


def write_run_record(run_dir: Path, record: dict) -> None:
    record = dict(record, format_version=RUN_FORMAT_VERSION)
    atomic_write_text(Path(run_dir) / RUN_FILE, json.dumps(record, indent=2, sort_keys=True))


def read_run_record(run_dir: Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"'{run_dir}' is not a training run folder (no {RUN_FILE}).") from exc
    except (json.JSONDecodeError, OSError) as exc:
        raise DataError(f"The run record in '{run_dir}' is damaged ({exc}).") from exc


def write_history(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(Path(run_dir) / HISTORY_FILE, "".join(json.dumps(h) + "\n" for h in history))


def read_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # keep what was written before a damaged line
    return rows


def append_log(run_dir: Path, line: str) -> None:
    with open(Path(run_dir) / LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")


def save_embeddings(run_dir: Path, **arrays: np.ndarray) -> None:
    atomic_write(Path(run_dir) / EMBEDDINGS_FILE, lambda fh: np.savez(fh, **arrays))


def load_embeddings(run_dir: Path) -> dict[str, np.ndarray] | None:
    """2-D projections: inv_2d, inf_2d (N, 2), modality (N,) index, label (N,) index; None if absent."""
    path = Path(run_dir) / EMBEDDINGS_FILE
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass
class RunInfo:
    run_dir: Path
    name: str
    created: str
    status: str
    modalities: list[str]
    classes: list[str]
    epochs_done: int
    test_metrics: dict = field(default_factory=dict)

    @property
    def bundle_path(self) -> Path | None:
        path = self.run_dir / BUNDLE_FILE
        return path if path.exists() else None


def run_info(run_dir: Path) -> RunInfo:
    record = read_run_record(run_dir)
    return RunInfo(
        run_dir=Path(run_dir),
        name=record.get("name", Path(run_dir).name),
        created=record.get("created", ""),
        status=record.get("status", "unknown"),
        modalities=[m["name"] for m in record.get("config", {}).get("modalities", [])],
        classes=record.get("classes", []),
        epochs_done=int(record.get("epochs_done", 0)),
        test_metrics=record.get("test_metrics", {}),
    )


def list_runs(parent: Path | None = None) -> list[RunInfo]:
    """Runs newest first; folders that are not readable runs are left out."""
    parent = Path(parent) if parent else runs_dir()
    if not parent.exists():
        return []
    infos = []
    for child in parent.iterdir():
        if child.is_dir() and (child / RUN_FILE).exists():
            try:
                infos.append(run_info(child))
            except DataError:
                continue
    return sorted(infos, key=lambda i: i.created, reverse=True)


def rename_run(run_dir: Path, new_name: str) -> None:
    new_name = new_name.strip()
    if not new_name:
        raise DataError("A run name cannot be empty.")
    record = read_run_record(run_dir)
    record["name"] = new_name
    write_run_record(run_dir, record)


def delete_run(run_dir: Path) -> None:
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists():
        raise DataError(f"'{run_dir}' is not a training run folder; nothing was deleted.")
    shutil.rmtree(run_dir)


def export_bundle(run_dir: Path, destination: Path) -> Path:
    source = Path(run_dir) / BUNDLE_FILE
    if not source.exists():
        raise DataError("This run has no saved model yet (it stopped before its first epoch ended).")
    with open(source, "rb") as src:
        return atomic_write(destination, lambda fh: shutil.copyfileobj(src, fh))

"""Run folders: the one module that reads and writes them.

A run folder holds ``run.json`` (name, status, config, classes, specs, best epochs, test metrics),
``history.jsonl`` (one line per epoch), ``train.log``, ``checkpoint.pt`` (state to continue
training), ``model.discomkd`` (the bundle), ``embeddings.npz`` (2-D projections for the
results page), ``test_predictions.json`` (each test file's true and predicted class and
probabilities, for the error browser) and ``skipped.tsv`` (every file the data reading skipped,
when any). Every file is replaced atomically.

While a training writes to a run folder it holds ``train.lock`` (see run_lock.py): a second
training into the same folder is refused, and a run whose record says "running" but whose lock
is gone or stale was killed; it is shown as "interrupted" and its temporary files are removed.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import DataError, RunFolderError, StorageError
from .atomic import TEMP_SUFFIX, atomic_write, remove_orphan_temp_files, storage_error
from .outputs import check_output_file, check_run_folder_location
from .paths import printable_name, runs_dir
# The run's file names live below this module and outputs.py (which keeps every command off them).
from .run_files import (BUNDLE_FILE, CHECKPOINT_FILE, EMBEDDINGS_FILE, HISTORY_FILE, LOG_FILE, RUN_FILE,  # noqa: F401
                        RUN_FILES, RUN_WRITTEN_FILES, SKIPPED_FILE, TEST_PREDICTIONS_FILE)
from .run_lock import LOCK_FILE, RunLock, lock_owner

RUN_FORMAT_VERSION = 1
TEST_PREDICTIONS_VERSION = 1
LOG_TAIL_LINES = 5000  # what a reopened run shows of its log (the Train page keeps as many)
# Files an operating system drops in any folder it shows: no reason to refuse a folder as "not empty".
OS_LITTER = (".DS_Store", "Thumbs.db", "desktop.ini")


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text), text=True)


def new_run_dir(parent: Path | None = None, label: str = "run") -> Path:
    parent = Path(parent) if parent else runs_dir()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-") or "run"
    candidate = parent / f"{stamp}-{slug}"
    n = 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:  # two trainings started in the same second each get their own folder
            n += 1
            candidate = parent / f"{stamp}-{slug}-{n}"
        except OSError as exc:
            raise RunFolderError(
                f"A run folder cannot be created in '{parent}' ({exc.strerror or exc}). Free some space or set "
                "DISCOMKD_DATA_DIR to a folder you can write to."
            ) from exc


def write_run_record(run_dir: Path, record: dict) -> None:
    record = dict(record, format_version=RUN_FORMAT_VERSION)
    atomic_write_text(Path(run_dir) / RUN_FILE, json.dumps(record, indent=2, sort_keys=True))


def read_run_record(run_dir: Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    if Path(run_dir).is_file():  # the model file (or another) given instead of its run folder
        hint = (f" Give its folder: '{Path(run_dir).parent}'." if (Path(run_dir).parent / RUN_FILE).is_file() else
                " Give the run's folder (the one holding run.json and model.discomkd).")
        raise DataError(f"'{run_dir}' is a file, not a training run folder.{hint}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"'{run_dir}' is not a training run folder (no {RUN_FILE}).") from exc
    except (json.JSONDecodeError, OSError) as exc:
        raise DataError(f"The run record in '{run_dir}' is damaged ({exc}).") from exc


def write_history(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(Path(run_dir) / HISTORY_FILE, "".join(json.dumps(h) + "\n" for h in history))


def write_skipped_list(run_dir: Path, skipped: dict[str, list]) -> Path:
    """All skipped files, one row each (modality, file, reason), as tab-separated text with a header.

    File names are written as shown everywhere else (bytes that are not UTF-8 escaped); a name with a
    tab or a line break is quoted, so every row reads back whole with a CSV reader."""
    import csv
    import io

    from .paths import printable_name

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(["modality", "file", "reason"])
    for modality, files in skipped.items():
        for s in files:
            writer.writerow([modality, printable_name(s.path), s.reason])
    path = Path(run_dir) / SKIPPED_FILE
    atomic_write_text(path, buffer.getvalue())
    return path


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
    # backslashreplace: a file name with undecodable bytes is logged escaped, never a crash.
    path = Path(run_dir) / LOG_FILE
    try:
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")
    except OSError as exc:
        raise storage_error(path, exc) from exc


def read_log_tail(run_dir: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of the run's log ([] when it has none)."""
    path = Path(run_dir) / LOG_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="backslashreplace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DataError(f"The log of the run in '{run_dir}' cannot be read ({exc.strerror or exc}).") from exc
    return text.splitlines()[-lines:]


@dataclass
class TestFilePrediction:
    """One test file of one modality: where it is, its true and predicted class, its class probabilities."""

    path: str  # absolute, as it was when the run was tested
    modality: str
    true_index: int
    predicted_index: int
    probabilities: list[float]  # one per class of the run, in the run's class order


@dataclass
class TestPredictions:
    """Every test file's prediction of a run, per modality."""

    classes: list[str]
    by_modality: dict[str, list[TestFilePrediction]]
    folders: dict[str, str] = field(default_factory=dict)  # modality -> the data folder its test files are in

    def in_cell(self, modality: str, true_index: int, predicted_index: int) -> list[TestFilePrediction]:
        """The files of one confusion-matrix cell (row: true class, column: predicted class)."""
        return [p for p in self.by_modality.get(modality, [])
                if p.true_index == true_index and p.predicted_index == predicted_index]


def test_files_table(files: list[TestFilePrediction], classes: list[str], delimiter: str = ",") -> str:
    """Test files as CSV (or tab-separated, for pasting into a spreadsheet): file, modality, true
    and predicted class, then one probability column per class."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(["file", "modality", "true_class", "predicted_class", *[f"p_{c}" for c in classes]])
    for f in files:
        writer.writerow([printable_name(f.path), f.modality, classes[f.true_index], classes[f.predicted_index],
                         *[f"{p:.4f}" for p in f.probabilities]])
    return out.getvalue()


def write_test_predictions(run_dir: Path, classes: list[str], by_modality: dict[str, dict]) -> None:
    """``by_modality``: modality -> {"folder", "files" (relative to folder), "true", "predicted",
    "probabilities" (N x classes)}, rows in the same order."""
    modalities = {}
    for name, p in by_modality.items():
        modalities[name] = {
            "folder": str(p["folder"]),
            "files": [str(f) for f in p["files"]],
            "true": [int(v) for v in p["true"]],
            "predicted": [int(v) for v in p["predicted"]],
            # four decimals: enough to read, and a 10,000-file test split stays a few MB
            "probabilities": [[round(float(v), 4) for v in row] for row in p["probabilities"]],
        }
    payload = {"format_version": TEST_PREDICTIONS_VERSION, "classes": list(classes), "modalities": modalities}
    atomic_write_text(Path(run_dir) / TEST_PREDICTIONS_FILE, json.dumps(payload))


def read_test_predictions(run_dir: Path) -> TestPredictions | None:
    """The run's per-file test predictions; None for runs saved without them (before this file
    existed, or stopped before the first epoch). DataError when the file is damaged."""
    path = Path(run_dir) / TEST_PREDICTIONS_FILE
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("format_version", 0) > TEST_PREDICTIONS_VERSION:
            raise DataError(f"'{path}' was written by a newer version of DisCoM-KD Studio.")
        classes = [str(c) for c in payload["classes"]]
        by_modality, folders = {}, {}
        for name, p in payload["modalities"].items():
            folder = Path(p["folder"])
            folders[name] = str(folder)
            by_modality[name] = [
                TestFilePrediction(str(folder / f), name, int(t), int(pr), [float(v) for v in probs])
                for f, t, pr, probs in zip(p["files"], p["true"], p["predicted"], p["probabilities"], strict=True)
            ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"The test predictions of the run in '{run_dir}' are damaged ({exc}).") from exc
    return TestPredictions(classes, by_modality, folders)


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
    """What the Runs page and ``discomkd info`` show; a killed run is recovered as "interrupted" first."""
    record = recover_interrupted_run(run_dir)
    try:  # a record edited by hand or by another program: refused with why, never a traceback
        info = RunInfo(
            run_dir=Path(run_dir),
            name=str(record.get("name", Path(run_dir).name)),
            created=str(record.get("created", "")),
            status=str(record.get("status", "unknown")),
            modalities=[str(m["name"]) for m in record.get("config", {}).get("modalities", [])],
            classes=[str(c) for c in record.get("classes", [])],
            epochs_done=int(record.get("epochs_done", 0)),
            test_metrics=record.get("test_metrics", {}),
        )
        if not isinstance(info.test_metrics, dict) or not all(isinstance(m, dict) for m in info.test_metrics.values()):
            raise TypeError("test_metrics is not an object of objects")
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise DataError(f"The run record in '{run_dir}' is damaged ({type(exc).__name__}: {exc}), so the run cannot "
                        "be shown. Its model file, if any, still opens on its own.") from exc
    return info


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


def _written_by_a_run(entry: Path) -> bool:
    name = entry.name
    if name in RUN_WRITTEN_FILES:
        return not entry.is_dir() or entry.is_symlink()
    return name.startswith(".") and (name.endswith(TEMP_SUFFIX) or name.startswith(f".{LOCK_FILE}-"))


def foreign_entries(run_dir: Path) -> list[Path]:
    """What a folder holds besides a run's own files (and the OS's .DS_Store / Thumbs.db)."""
    try:
        return sorted(e for e in Path(run_dir).iterdir() if not _written_by_a_run(e) and e.name not in OS_LITTER)
    except FileNotFoundError:
        return []


def delete_run(run_dir: Path) -> list[Path]:
    """Delete the files a training wrote in ``run_dir``, and the folder when nothing else is left.

    Anything else in the folder (data, notes, a sub-folder) is never touched: it is returned, so
    that the caller can say the folder was kept. ``run.json`` goes last, so a delete cut short
    leaves a run that is still listed and can be deleted again.
    """
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists():
        raise DataError(f"'{run_dir}' is not a training run folder; nothing was deleted.")
    owner = lock_owner(run_dir)
    if owner is not None and owner.alive:
        raise RunFolderError(f"A training is writing to '{run_dir}' ({owner.describe()}). Stop it before deleting the run.")
    ours = [e for e in run_dir.iterdir() if _written_by_a_run(e)]
    ours.sort(key=lambda e: e.name == RUN_FILE)
    kept = foreign_entries(run_dir)
    try:
        for entry in ours:
            entry.unlink(missing_ok=True)
        if not kept:
            for litter in OS_LITTER:
                (run_dir / litter).unlink(missing_ok=True)
            run_dir.rmdir()
    except OSError as exc:
        raise RunFolderError(f"The run in '{run_dir}' could not be deleted completely ({exc.strerror or exc}). "
                             "Check the folder's permissions and delete it again.") from exc
    return kept


def _data_folders(run_dir: Path) -> list[str]:
    """The run's training folders as its record names them (none from a record of another shape)."""
    try:
        modalities = read_run_record(run_dir).get("config", {}).get("modalities", [])
        return [m["folder"] for m in modalities if isinstance(m, dict) and isinstance(m.get("folder"), str)
                and m["folder"].strip()]
    except (DataError, AttributeError, TypeError):
        return []


def export_bundle(run_dir: Path, destination: Path, replace: bool = False) -> Path:
    """Copy the run's model to ``destination`` (an existing file only when ``replace``; never the model
    itself, nor another of the run's own files: its record, checkpoint, history..., nor into its data)."""
    source = Path(run_dir) / BUNDLE_FILE
    if not source.exists():
        raise DataError("This run has no saved model yet (it stopped before its first epoch ended).")
    own_files = [source, *(Path(run_dir) / name for name in RUN_WRITTEN_FILES if name != BUNDLE_FILE)]
    destination = check_output_file(destination, inputs=own_files, replace=replace, what="the exported model",
                                    data_folders=_data_folders(run_dir))
    with open(source, "rb") as src:
        return atomic_write(destination, lambda fh: shutil.copyfileobj(src, fh), replace=replace)


# ----- claiming a run folder, and recovery after a kill -------------------------------------------


def claim_run_dir(run_dir: str | Path, existing: bool = False, data_folders=()) -> RunLock:
    """Lock a run folder for a training. A new training never overwrites a run: a folder that
    already holds one is refused, unless that run never ended an epoch (nothing to lose). Nor is a
    folder claimed that holds anything else, or that lies in (or holds) one of ``data_folders``.
    ``existing=True`` (continue) requires a run there instead."""
    run_dir = Path(run_dir).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"'{run_dir}' is a file, not a folder. Choose a new folder for the run.")
    if existing and not (run_dir / RUN_FILE).exists():
        raise RunFolderError(f"'{run_dir}' is not a training run folder (no {RUN_FILE}).")
    check_run_folder_location(run_dir, data_folders)
    if not existing:
        others = foreign_entries(run_dir)
        # Beside a run worth keeping, the "already holds a run" message below says more.
        holds_a_run = any((run_dir / name).exists() for name in RUN_FILES) and not never_trained(run_dir)
        if others and not holds_a_run:
            shown = ", ".join(f"'{e.name}'" for e in others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise RunFolderError(
                f"'{run_dir}' already holds files that are not a training run ({shown}). A run folder must be new or "
                "empty, so that deleting the run later deletes nothing else. Choose a new folder (or leave --out out).")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(
            f"The run folder '{run_dir}' cannot be created ({exc.strerror or exc}). Choose a folder you can write to."
        ) from exc
    try:
        lock = RunLock(run_dir).acquire()
    except StorageError as exc:
        raise RunFolderError(f"The run folder '{run_dir}' cannot be written: {exc}") from exc
    if existing:
        recover_interrupted_run(run_dir, locked_by_us=True)
        return lock
    if never_trained(run_dir):
        try:
            _clear_never_trained_run(run_dir)
        except StorageError as exc:
            lock.release()
            raise RunFolderError(f"The run folder '{run_dir}' cannot be reused: {exc}") from exc
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if held:
        what = _describe_existing_run(run_dir)
        lock.release()
        raise RunFolderError(
            f"'{run_dir}' already holds a run{what}; a new training would overwrite its {', '.join(held)}. "
            "Choose a new folder (or leave --out out to get one), or continue that run with "
            f"'discomkd continue {run_dir} --epochs N'."
        )
    remove_orphan_temp_files(run_dir)
    return lock


@dataclass
class RunFolderClaim:
    """A run folder claimed for a training: its lock, and whether this training made the folder (it
    was new or empty), so that a training that fails before it trains can leave no trace there."""

    path: Path
    lock: RunLock
    created_here: bool = False

    def release(self) -> None:
        self.lock.release()

    def discard(self) -> None:
        """Release the folder and remove what the training's start wrote there (its record and log), then
        the folder when nothing else is left; only for a folder this training made."""
        self.release()
        for name in (RUN_FILE, LOG_FILE):
            try:
                (self.path / name).unlink(missing_ok=True)
            except OSError:
                pass
        try:
            if self.path.exists() and not any(self.path.iterdir()):
                self.path.rmdir()
        except OSError:
            pass


def claim_new_run_folder(run_dir: str | Path | None, label: str, data_folders=()) -> RunFolderClaim:
    """Claim a folder for a new training (claim_run_dir's rules): ``run_dir``, or a new folder named
    after ``label`` under the per-user runs folder when it is None."""
    if run_dir is None:
        path = new_run_dir(label=label)
        return RunFolderClaim(path, claim_run_dir(path, data_folders=data_folders), created_here=True)
    path = Path(run_dir).expanduser()
    created_here = not path.exists() or (path.is_dir() and not any(path.iterdir()))
    return RunFolderClaim(path, claim_run_dir(path, data_folders=data_folders), created_here)


def claim_existing_run(run_dir: str | Path) -> RunFolderClaim:
    """Claim the folder of a run to continue it (claim_run_dir with ``existing=True``)."""
    path = Path(run_dir)
    return RunFolderClaim(path, claim_run_dir(path, existing=True))


def never_trained(run_dir: Path) -> bool:
    """A run that ended no epoch (stopped, failed or killed first): no model, no checkpoint, nothing
    to keep, so a new training may take its folder and continuing it starts from the first epoch."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists() or (run_dir / CHECKPOINT_FILE).exists() or (run_dir / BUNDLE_FILE).exists():
        return False
    try:
        record = read_run_record(run_dir)
        return isinstance(record, dict) and not int(record.get("epochs_done", 0) or 0)
    except (DataError, TypeError, ValueError):
        return False  # a damaged record: leave the folder to the user


def discard_test_results(run_dir: str | Path) -> None:
    """Remove the test predictions and embeddings of a model the run no longer holds (continuing, a new
    best replaced it); the end of the training writes them again for the new one."""
    _remove_run_files(Path(run_dir), (TEST_PREDICTIONS_FILE, EMBEDDINGS_FILE))


def _clear_never_trained_run(run_dir: Path) -> None:
    """Remove what an earlier attempt that ended no epoch wrote (its log is kept: it says what happened)."""
    _remove_run_files(run_dir, (RUN_FILE, HISTORY_FILE, EMBEDDINGS_FILE, TEST_PREDICTIONS_FILE))


def _remove_run_files(run_dir: Path, names: tuple[str, ...]) -> None:
    for name in names:
        try:
            (run_dir / name).unlink(missing_ok=True)
        except OSError as exc:
            raise storage_error(run_dir / name, exc) from exc


def _describe_existing_run(run_dir: Path) -> str:
    """' (“name”, status, N epochs)' of the run in a folder we hold the lock of (a killed one is recovered)."""
    try:
        record = recover_interrupted_run(run_dir, locked_by_us=True)
        return f" (“{record.get('name', run_dir.name)}”, {record.get('status', 'unknown status')}, {record.get('epochs_done', 0)} epochs)"
    except (DataError, AttributeError):
        return ""


INTERRUPTED_REASON = (
    "The training was interrupted (its process ended without finishing: killed, crashed or the computer "
    "shut down). {saved}"
)


def recover_interrupted_run(run_dir: str | Path, locked_by_us: bool = False) -> dict:
    """The run's record; a "running" run whose training process is gone becomes "interrupted", and
    the temporary files of its last, unfinished writes are removed."""
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    if not isinstance(record, dict):
        raise DataError(f"The run record in '{run_dir}' is damaged (not a JSON object).")
    owner = None if locked_by_us else lock_owner(run_dir)
    if owner is not None and owner.alive:
        return record  # a training is writing here right now
    remove_orphan_temp_files(run_dir)
    if record.get("status") == "running":
        try:
            done = int(record.get("epochs_done", 0) or 0)
        except (TypeError, ValueError):  # an edited record: the run is still shown as interrupted
            done = 0
        saved = (f"Epoch {done} was the last one saved; its best model was kept. Continue it for more epochs."
                 if done else "No epoch had ended, so no model was saved. Continue it (it starts from the first "
                 "epoch) or start a new training in the same folder.")
        record.update(status="interrupted", reason=INTERRUPTED_REASON.format(saved=saved))
        try:
            write_run_record(run_dir, record)
        except StorageError:
            pass  # a read-only folder: shown as interrupted all the same
    return record

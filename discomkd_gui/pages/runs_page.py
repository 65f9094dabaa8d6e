"""Runs page: every training run under the per-user data folder; reopen, rename, delete, export;
several selected runs side by side (validation curves overlaid, test metrics in one table)."""

from __future__ import annotations

import traceback
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..widgets.runs_side_by_side import RunsSideBySide, read_run_curves
from .common import PageHeader, hint_label, read_only_table, table_item

STATUS_TEXT = {"finished": "✓ finished", "stopped": "■ stopped", "failed": "✗ failed", "running": "● running",
               "interrupted": "⚠ interrupted"}


class RunsPage(QWidget):
    """Signals: ``open_run(run_dir)``, ``continue_run(run_dir, extra_epochs)``,
    ``export_for_device(bundle_path)``, ``error``."""

    open_run = Signal(str)
    continue_run = Signal(str, int)
    export_for_device = Signal(str)
    error = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.infos = []
        self.active_run_dir: str | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(self._build_header())
        self.location = hint_label()
        self.location.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.location)
        layout.addWidget(self._build_table_and_curves(), 1)
        layout.addLayout(self._build_actions())

    def _build_header(self) -> PageHeader:
        header = PageHeader(
            "Runs",
            "Every training is kept as a run folder with its configuration, curves, log and model.",
        )
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        header.buttons.addWidget(self.refresh_button)
        return header

    def _build_table_and_curves(self) -> QSplitter:
        """The runs, and below them the runs selected, side by side."""
        self.table = read_only_table(["Name", "Created", "Status", "Modalities", "Classes", "Epochs", "Test accuracy"],
                                     stretch_column=0)
        self.table.setSortingEnabled(True)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setToolTip("Select several runs (Ctrl or Shift) to compare their curves and test metrics below.")
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemDoubleClicked.connect(lambda *_: self._open())
        self.side_by_side = RunsSideBySide()
        self._curves_cache: dict[str, object] = {}  # run folder -> RunCurves, until the next refresh
        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        split.addWidget(self.table)
        split.addWidget(self.side_by_side)
        split.setSizes([150, 400])
        return split

    def _build_actions(self) -> QHBoxLayout:
        """What can be done with the run selected; enabled by ``_selection_changed``."""
        actions = QHBoxLayout()
        self.open_button = QPushButton("Open")
        self.open_button.setObjectName("primary")
        self.open_button.setToolTip("Show its curves and results, and predict with its model")
        self.continue_button = QPushButton("Continue training…")
        self.rename_button = QPushButton("Rename…")
        self.export_button = QPushButton("Export model…")
        self.device_export_button = QPushButton("Export for a device…")
        self.device_export_button.setToolTip("One modality's classifier as ONNX or TorchScript, with its preprocessing")
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setObjectName("danger")
        for button, slot in ((self.open_button, self._open), (self.continue_button, self._continue),
                             (self.rename_button, self._rename), (self.export_button, self._export),
                             (self.device_export_button, self._export_for_device), (self.delete_button, self._delete)):
            actions.addWidget(button)
            button.setEnabled(False)
            button.clicked.connect(slot)
        actions.addStretch(1)
        return actions

    def refresh(self) -> None:
        from discomkd.storage import runs
        from discomkd.storage.paths import runs_dir

        self.location.setText(f"Run folders live in {runs_dir()}")
        self.infos = runs.list_runs()
        self._curves_cache.clear()
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.infos))
        for r, info in enumerate(self.infos):
            acc = ", ".join(f"{m} {v['accuracy']:.3f}" for m, v in info.test_metrics.items()) or "—"
            cells = [info.name, info.created.replace("T", " "), STATUS_TEXT.get(info.status, info.status),
                     ", ".join(info.modalities), len(info.classes), info.epochs_done, acc]
            reason = runs.read_run_record(info.run_dir).get("reason", "") if info.status == "interrupted" else ""
            for c, v in enumerate(cells):
                item = table_item(v)
                item.setData(Qt.ItemDataRole.UserRole, str(info.run_dir))
                if reason:
                    item.setToolTip(reason)
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        self._selection_changed()

    def selected_run(self) -> str | None:
        """The run the single-run actions act on: the only one selected (None for none or several)."""
        selected = self.selected_runs()
        return selected[0] if len(selected) == 1 else None

    def selected_runs(self) -> list[str]:
        """Run folders of the selected rows, in the table's order."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        return [self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in rows]

    def _name_of(self, run_dir: str) -> str:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == run_dir:
                return self.table.item(r, 0).text()
        return Path(run_dir).name

    def _show_side_by_side(self) -> None:
        from discomkd.errors import DataError

        shown = []
        for run_dir in self.selected_runs():
            if run_dir not in self._curves_cache:
                try:
                    self._curves_cache[run_dir] = read_run_curves(run_dir)
                except DataError as exc:  # deleted or damaged since the list was read
                    self.error.emit(str(exc), "")
                    continue
            shown.append(self._curves_cache[run_dir])
        self.side_by_side.set_runs(shown)

    def select_run(self, run_dir: str) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == str(run_dir):
                self.table.selectRow(r)
                return

    def _selection_changed(self) -> None:
        self._show_side_by_side()
        run = self.selected_run()
        busy = run is not None and run == self.active_run_dir
        has_model = run is not None and (Path(run) / "model.discomkd").exists()
        self.open_button.setEnabled(run is not None)
        self.rename_button.setEnabled(run is not None)
        self.delete_button.setEnabled(run is not None and not busy)
        self.export_button.setEnabled(has_model)
        self.device_export_button.setEnabled(has_model)
        self.continue_button.setEnabled(run is not None and not busy and self._can_continue(Path(run)))

    @staticmethod
    def _can_continue(run_dir: Path) -> bool:
        """From its checkpoint, or from the first epoch when it never ended one (nothing to lose)."""
        from discomkd.storage import runs

        return (run_dir / runs.CHECKPOINT_FILE).exists() or runs.never_trained(run_dir)

    def _open(self) -> None:
        run = self.selected_run()
        if run:
            self.open_run.emit(run)

    def _continue(self) -> None:
        run = self.selected_run()
        if not run:
            return
        extra, ok = QInputDialog.getInt(self, "Continue training", "Train for how many more epochs?", 5, 1, 10000)
        if ok:
            self.continue_run.emit(run, extra)

    def _rename(self) -> None:
        from discomkd.errors import DataError
        from discomkd.storage import runs

        run = self.selected_run()
        if not run:
            return
        current = self._name_of(run)
        name, ok = QInputDialog.getText(self, "Rename run", "New name:", text=current)
        if ok:
            try:
                runs.rename_run(Path(run), name)
            except (DataError, OSError) as exc:  # OSError: the disk is full or the folder read-only
                self.error.emit(str(exc), "")
            self.refresh()
            self.select_run(run)

    def _export(self) -> None:
        from discomkd.errors import DisComKDError
        from discomkd.storage import runs

        run = self.selected_run()
        if not run:
            return
        name = self._name_of(run)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name).strip("-") or "model"
        dest, _ = QFileDialog.getSaveFileName(self, "Export the model", str(Path.home() / f"{safe}.discomkd"),
                                              "DisCoM-KD model (*.discomkd)")
        if dest:
            try:  # the file dialog asked before replacing a file; the run's own model is never replaced
                runs.export_bundle(Path(run), Path(dest), replace=True)
            except (DisComKDError, OSError) as exc:
                self.error.emit(str(exc), "")
            except Exception as exc:  # noqa: BLE001 - see _report_unexpected
                # The copy is written beside the destination and moved into place only when whole.
                self._report_unexpected(exc, f"Exporting the model of the run “{name}”",
                                        "The run and its model are unchanged, and no partial copy was left.")

    def _report_unexpected(self, exc: Exception, action: str, kept: str) -> None:
        """A failure outside the engine's own errors (MemoryError, a bug) in an action run in the window's
        thread: a message box, with the traceback under its details, instead of Qt's default handler."""
        if isinstance(exc, MemoryError):
            why = "the computer ran out of memory"
        else:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.error.emit(f"{action} failed unexpectedly ({why}). {kept}", traceback.format_exc())

    def _export_for_device(self) -> None:
        run = self.selected_run()
        if run:
            self.export_for_device.emit(str(Path(run) / "model.discomkd"))

    def _delete(self) -> None:
        from discomkd.errors import DisComKDError
        from discomkd.storage import runs

        run = self.selected_run()
        if not run:
            return
        name = self._name_of(run)
        answer = QMessageBox.question(self, "Delete run", f"Delete the run “{name}” and its model from disk?\n{run}")
        if answer == QMessageBox.StandardButton.Yes:
            try:
                kept = runs.delete_run(Path(run))
            except (DisComKDError, OSError) as exc:  # e.g. a training (in another window) writes to it
                self.error.emit(str(exc), "")
            except Exception as exc:  # noqa: BLE001 - see _report_unexpected
                self._report_unexpected(exc, f"Deleting the run “{name}”",
                                        "Only files the run wrote can have been deleted; the list shows what is left.")
            else:
                if kept:  # only the run's own files were deleted
                    shown = ", ".join(e.name for e in kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
                    self.error.emit(f"The run “{name}” was deleted. Its folder {run} was kept, because it also holds "
                                    f"files the run did not write ({shown}); they were not touched.", "")
            self.refresh()

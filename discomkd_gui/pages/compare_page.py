"""Compare page: DisCoM-KD against baselines and ablations over several random splits."""

from __future__ import annotations

import re
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..jobs import Job, TaskState, start_job
from ..widgets.comparison_chart import ComparisonChart
from .common import StartStopHeader, read_only_table, table_item

DEFAULT_CHOICE = ("discomkd", "student", "classifiers_only", "dml")
LONG_COMPARISON_S = 1800  # longer than this (estimated), the user confirms before it starts


def comparisons_dir() -> Path:
    """Where finished comparisons are kept, next to the training runs."""
    from discomkd.storage.paths import runs_dir

    return runs_dir() / "comparisons"


def new_comparison_folder(modalities: list[str], parent: Path | None = None) -> Path:
    """``<YYYYmmdd-HHMMSS>-<modality+modality>`` under ``parent``, not yet existing."""
    parent = parent or comparisons_dir()
    names = "+".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", m) for m in modalities) or "comparison"
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{names}"
    folder, n = parent / base, 1
    while folder.exists():  # two comparisons finished within the same second
        n += 1
        folder = parent / f"{base}-{n}"
    return folder


def saved_comparisons(parent: Path | None = None) -> list[Path]:
    """Saved comparison folders, newest first (their names start with the time)."""
    parent = parent or comparisons_dir()
    if not parent.is_dir():
        return []
    return sorted((p for p in parent.iterdir() if (p / "per_run.json").is_file()), key=lambda p: p.name, reverse=True)


BEST_EPOCHS_LISTED = 10  # seeds whose best epochs the table lists one by one; beyond, a summary
BEST_EPOCHS_COLUMN = 8


def best_epochs_cell(text: str) -> tuple[str, str]:
    """The table's "Best epochs" cell and its tooltip: each seed's best epoch ('12/9/11'), or, for many
    seeds, their median and range (the list in the tooltip), so one column does not widen the table
    past the window."""
    epochs = [int(e) for e in text.split("/") if e.strip().isdigit()]
    if len(epochs) <= BEST_EPOCHS_LISTED:
        return text, ""
    ordered = sorted(epochs)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return f"median {median:g} ({ordered[0]}-{ordered[-1]})", f"Best epoch per seed: {text}"


def duration_text(seconds: float) -> str:
    """'3 h 10 min', '12 min', 'under a minute'."""
    minutes = int(round(seconds / 60))
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def verdict_text(result) -> str:
    """The banner above the table: the verdict, or why there is none."""
    from discomkd.training.compare import REFERENCE

    lines = result.verdict_lines()
    if lines:
        return "\n".join(lines)
    methods = result.settings.get("methods", [])
    if not result.rows:
        return ("Stopped before any run finished: there is nothing to compare, and nothing was saved."
                if result.stopped else "No run finished (the reasons are below); nothing was saved.")
    if REFERENCE not in methods:
        return "Add 'Student alone' to see whether DisCoM-KD helps each modality (paired difference over the seeds)."
    if "discomkd" not in methods:
        return ""
    return ("No seed has both DisCoM-KD and the student alone finished" + (" (stopped early)" if result.stopped else "")
            + ", so there is no paired difference yet.")


def run_comparison_job(state: TaskState, config, methods: list[str], seeds: int):
    from discomkd.training.compare import run_comparison

    def progress(p) -> None:
        state.set_progress(p.fraction, p.message)

    return run_comparison(config, methods, seeds, on_progress=progress, stop=state.stop)


class ComparePage(QWidget):
    """``start_requested`` asks the window for a configuration; ``start(config)`` runs the comparison."""

    start_requested = Signal()
    comparison_finished = Signal(object)
    error = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job: Job | None = None
        self.result = None
        self._started_at: float | None = None
        self.saved_folder: Path | None = None
        self.method_boxes: dict[str, QCheckBox] = {}
        layout = QVBoxLayout(self)
        layout.addWidget(self._build_header())
        # The methods take the page's whole width in three columns, packed tight (they fit a 1024x700
        # window); the repetitions sit on one line below them, so the table and chart keep their height.
        layout.addWidget(self._build_methods_box())
        layout.addLayout(self._build_seeds_row())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("Not started")
        layout.addWidget(self.progress)
        layout.addLayout(self._build_saved_row())
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.verdict.setObjectName("banner")
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.verdict)
        layout.addWidget(self._build_table_and_chart(), 1)
        layout.addLayout(self._build_notes_row())

    def _build_header(self) -> StartStopHeader:
        self.header = StartStopHeader(
            "Compare",
            "Train DisCoM-KD, single-modality baselines and ablations on the same random splits, with the "
            "data and settings of the Configure page. Methods that need paired data are skipped on unpaired data.",
            "Run comparison",
        )
        self.start_button, self.stop_button = self.header.start_button, self.header.stop_button
        self.start_button.clicked.connect(self.start_requested)
        self.stop_button.clicked.connect(self.stop)
        return self.header

    def _build_methods_box(self) -> QGroupBox:
        """Empty until first shown (``ensure_methods``): the list comes from the engine, which loads PyTorch."""
        self.methods_box = QGroupBox("Methods")
        self.methods_grid = QGridLayout(self.methods_box)
        self.methods_grid.setVerticalSpacing(0)
        self.methods_grid.setContentsMargins(8, 2, 8, 2)
        return self.methods_box

    def _build_seeds_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel("Random splits (seeds)"))
        self.seeds = QSpinBox()
        self.seeds.setRange(1, 20)
        self.seeds.setValue(5)
        self.seeds.setToolTip("Each seed is a different train/validation/test split, the same for every method; "
                              "the differences to the student alone are paired by seed. Use 5 or more. Every method "
                              "trains for the Configure page's epochs on each seed; compare at convergence: a warning "
                              "says when a best epoch falls in the last 20% of the epochs.")
        row.addWidget(self.seeds)
        # One line for the repetitions and the time estimate, so the table and chart keep their height.
        self.estimate = QLabel("Every method trains for the Configure page's epochs on each seed; the time it will "
                               "take is estimated from your earlier trainings of the same data when you start.")
        self.estimate.setWordWrap(True)
        self.estimate.setObjectName("hint")
        row.addWidget(self.estimate, 1)
        return row

    def _build_saved_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel("Saved comparisons"))
        self.saved_combo = QComboBox()
        self.saved_combo.setPlaceholderText("Choose an earlier comparison to show it")
        self.saved_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.saved_combo.setMinimumContentsLength(30)
        self.saved_combo.activated.connect(self._on_saved_chosen)
        row.addWidget(self.saved_combo, 1)
        self.saved_label = QLabel("")
        self.saved_label.setObjectName("hint")
        self.saved_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.saved_label, 2)
        return row

    def _build_table_and_chart(self) -> QSplitter:
        self.table = read_only_table(["Method", "Modality", "Unlabelled recordings", "Weighted F1 (mean ± std)", "Accuracy (mean ± std)",
                                      "Δ to student alone, F1 points (95% CI; p)", "Verdict", "Runs",
                                      "Best epochs", "Time per seed (s)"], stretch_column=0)
        self.table.setToolTip("Δ: the method's test weighted F1 minus the student alone's, on the same split, "
                              "averaged over seeds, with a 95% t-interval and the Wilcoxon signed-rank p-value. "
                              "Verdict: helps / hurts when the interval lies above / below 0, otherwise no evidence.")
        self.table.setSortingEnabled(True)
        self.chart = ComparisonChart()
        self.table.setMinimumHeight(115)  # the header and three rows
        self.chart.setMinimumHeight(125)
        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        split.addWidget(self.table)
        split.addWidget(self.chart)
        split.setSizes([240, 240])
        return split

    def _build_notes_row(self) -> QHBoxLayout:
        """What was skipped or needs care (one line, details in its tooltip), and the Markdown copy."""
        row = QHBoxLayout()
        self.skipped = QLabel("")
        self.skipped.setWordWrap(True)
        self.skipped.setObjectName("hint")
        row.addWidget(self.skipped, 1)
        self.copy_button = QPushButton("Copy as Markdown")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy_markdown)
        row.addWidget(self.copy_button)
        return row

    def showEvent(self, event) -> None:
        self.ensure_methods()
        self.refresh_saved()
        super().showEvent(event)

    def refresh_saved(self, select: Path | None = None) -> None:
        """List the saved comparisons; ``select`` (a folder) becomes the current entry without reloading it."""
        current = Path(self.saved_combo.currentData()) if select is None and self.saved_combo.currentData() else select
        self.saved_combo.blockSignals(True)
        self.saved_combo.clear()
        for folder in saved_comparisons():
            self.saved_combo.addItem(folder.name, str(folder))
            self.saved_combo.setItemData(self.saved_combo.count() - 1, str(folder), Qt.ItemDataRole.ToolTipRole)
        self.saved_combo.setCurrentIndex(self.saved_combo.findData(str(current)) if current else -1)
        self.saved_combo.blockSignals(False)

    def _on_saved_chosen(self, index: int) -> None:
        folder = self.saved_combo.itemData(index)
        if folder:
            self.show_saved(Path(folder))

    def show_saved(self, folder: Path) -> None:
        """Show a comparison saved earlier (read back by the engine)."""
        from discomkd.errors import DisComKDError
        from discomkd.training.compare import read_comparison

        try:
            result = read_comparison(folder)
        except DisComKDError as exc:
            self.error.emit(str(exc), "")
            return
        self.show_result(result)
        self.saved_label.setText(f"Showing {folder}")

    def ensure_methods(self) -> None:
        """Fill the method list on first show (the compare module loads PyTorch)."""
        if self.method_boxes:
            return
        from discomkd.training.compare import METHODS

        for i, (method, label) in enumerate(METHODS.items()):
            box = QCheckBox(label)
            box.setChecked(method in DEFAULT_CHOICE)
            self.method_boxes[method] = box
            self.methods_grid.addWidget(box, i // 3, i % 3)

    def selected_methods(self) -> list[str]:
        self.ensure_methods()
        return [m for m, b in self.method_boxes.items() if b.isChecked()]

    def is_running(self) -> bool:
        return self.job is not None and self.job.is_running()

    def start(self, config) -> Job | None:
        methods = self.selected_methods()
        if not methods:
            self.error.emit("Choose at least one method to compare.", "")
            return None
        seeds = self.seeds.value()
        from discomkd.errors import OutputPathError
        from discomkd.storage.outputs import check_output_folder

        try:  # before any work: a comparison that cannot be kept must not run for an hour first
            check_output_folder(comparisons_dir(), [m.folder for m in config.modalities],
                                what="the folder that keeps comparisons")
        except OutputPathError as exc:
            self.error.emit(f"{exc} (Comparisons are kept beside the runs; DISCOMKD_DATA_DIR moves them.)", "")
            return None
        if not self._confirm_duration(config, methods, seeds):
            return None
        self.table.setRowCount(0)
        self.chart.set_rows([])
        self.skipped.setText("")
        self.verdict.setText("")
        self.saved_label.setText("")
        self.saved_combo.setCurrentIndex(-1)
        self.progress.setValue(0)
        self.progress.setFormat("Reading the data…")
        self._started_at = time.monotonic()
        self.job = start_job(self, "compare", lambda state: run_comparison_job(state, config, methods, seeds),
                             on_progress=self._on_progress, on_result=self._on_result, on_error=self._on_failed,
                             controls=self.header)
        return self.job

    def _confirm_duration(self, config, methods: list[str], seeds: int) -> bool:
        """Say how long the comparison will take (from earlier trainings of the same data on this
        device), and ask before one that takes longer than half an hour."""
        from discomkd.training.compare import comparison_trainings, past_epoch_seconds

        trainings = comparison_trainings(methods, seeds)
        plan = f"{trainings} trainings × {config.epochs} epochs"
        per_epoch = past_epoch_seconds(config)
        if per_epoch is None:
            self.estimate.setText(f"{plan}. No earlier training of this data on this device to time it by: the "
                                  "time left shows in the progress bar once the first steps have run.")
            return True
        total = trainings * config.epochs * per_epoch
        self.estimate.setText(f"Estimate: about {duration_text(total)} ({plan} at {per_epoch:.1f} s per epoch, "
                              "measured on your earlier trainings of this data; the student alone and deep mutual "
                              "learning train one encoder per modality and go faster).")
        if total <= LONG_COMPARISON_S:
            return True
        answer = QMessageBox.question(
            self, "A long comparison",
            f"This comparison will take about {duration_text(total)} on this computer ({plan}).\n\n"
            "Fewer seeds, methods or epochs make it shorter. Start it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def stop(self) -> None:
        if self.is_running():
            self.job.request_stop()
            self.stop_button.setEnabled(False)
            self.progress.setFormat("Stopping after the current run…")

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        left = ""
        if fraction > 0.001 and self._started_at is not None:
            elapsed = time.monotonic() - self._started_at
            left = f" · about {duration_text(elapsed * (1 - fraction) / fraction)} left"
        self.progress.setFormat((message + left).replace("%", "%%"))

    def _on_result(self, result) -> None:
        self.show_result(result)
        self.progress.setValue(1000)
        self.progress.setFormat(f"Done in {result.wall_time_s:.0f} s" + (" (stopped)" if result.stopped else ""))
        self.save(result)
        self.comparison_finished.emit(result)

    def save(self, result) -> Path | None:
        """Keep a finished comparison with the runs; one without any finished run (stopped during its
        first run) is not kept."""
        if not result.rows:
            return None
        names = [m["name"] for m in result.settings.get("config", {}).get("modalities", [])]
        folder = new_comparison_folder(names or list(dict.fromkeys(r["modality"] for r in result.rows)))
        from discomkd.errors import DisComKDError

        try:
            result.write(folder)
        except (DisComKDError, OSError) as exc:
            self.saved_label.setText("")
            self.error.emit(f"The comparison could not be saved in '{folder}': {getattr(exc, 'strerror', None) or exc}.", "")
            return None
        self.saved_folder = folder
        self.saved_label.setText(f"Saved in {folder}")
        self.refresh_saved(select=folder)
        return folder

    def show_result(self, result) -> None:
        """Fill the table, the chart and the notes from a ComparisonResult."""
        from discomkd.training.compare import METHODS, difference_text

        self.result = result
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(result.rows))
        for r, row in enumerate(result.rows):
            best_epochs, listed = best_epochs_cell(row.get("best_epoch_text", ""))
            cells = [row.get("label") or METHODS.get(row["method"], row["method"]), row["modality"],
                     "yes" if row.get("unlabelled") else "no", f"{row['wf1_mean']:.3f} ± {row['wf1_std']:.3f}", f"{row['acc_mean']:.3f} ± {row['acc_std']:.3f}",
                     difference_text(row), row.get("verdict", ""), row.get("n_runs", ""),
                     best_epochs, round(float(row["time_s"]), 1)]
            for c, v in enumerate(cells):
                self.table.setItem(r, c, table_item(v))
            if listed:
                self.table.item(r, BEST_EPOCHS_COLUMN).setToolTip(listed)
        self.table.setSortingEnabled(True)
        self.verdict.setText(verdict_text(result))
        lines = [result.unlabelled_line()] if result.unlabelled_line() else []
        lines += [f"{METHODS.get(m, m)} skipped: {why}" for m, why in result.skipped.items()]
        warnings = result.warnings
        if len(warnings) > 1:  # one line here, the list in the tooltip, so the table keeps its room
            lines.append(f"Convergence: {len(warnings)} rows were still improving at the end on some seed (best "
                         "epoch in the last 20% of the epochs, which gained more than a point; hover for the list); "
                         "train longer before trusting them.")
        else:
            lines += warnings
        self.skipped.setToolTip("\n".join(warnings))
        if result.stopped:
            lines.append("Stopped early: runs cut short are not in the table.")
        self.skipped.setText("\n".join(lines))
        self.copy_button.setEnabled(bool(result.rows))
        self.chart.set_rows(result.rows)

    def _on_failed(self, message: str, details: str) -> None:
        self.progress.setFormat("Failed")
        self.error.emit(message, details)

    def copy_markdown(self) -> None:
        if self.result is not None:
            QApplication.clipboard().setText(self.result.to_markdown())

"""Compare page: DisCoM-KD against baselines and ablations over several random splits."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..jobs import Job, TaskState
from .common import page_header, read_only_table, table_item

DEFAULT_CHOICE = ("discomkd", "student", "dml")


def run_comparison_job(state: TaskState, config, methods: list[str], seeds: int):
    from discomkd.compare import run_comparison

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
        self.method_boxes: dict[str, QCheckBox] = {}
        layout = QVBoxLayout(self)
        header, buttons = page_header(
            "Compare",
            "Train DisCoM-KD, single-modality baselines and ablations on the same random splits, with the "
            "data and settings of the Configure page. Methods that need paired data are skipped on unpaired data.",
        )
        self.start_button = QPushButton("Run comparison")
        self.start_button.setObjectName("primary")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("danger")
        self.stop_button.setEnabled(False)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        layout.addWidget(header)

        options = QHBoxLayout()
        self.methods_box = QGroupBox("Methods")
        self.methods_grid = QGridLayout(self.methods_box)
        options.addWidget(self.methods_box, 3)
        seeds_box = QGroupBox("Repetitions")
        sl = QVBoxLayout(seeds_box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Random splits (seeds)"))
        self.seeds = QSpinBox()
        self.seeds.setRange(1, 20)
        self.seeds.setValue(3)
        self.seeds.setToolTip("Each seed is a different train/validation/test split; the table shows mean ± std.")
        row.addWidget(self.seeds)
        sl.addLayout(row)
        note = QLabel("Every method trains for the Configure page's epochs on each seed.")
        note.setWordWrap(True)
        note.setObjectName("hint")
        sl.addWidget(note)
        sl.addStretch(1)
        options.addWidget(seeds_box, 1)
        layout.addLayout(options)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("Not started")
        layout.addWidget(self.progress)
        self.table = read_only_table(["Method", "Modality", "Weighted F1 (mean ± std)", "Accuracy (mean ± std)",
                                      "Runs", "Time per seed (s)"], stretch_column=0)
        self.table.setSortingEnabled(True)
        layout.addWidget(self.table, 1)
        bottom = QHBoxLayout()
        self.skipped = QLabel("")
        self.skipped.setWordWrap(True)
        self.skipped.setObjectName("hint")
        bottom.addWidget(self.skipped, 1)
        self.copy_button = QPushButton("Copy as Markdown")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy_markdown)
        bottom.addWidget(self.copy_button)
        layout.addLayout(bottom)

        self.start_button.clicked.connect(self.start_requested)
        self.stop_button.clicked.connect(self.stop)

    def showEvent(self, event) -> None:
        self.ensure_methods()
        super().showEvent(event)

    def ensure_methods(self) -> None:
        """Fill the method list on first show (the compare module loads PyTorch)."""
        if self.method_boxes:
            return
        from discomkd.compare import METHODS

        for i, (method, label) in enumerate(METHODS.items()):
            box = QCheckBox(label)
            box.setChecked(method in DEFAULT_CHOICE)
            self.method_boxes[method] = box
            self.methods_grid.addWidget(box, i % 5, i // 5)

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
        self.table.setRowCount(0)
        self.skipped.setText("")
        self.job = Job(lambda state: run_comparison_job(state, config, methods, seeds), "compare")
        self.job.progress.connect(self._on_progress)
        self.job.succeeded.connect(self._on_result)
        self.job.failed.connect(self._on_failed)
        self.job.finished.connect(self._on_finished)
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setFormat("Reading the data…")
        self.job.start()
        return self.job

    def stop(self) -> None:
        if self.is_running():
            self.job.request_stop()
            self.stop_button.setEnabled(False)
            self.progress.setFormat("Stopping after the current run…")

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.progress.setFormat(message.replace("%", "%%"))

    def _on_result(self, result) -> None:
        from discomkd.compare import METHODS

        self.result = result
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(result.rows))
        for r, row in enumerate(result.rows):
            cells = [row.get("label") or METHODS.get(row["method"], row["method"]), row["modality"],
                     f"{row['wf1_mean']:.3f} ± {row['wf1_std']:.3f}", f"{row['acc_mean']:.3f} ± {row['acc_std']:.3f}",
                     row.get("n_runs", ""), round(float(row["time_s"]), 1)]
            for c, v in enumerate(cells):
                self.table.setItem(r, c, table_item(v))
        self.table.setSortingEnabled(True)
        lines = [f"{METHODS.get(m, m)} skipped: {why}" for m, why in result.skipped.items()]
        if result.stopped:
            lines.append("Stopped early: runs cut short are not in the table.")
        self.skipped.setText("\n".join(lines))
        self.copy_button.setEnabled(bool(result.rows))
        self.progress.setValue(1000)
        self.progress.setFormat(f"Done in {result.wall_time_s:.0f} s" + (" (stopped)" if result.stopped else ""))
        self.comparison_finished.emit(result)

    def _on_failed(self, message: str, details: str) -> None:
        self.progress.setFormat("Failed")
        self.error.emit(message, details)

    def _on_finished(self) -> None:
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def copy_markdown(self) -> None:
        if self.result is not None:
            QApplication.clipboard().setText(self.result.to_markdown())

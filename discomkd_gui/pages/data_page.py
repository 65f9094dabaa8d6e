"""Data page: add modality folders (dialog or drop), see what each holds, and whether they pair."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..jobs import Job, TaskState, start_job
from ..widgets.drop_zone import DropZone
from ..widgets.thumbnails import thumbnail_pixmap
from .common import PageHeader, read_only_table, table_item

MAX_THUMBNAILS = 10
KIND_TEXT = {"image": "image", "audio": "audio (spectrogram)", "signal": "signal (C × L, 1-D network)"}


@dataclass
class ScanResult:
    """What the page keeps of a scanned modality: the decoded data without its arrays, and thumbnails."""

    data: object  # discomkd.data.dataset.ModalityData with an empty x (the arrays stay in the engine's cache)
    thumbnails: list[tuple[str, object]] = field(default_factory=list)  # (class, Thumbnail)


@dataclass
class ModalityEntry:
    name: str
    folder: str
    status: str = "scanning"  # "scanning", "ready", "failed"
    message: str = ""
    result: ScanResult | None = None
    job: Job | None = None
    overrides: dict = field(default_factory=dict)  # the user's choices for this folder (e.g. its kind)
    kind_options: tuple[str, ...] = ()  # from the last successful scan, so a failed choice can be undone
    kind_guess: str = ""

    @property
    def data(self):
        return self.result.data if self.result else None


def scan_modality(state: TaskState, folder: str, name: str, overrides: dict | None = None) -> ScanResult | None:
    """Job: decode (and cache) one modality folder, then make a thumbnail per class."""
    import numpy as np

    from discomkd.data.load import load_modality
    from discomkd.data.preview import thumbnail
    from discomkd.errors import Cancelled, DataError

    def progress(done: int, total: int) -> None:
        state.set_progress(done / max(1, total), f"Reading '{name}': {done} of {total} files")

    try:
        data = load_modality(folder, name, dict(overrides or {}), progress, state.stop.is_set)
    except Cancelled:
        return None
    thumbs = []
    for k, cls in enumerate(data.classes[:MAX_THUMBNAILS]):
        where = np.flatnonzero(data.labels == k)
        if where.size == 0:
            continue
        try:
            thumbs.append((cls, thumbnail(Path(data.folder) / data.files[int(where[0])], data.spec.spectrogram,
                                          data.spec.bands, data.spec.kind)))
        except DataError:
            continue
    slim = replace(data, x=np.empty((0,), dtype=np.float32))  # the page needs counts, not tensors
    return ScanResult(slim, thumbs)


def kind_text(data) -> str:
    """How a scanned modality's files are read, and whether that was detected or chosen."""
    spec = data.spec
    how = spec.describe() + f" · default augmentation: {spec.augmentation}"
    if data.kind_reason and spec.kind == data.kind_guess:
        how += f"\nDetected from the files: {data.kind_reason}."
    elif spec.kind != data.kind_guess:
        how += f"\nYour choice (detected: {data.kind_guess})."
    return how


def files_text(data) -> str:
    """Usable, unlabelled and skipped files, whether they came from the cache, and the scan's notices."""
    cached = " (read from the cache)" if getattr(data, "from_cache", False) else ""
    if data.cache_note:
        cached += f" — {data.cache_note}"
    unlabelled = f", {len(data.unlabelled_files)} unlabelled" if data.unlabelled_files else ""
    return (f"{len(data.files)} usable files in {len(data.classes)} classes{unlabelled}, "
            f"{len(data.skipped)} skipped{cached}" + "".join(f"\n{n}" for n in data.notices))


def thumbnail_cell(cls: str, thumb) -> QWidget:
    """A class's sample: its picture (described in the tooltip) above the class name."""
    cell = QWidget()
    v = QVBoxLayout(cell)
    v.setContentsMargins(2, 2, 2, 2)
    v.setSpacing(2)
    pic = QLabel()
    pic.setPixmap(thumbnail_pixmap(thumb, 96))
    pic.setAlignment(Qt.AlignmentFlag.AlignCenter)
    pic.setToolTip(thumb.description)
    pic.setObjectName("thumbnail")
    caption = QLabel(cls)
    caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
    v.addWidget(pic)
    v.addWidget(caption)
    return cell


class DataPage(QWidget):
    """Holds the list of modalities. ``modalities_changed`` fires on add, remove, rename and scan end."""

    modalities_changed = Signal()
    error = Signal(str, str)
    busy_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entries: list[ModalityEntry] = []
        self.last_folder = str(Path.home())
        self._locked = False

        layout = QVBoxLayout(self)
        layout.addWidget(self._build_header())
        self.summary = QLabel("No modality yet. Add at least two modality folders, or try the demo data.")
        self.summary.setObjectName("banner")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_modality_list())
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(6, 0, 0, 0)
        right_layout.addWidget(self._build_details_box())
        right_layout.addWidget(self._build_thumbnails_box())
        right_layout.addWidget(self._build_file_tables(), 1)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([300, 900])
        layout.addWidget(splitter, 1)
        self._show_details(-1)

    def _build_header(self) -> PageHeader:
        header = PageHeader(
            "Data",
            "Add one folder per modality (sensor). Each folder holds one sub-folder per class; class "
            "folders are matched across modalities by name. Files need not be paired; recordings you have "
            "not labelled go into an _unlabelled sub-folder, named alike in every modality.",
        )
        self.add_button = QPushButton("Add modality folder…")
        self.add_button.setObjectName("primary")
        self.add_button.setToolTip("Choose a folder with one sub-folder per class (Ctrl+Shift+O)")
        self.demo_button = QPushButton("Add demo data")
        self.demo_button.setToolTip("Handwritten digits (images) and spoken digits (audio), unpaired, 10 classes")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setEnabled(False)
        for b in (self.demo_button, self.remove_button, self.add_button):
            header.buttons.addWidget(b)
        self.add_button.clicked.connect(self.choose_folder)
        self.demo_button.clicked.connect(self.add_demo)
        self.remove_button.clicked.connect(self.remove_current)
        return header

    def _build_modality_list(self) -> QWidget:
        """The modalities added so far, and a drop zone for more."""
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("<b>Modalities</b>"))
        self.list = QListWidget()
        self.list.setObjectName("modalityList")
        self.list.currentRowChanged.connect(self._show_details)
        left_layout.addWidget(self.list, 1)
        self.drop_zone = DropZone("Drop modality folders here", "one folder per modality")
        self.drop_zone.dropped.connect(self._on_dropped)
        left_layout.addWidget(self.drop_zone)
        return left

    def _build_details_box(self) -> QGroupBox:
        """The chosen modality: its name (editable), folder, kind (a choice where the files allow one), files."""
        details = QGroupBox("Modality")
        form_row = QHBoxLayout(details)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.name_edit = QLineEdit()
        self.name_edit.setToolTip("The modality's name, used in the model and at prediction time")
        self.name_edit.editingFinished.connect(self._rename_current)
        self.folder_label = QLabel()
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder_label.setWordWrap(True)
        self.files_label = QLabel()
        self.files_label.setWordWrap(True)  # notices (merged class folders) can be long
        form.addRow("Name", self.name_edit)
        form.addRow("Folder", self.folder_label)
        form.addRow("Kind", self._kind_row())
        form.addRow("Files", self.files_label)
        form_row.addLayout(form, 1)
        return details

    def _kind_row(self) -> QHBoxLayout:
        self.kind_combo = QComboBox()
        self.kind_combo.setObjectName("kindChooser")
        self.kind_combo.setToolTip(
            "How the files are read. A 2-D .npy array can be a single-channel image (H × W) or a "
            "multichannel signal (C channels × L samples, e.g. motion capture or EEG); the guess comes from "
            "all sampled files. Changing it reads the folder again.")
        self.kind_combo.activated.connect(self._kind_chosen)
        self.kind_label = QLabel()
        self.kind_label.setWordWrap(True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.kind_combo)
        row.addWidget(self.kind_label, 1)
        return row

    def _build_thumbnails_box(self) -> QGroupBox:
        """One sample per class, in a row that scrolls sideways (filled by ``_show_details``)."""
        box = QGroupBox("Samples (one per class)")
        box_layout = QVBoxLayout(box)
        self.thumb_area = QScrollArea()
        self.thumb_area.setWidgetResizable(True)
        self.thumb_area.setFrameShape(QFrame.Shape.NoFrame)
        self.thumb_area.setFixedHeight(138)
        self.thumb_holder = QWidget()
        self.thumb_row = QHBoxLayout(self.thumb_holder)
        self.thumb_row.setContentsMargins(0, 0, 0, 0)
        self.thumb_row.addStretch(1)
        self.thumb_area.setWidget(self.thumb_holder)
        box_layout.addWidget(self.thumb_area)
        return box

    def _build_file_tables(self) -> QTabWidget:
        self.tabs = QTabWidget()
        self.class_table = read_only_table(["Class"], stretch_column=None)
        self.class_table.setSortingEnabled(True)
        self.skipped_table = read_only_table(["File", "Reason"], stretch_column=1)
        self.tabs.addTab(self.class_table, "Files per class")
        self.tabs.addTab(self.skipped_table, "Skipped files")
        return self.tabs

    # ----- adding and removing -------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a modality folder (one sub-folder per class)", self.last_folder)
        if folder:
            self.add_folder(folder)

    def add_demo(self) -> None:
        from discomkd.storage.paths import demo_modalities

        for name, folder in demo_modalities().items():
            if not any(Path(e.folder) == Path(folder) for e in self.entries):
                self.add_folder(str(folder), name)

    def _on_dropped(self, paths: list[str]) -> None:
        folders = [p for p in paths if Path(p).is_dir()]
        if not folders:
            self.error.emit("Drop folders here, not files: each modality is a folder with one sub-folder per class.", "")
        for folder in folders:
            self.add_folder(folder)

    def _unique_name(self, name: str) -> str:
        taken = {e.name for e in self.entries}
        if name not in taken:
            return name
        n = 2
        while f"{name}-{n}" in taken:
            n += 1
        return f"{name}-{n}"

    def add_folder(self, folder: str, name: str | None = None, overrides: dict | None = None) -> ModalityEntry | None:
        from discomkd.storage.paths import printable_name

        if self._locked:
            return None
        if not str(folder).strip():  # Path("") would be the current folder, read whole by accident
            self.error.emit("No folder was given (the path is empty). Choose a modality folder.", "")
            return None
        folder = str(Path(folder))
        if any(Path(e.folder) == Path(folder) for e in self.entries):
            self.error.emit(f"'{printable_name(folder)}' is already a modality.", "")
            return None
        self.last_folder = str(Path(folder).parent)
        default_name = printable_name(Path(folder).name) or "modality"
        entry = ModalityEntry(self._unique_name(name or default_name), folder, overrides=dict(overrides or {}))
        self.entries.append(entry)
        item = QListWidgetItem()
        self.list.addItem(item)
        self.list.setCurrentRow(len(self.entries) - 1)
        self._scan(entry)
        return entry

    def _scan(self, entry: ModalityEntry) -> None:
        """Read (or read again, after a change of kind) one modality folder in the background."""
        entry.status, entry.message = "scanning", ""
        self._refresh_item(entry)
        self._show_details(self.list.currentRow())
        entry.job = start_job(
            self, "scan", lambda state, f=entry.folder, n=entry.name, o=dict(entry.overrides): scan_modality(state, f, n, o),
            on_progress=self._on_progress, on_result=lambda result, e=entry: self._on_scanned(e, result),
            on_error=lambda message, details, e=entry: self._on_scan_failed(e, message, details),
            on_done=self._on_job_finished)
        self.progress.setVisible(True)
        self.progress.setValue(0)
        self.busy_changed.emit(True)
        self.modalities_changed.emit()

    def set_kind(self, name: str, kind: str | None) -> None:
        """Read a modality as another kind (None: as detected); its folder is read again."""
        entry = self.entry(name)
        if entry is None or self._locked or (entry.job is not None and entry.job.is_running()):
            return
        if kind and kind != entry.kind_guess:
            entry.overrides["kind"] = kind
        else:
            entry.overrides.pop("kind", None)
        self._scan(entry)

    def _kind_chosen(self, index: int) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.entries):
            self.set_kind(self.entries[row].name, self.kind_combo.itemData(index))

    def remove_current(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.entries) and not self._locked:
            self.remove_modality(self.entries[row].name)

    def remove_modality(self, name: str) -> None:
        for row, entry in enumerate(self.entries):
            if entry.name == name:
                if entry.job and entry.job.is_running():
                    entry.job.request_stop()
                self.entries.pop(row)
                self.list.takeItem(row)
                break
        self._update_summary()
        self._show_details(self.list.currentRow())
        self.modalities_changed.emit()

    def clear(self) -> None:
        for entry in list(self.entries):
            self.remove_modality(entry.name)

    # ----- scan results ----------------------------------------------------------------------
    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 100))
        self.progress.setFormat(message or "%p%")

    def _on_scanned(self, entry: ModalityEntry, result: ScanResult | None) -> None:
        if entry not in self.entries:
            return
        if result is None:
            entry.status, entry.message = "failed", "Scan cancelled."
        else:
            entry.status, entry.result = "ready", result
            entry.kind_options, entry.kind_guess = result.data.kind_options, result.data.kind_guess
        self._after_scan(entry)

    def _on_scan_failed(self, entry: ModalityEntry, message: str, details: str) -> None:
        if entry not in self.entries:
            return
        entry.status, entry.message = "failed", message
        self._after_scan(entry)
        self.error.emit(message, details)

    def _after_scan(self, entry: ModalityEntry) -> None:
        self._refresh_item(entry)
        self._update_summary()
        if self.list.currentRow() == self.entries.index(entry):
            self._show_details(self.entries.index(entry))
        self.modalities_changed.emit()

    def _on_job_finished(self) -> None:
        if not self.is_busy():
            self.progress.setVisible(False)
            self.busy_changed.emit(False)

    def is_busy(self) -> bool:
        return any(e.job is not None and e.job.is_running() for e in self.entries)

    # ----- what the other pages read ----------------------------------------------------------
    def ready_entries(self) -> list[ModalityEntry]:
        return [e for e in self.entries if e.status == "ready"]

    def entry(self, name: str) -> ModalityEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def set_locked(self, locked: bool) -> None:
        """While training, the data set cannot change."""
        self._locked = locked
        for w in (self.add_button, self.demo_button, self.name_edit, self.drop_zone):
            w.setEnabled(not locked)
        self._fill_kind_chooser(self.entries[self.list.currentRow()] if 0 <= self.list.currentRow() < len(self.entries) else None)
        self.remove_button.setEnabled(not locked and self.list.currentRow() >= 0)

    # ----- display -------------------------------------------------------------------------
    def _refresh_item(self, entry: ModalityEntry) -> None:
        item = self.list.item(self.entries.index(entry))
        if entry.status == "scanning":
            text = f"{entry.name}\nreading…"
        elif entry.status == "failed":
            text = f"{entry.name}\n⚠ {entry.message[:60]}"
        else:
            d = entry.data
            text = f"{entry.name}\n{d.spec.kind} · {len(d.files)} files · {len(d.classes)} classes"
        from discomkd.storage.paths import printable_name

        item.setText(text)
        item.setToolTip(printable_name(entry.folder) if entry.status != "failed" else entry.message)

    def _update_summary(self) -> None:
        ready = self.ready_entries()
        if not self.entries:
            self.summary.setText("No modality yet. Add at least two modality folders, or try the demo data.")
            self.summary.setProperty("level", "info")
        elif len(ready) < 2:
            self.summary.setText(f"{len(ready)} modality ready. DisCoM-KD needs at least two modalities.")
            self.summary.setProperty("level", "warn")
        else:
            from discomkd.data.dataset import combine_modalities, unlabelled_dropped_text
            from discomkd.errors import DataError

            try:
                report = combine_modalities([e.data for e in ready]).report
            except DataError as exc:
                self.summary.setText(str(exc))
                self.summary.setProperty("level", "error")
            else:
                gaps = [f"{n} lacks {', '.join(c)}" for n, c in report.missing.items() if c]
                skipped = sum(len(s) for s in report.skipped.values())
                text = (f"✓ Ready to train: {len(ready)} modalities, {len(report.classes)} classes. "
                        f"Pairing — {report.pairing.detail}.")
                if report.unlabelled_pairs:
                    text += (f" {report.unlabelled_pairs} unlabelled recordings in every modality's _unlabelled "
                             "folder: the better-validated modality teaches the others on them.")
                if report.unlabelled_unused_text():
                    text += " " + report.unlabelled_unused_text()
                if report.unlabelled_dropped:
                    text += " " + unlabelled_dropped_text(report.unlabelled_dropped)
                if skipped:
                    text += f" {skipped} file(s) skipped (see each modality)."
                if gaps:
                    text += " Missing classes: " + "; ".join(gaps) + "."
                self.summary.setText(text)
                self.summary.setProperty("level", "warn" if gaps or report.unlabelled_dropped
                                         or report.unlabelled_unused_text() else "ok")
        self.summary.style().unpolish(self.summary)
        self.summary.style().polish(self.summary)
        self._fill_class_table()

    def _fill_class_table(self) -> None:
        ready = self.ready_entries()
        classes: list[str] = []
        for e in ready:
            classes.extend(c for c in e.data.classes if c not in classes)
        from discomkd.data.dataset import natural_class_order

        classes = natural_class_order(classes)
        table = self.class_table
        table.setSortingEnabled(False)
        table.clear()
        table.setColumnCount(1 + len(ready))
        table.setHorizontalHeaderLabels(["Class"] + [f"{e.name} (files)" for e in ready])
        table.setRowCount(len(classes))
        for r, cls in enumerate(classes):
            table.setItem(r, 0, table_item(cls))
            for c, e in enumerate(ready):
                count = e.data.class_counts.get(cls)
                item = table_item(count if count is not None else "missing", align_right=True)
                if count is None:
                    item.setForeground(Qt.GlobalColor.red)
                table.setItem(r, 1 + c, item)
        table.setSortingEnabled(True)

    def _show_details(self, row: int) -> None:
        entry = self.entries[row] if 0 <= row < len(self.entries) else None
        self.remove_button.setEnabled(entry is not None and not self._locked)
        self.name_edit.setEnabled(entry is not None and not self._locked)
        from discomkd.storage.paths import printable_name

        self.name_edit.setText(entry.name if entry else "")
        self.folder_label.setText(printable_name(entry.folder) if entry else "—")
        self._fill_kind_chooser(entry)
        while self.thumb_row.count() > 1:
            w = self.thumb_row.takeAt(0).widget()
            if w:
                w.deleteLater()
        self.skipped_table.setRowCount(0)
        if entry is None or entry.status != "ready":
            self.kind_label.setText("reading…" if entry and entry.status == "scanning" else (entry.message if entry else ""))
            self.files_label.setText("—")
            self.tabs.setTabText(1, "Skipped files")
            return
        self.kind_label.setText(kind_text(entry.data))
        self.files_label.setText(files_text(entry.data))
        for cls, thumb in entry.result.thumbnails:
            self.thumb_row.insertWidget(self.thumb_row.count() - 1, thumbnail_cell(cls, thumb))
        skipped = entry.data.skipped
        self.skipped_table.setRowCount(len(skipped))
        for r, s in enumerate(skipped):
            self.skipped_table.setItem(r, 0, table_item(printable_name(s.path)))
            self.skipped_table.setItem(r, 1, table_item(s.reason))
        self.tabs.setTabText(1, f"Skipped files ({len(skipped)})")

    def _fill_kind_chooser(self, entry: ModalityEntry | None) -> None:
        """The kinds this folder's files can be read as; the current one selected, the detected one marked."""
        combo = self.kind_combo
        combo.blockSignals(True)
        combo.clear()
        current = entry.overrides.get("kind") or entry.kind_guess if entry else ""
        for kind in (entry.kind_options if entry else ()):
            combo.addItem(KIND_TEXT[kind] + (" — detected" if kind == entry.kind_guess else ""), kind)
        if entry is not None and current and combo.findData(current) < 0:
            combo.addItem(KIND_TEXT.get(current, current), current)
        combo.setCurrentIndex(max(0, combo.findData(current)))
        combo.blockSignals(False)
        busy = entry is None or entry.status == "scanning"
        combo.setEnabled(not busy and not self._locked)
        combo.setVisible(combo.count() > 1)  # a choice only where the files allow one (2-D .npy arrays)

    def _rename_current(self) -> None:
        row = self.list.currentRow()
        if not (0 <= row < len(self.entries)):
            return
        entry = self.entries[row]
        new = self.name_edit.text().strip()
        if new == entry.name:
            return
        if not new or any(e.name == new for e in self.entries if e is not entry):
            self.name_edit.setText(entry.name)
            self.error.emit(f"'{new}' cannot be used: each modality needs its own, non-empty name.", "")
            return
        entry.name = new
        if entry.result is not None:
            entry.result.data = replace(entry.data, name=new, spec=replace(entry.data.spec, name=new))
        self._refresh_item(entry)
        self._update_summary()
        self.modalities_changed.emit()

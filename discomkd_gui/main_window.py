"""The main window: a sidebar of pages, menus and shortcuts, status bar, remembered settings."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from PySide6.QtCore import QByteArray, QEvent, QSettings, QSize, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from .dialogs import AboutDialog, show_error
from .jobs import Job, start_job
from .pages.compare_page import ComparePage
from .pages.configure_page import ConfigurePage
from .pages.data_page import DataPage
from .pages.predict_page import PredictPage
from .pages.results_page import ResultsPage
from .pages.runs_page import RunsPage
from .pages.train_page import TrainPage
from .resources import app_icon

DEFAULT_SIZE = QSize(1280, 820)
MINIMUM_SIZE = QSize(1024, 700)  # every page is laid out to work from here up (tests/gui/test_small_window.py)
STATUS_TIMEOUT_MS = 15000  # a message in the status bar goes after this long, or when the page changes
SETTINGS_VERSION = 1


def open_settings() -> QSettings:
    """Settings live beside the runs (``DISCOMKD_DATA_DIR`` moves both), in an INI file."""
    from discomkd.storage.paths import user_data_dir

    return QSettings(str(user_data_dir() / "settings.ini"), QSettings.Format.IniFormat)


def probe_devices(state) -> list[str]:
    """Job at start-up: import the heavy engine once (off the GUI thread) and list devices."""
    importlib.import_module("torch._dynamo")  # the optimisers import it on first use (~3 s holding the GIL): not mid-start

    from discomkd.training.trainer import available_devices

    return available_devices()


def torch_failure_message(message: str) -> str:
    """What the user reads when PyTorch cannot be imported: the import error itself (a missing
    library, a CPU or CUDA mismatch) and what to do, not only that it failed."""
    cause = message.removeprefix("Something went wrong: ").strip() or "unknown error"
    return (f"PyTorch could not be loaded, so training, prediction and export are unavailable.\n\n"
            f"The error was: {cause}\n\n"
            "Reinstall it in this environment (pip install --force-reinstall torch) or install the build "
            "for your computer from pytorch.org; the details below show where the import failed.")


class PageScrollArea(QScrollArea):
    """Holds a page: the page fills the window, and scrolls instead of being cut off when the
    window is smaller than the page's minimum size.

    QScrollArea's own resizing gives a page with word-wrapped labels its preferred height (height
    for width), which would make every page scroll; here the page gets the viewport's size, never
    less than its minimum.
    """

    def __init__(self, page_holder: QWidget) -> None:
        super().__init__()
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setWidgetResizable(False)
        self.setWidget(page_holder)
        page_holder.installEventFilter(self)

    def fit_page(self) -> None:
        holder = self.widget()
        minimum = holder.minimumSizeHint().expandedTo(holder.minimumSize())
        viewport = self.maximumViewportSize()  # the room without scroll bars
        size = minimum.expandedTo(viewport)
        if size.width() > viewport.width():  # a horizontal scroll bar takes height
            size.setHeight(max(minimum.height(), viewport.height() - self.horizontalScrollBar().sizeHint().height()))
        if size.height() > viewport.height():  # a vertical one takes width
            size.setWidth(max(minimum.width(), viewport.width() - self.verticalScrollBar().sizeHint().width()))
        if holder.size() != size:
            holder.resize(size)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit_page()

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.LayoutRequest:  # the page's minimum size may have changed
            QTimer.singleShot(0, self.fit_page)
        return super().eventFilter(watched, event)


class MainWindow(QMainWindow):
    PAGES = ("Data", "Configure", "Train", "Results", "Predict", "Runs", "Compare")

    devices_ready = Signal(list)

    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or open_settings()
        self.setWindowTitle("DisCoM-KD Studio")
        self.setWindowIcon(app_icon())
        self.setMinimumSize(MINIMUM_SIZE)
        self.resize(DEFAULT_SIZE)
        self._close_when_stopped = False
        self._device_job: Job | None = None
        self.error_boxes: list = []
        self.export_boxes: list = []

        self._create_pages()
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self._build_sidebar())
        row.addWidget(self._build_page_stack(), 1)
        self.setCentralWidget(central)
        self.sidebar.currentRowChanged.connect(self._page_changed)

        self._build_menus()
        self._connect_pages()
        # What runs now (training, export) stays on the right; messages on the left time out.
        self.activity = QLabel("")
        self.activity.setObjectName("activity")
        self.statusBar().addPermanentWidget(self.activity)
        self.statusBar().showMessage("Ready. Add modality folders on the Data page, or File → Add demo data.",
                                     STATUS_TIMEOUT_MS)
        self.restore_settings()
        self.sidebar.setCurrentRow(0)

    # ----- construction ---------------------------------------------------------------------
    def _create_pages(self) -> None:
        self.data_page = DataPage()
        self.configure_page = ConfigurePage()
        self.train_page = TrainPage()
        self.results_page = ResultsPage()
        self.predict_page = PredictPage()
        self.runs_page = RunsPage()
        self.compare_page = ComparePage()
        self.pages = {
            "Data": self.data_page, "Configure": self.configure_page, "Train": self.train_page,
            "Results": self.results_page, "Predict": self.predict_page, "Runs": self.runs_page,
            "Compare": self.compare_page,
        }

    def _build_sidebar(self) -> QWidget:
        """The application's name, the pages in the order of the work (numbered steps, then the tools), the device."""
        side = QWidget()
        side.setObjectName("sidebar")
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(8, 12, 8, 12)
        brand = QLabel("DisCoM-KD\nStudio")
        brand.setObjectName("brand")
        side_layout.addWidget(brand)
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("nav")
        self.sidebar.setFixedWidth(150)
        steps = {"Data": "1  Data", "Configure": "2  Configure", "Train": "3  Train", "Results": "4  Results",
                 "Predict": "5  Predict", "Runs": "    Runs", "Compare": "    Compare"}
        for name in self.PAGES:
            item = QListWidgetItem(steps[name])
            item.setToolTip(f"{name} (Ctrl+{self.PAGES.index(name) + 1})")
            self.sidebar.addItem(item)
        side_layout.addWidget(self.sidebar, 1)
        self.device_label = QLabel("")
        self.device_label.setObjectName("sidebarHint")
        self.device_label.setWordWrap(True)
        side_layout.addWidget(self.device_label)
        return side

    def _build_page_stack(self) -> QStackedWidget:
        """One page at a time, each in a scroll area that keeps it usable in a small window."""
        self.stack = QStackedWidget()
        self.stack.setObjectName("pages")
        for name in self.PAGES:
            holder = QWidget()
            v = QVBoxLayout(holder)
            v.setContentsMargins(16, 12, 16, 12)
            v.addWidget(self.pages[name])
            self.stack.addWidget(PageScrollArea(holder))
        return self.stack

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "Add modality folder…", self.data_page.choose_folder, "Ctrl+Shift+O",
                     "Add a folder with one sub-folder per class as a modality")
        self._action(file_menu, "Add demo data", self.data_page.add_demo, None, "Handwritten and spoken digits")
        file_menu.addSeparator()
        self._action(file_menu, "Open model…", self.choose_model, "Ctrl+Shift+M", "Open a .discomkd model file to predict with it")
        file_menu.addSeparator()
        self._action(file_menu, "Quit", self.close, QKeySequence.StandardKey.Quit)
        train_menu = bar.addMenu("&Training")
        self.start_action = self._action(train_menu, "Start training", self.start_training, "Ctrl+R")
        self.stop_action = self._action(train_menu, "Stop (keep the best model)", self.train_page.stop, "Ctrl+.")
        self.stop_action.setEnabled(False)
        view_menu = bar.addMenu("&View")
        for i, name in enumerate(self.PAGES):
            self._action(view_menu, name, lambda _=False, n=name: self.show_page(n), f"Ctrl+{i + 1}")
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "About DisCoM-KD Studio", self.show_about)

    def _connect_pages(self) -> None:
        for page in (self.data_page, self.train_page, self.results_page, self.predict_page, self.runs_page,
                     self.compare_page):
            page.error.connect(self.show_error)
        self.data_page.modalities_changed.connect(self._modalities_changed)
        self.train_page.start_requested.connect(self.start_training)
        self.train_page.training_active.connect(self._training_active)
        self.train_page.run_finished.connect(self._run_finished)
        self.predict_page.open_model_requested.connect(self.choose_model)
        self.runs_page.open_run.connect(self.open_run)
        self.runs_page.continue_run.connect(self.continue_run)
        self.runs_page.export_for_device.connect(self.export_for_device)
        self.results_page.export_for_device.connect(self.export_for_device)
        self.compare_page.start_requested.connect(self.start_comparison)

    # ----- pages ------------------------------------------------------------------------------
    def show_page(self, name: str) -> None:
        self.sidebar.setCurrentRow(self.PAGES.index(name))

    def current_page(self) -> str:
        return self.PAGES[self.stack.currentIndex()]

    def _page_changed(self, row: int) -> None:
        if row < 0:
            return
        self.stack.setCurrentIndex(row)
        self.statusBar().clearMessage()  # a message was about the page left
        if self.PAGES[row] == "Runs":
            self.runs_page.refresh()

    def show_error(self, message: str, details: str = "") -> None:
        self.statusBar().showMessage(message.splitlines()[0] if message else "", STATUS_TIMEOUT_MS)
        box = show_error(self, message, details)
        self.error_boxes.append(box)
        box.finished.connect(lambda *_: self.error_boxes.remove(box) if box in self.error_boxes else None)

    def show_about(self) -> None:
        AboutDialog(self).exec()

    # ----- start-up ---------------------------------------------------------------------------
    def start_background_setup(self) -> None:
        """After the window shows: load the heavy engine in a thread and list the devices."""
        self.device_label.setText("loading PyTorch…")
        self._device_job = start_job(self, "devices", probe_devices, on_result=self._devices_found,
                                     on_error=self._devices_failed)

    def _devices_failed(self, message: str, details: str) -> None:
        """Name the import error itself (label, and the error box with the traceback under its details)."""
        text = torch_failure_message(message)
        cause = (message.removeprefix("Something went wrong: ").splitlines() or ["unknown error"])[0][:160]
        self.device_label.setText(f"PyTorch could not be loaded: {cause}")
        self.device_label.setToolTip(details or cause)
        self.show_error(text, details)

    def _devices_found(self, devices: list[str]) -> None:
        self.configure_page.set_available_devices(devices)
        self.device_label.setText("Device: " + ", ".join(d.upper() for d in devices))
        self.devices_ready.emit(devices)

    # ----- data -> configure ------------------------------------------------------------------
    def _modalities_changed(self) -> None:
        ready = self.data_page.ready_entries()
        self.configure_page.set_modalities([(e.name, e.data.spec.kind, e.data.spec.augmentation) for e in ready])

    # ----- training ---------------------------------------------------------------------------
    def current_config(self):
        """The validated configuration of the Data and Configure pages, or None after telling the user why."""
        from discomkd.errors import ConfigError

        if self.data_page.is_busy():
            self.show_error("The data is still being read. Start again when the Data page has finished.")
            return None
        ready = self.data_page.ready_entries()
        if len(ready) < 2:
            self.show_error("DisCoM-KD needs at least two modalities. Add modality folders on the Data page "
                            "(or File → Add demo data).")
            self.show_page("Data")
            return None
        try:
            config = self.configure_page.config([(e.name, e.folder, dict(e.overrides)) for e in ready])
        except ConfigError as exc:
            self.show_error(str(exc))
            self.show_page("Configure")
            return None
        self.save_settings()
        return config

    def start_training(self) -> Job | None:
        if self.train_page.is_training() or self.compare_page.is_running():
            return None
        config = self.current_config()
        if config is None:
            return None
        self.show_page("Train")
        return self.train_page.start(config)

    def start_comparison(self) -> Job | None:
        if self.train_page.is_training() or self.compare_page.is_running():
            self.show_error("A training or comparison is running. Wait for it or stop it first.")
            return None
        config = self.current_config()
        if config is None:
            return None
        self.show_page("Compare")
        return self.compare_page.start(config)

    def continue_run(self, run_dir: str, extra_epochs: int) -> Job | None:
        if self.train_page.is_training():
            self.show_error("A training is already running. Stop it first.")
            return None
        self.show_page("Train")
        return self.train_page.continue_training(run_dir, extra_epochs)

    def _training_active(self, active: bool) -> None:
        self.data_page.set_locked(active)
        self.configure_page.setEnabled(not active)
        self.start_action.setEnabled(not active)
        self.stop_action.setEnabled(active)
        self.runs_page.active_run_dir = self.train_page.run_dir if active else None
        self.activity.setText("Training… the window stays usable; Stop keeps the best model." if active else "")
        if not active and self._close_when_stopped:
            QTimer.singleShot(0, self.close)

    def _run_finished(self, result) -> None:
        if result.run_dir:
            try:
                self.results_page.show_run(result.run_dir)
            except Exception as exc:  # noqa: BLE001 - a damaged record must not break the window
                self.show_error(f"The results of this run could not be shown: {exc}")
        if result.bundle_path:
            self.predict_page.load_model(result.bundle_path)
        self.runs_page.refresh()
        summary = "; ".join(f"{m} accuracy {v['accuracy']:.3f}" for m, v in (result.test_metrics or {}).items())
        self.statusBar().showMessage(f"{result.reason} {summary}".strip(), STATUS_TIMEOUT_MS)

    # ----- runs and models --------------------------------------------------------------------
    def open_run(self, run_dir: str) -> None:
        from discomkd.errors import DataError
        from discomkd.storage import runs

        try:
            record = runs.read_run_record(Path(run_dir))
            self.results_page.show_run(run_dir)
            self.train_page.show_history(runs.read_history(Path(run_dir)), record.get("name", ""), record,
                                         runs.read_log_tail(Path(run_dir)))
        except DataError as exc:
            self.show_error(str(exc))
            return
        bundle = Path(run_dir) / runs.BUNDLE_FILE
        if bundle.exists():
            self.predict_page.load_model(str(bundle))
        self.show_page("Results")

    def choose_model(self) -> None:
        start = self.settings.value("last_model_folder", str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Open a DisCoM-KD model", start, "DisCoM-KD model (*.discomkd);;All files (*)")
        if path:
            self.settings.setValue("last_model_folder", str(Path(path).parent))
            self.open_model(path)

    def open_model(self, path: str) -> Job:
        """Open a bundle file directly: predict with it and show its stored test metrics."""
        job = self.predict_page.load_model(path)
        job.succeeded.connect(lambda predictor: self.results_page.show_bundle(predictor.bundle))
        self.show_page("Predict")
        return job

    def export_for_device(self, bundle_path: str) -> Job | None:
        """Ask for modality, format and file, then export in the background."""
        from discomkd.errors import BundleError
        from discomkd.model.bundle import load_bundle

        from .dialogs import ExportDialog

        try:
            modalities = load_bundle(bundle_path).modality_names
        except BundleError as exc:
            self.show_error(str(exc))
            return None
        dialog = ExportDialog(bundle_path, modalities, self)
        if dialog.exec() != ExportDialog.DialogCode.Accepted:
            return None
        return self.run_export(bundle_path, *dialog.choice(), replace=dialog.replace_confirmed)

    def run_export(self, bundle_path: str, modality: str, fmt: str, out: str, replace: bool = False) -> Job:
        from discomkd.inference.export import export_modality
        from discomkd.model.calibration import NOT_CALIBRATED_WHY

        def done(result) -> None:
            message = (f"Exported the {result.modality} classifier to {result.model_path} and its preprocessing to "
                       f"{result.sidecar_path.name}. Checked: probabilities match the model within "
                       f"{result.max_abs_diff:.1e} on {result.checked_on}.")
            if result.calibrated is False:
                message += (f"\n\nIts probabilities are NOT calibrated ({NOT_CALIBRATED_WHY}). Continue its run for an epoch on the Runs page to fit the calibration, then export again.")
            self.statusBar().showMessage(message, STATUS_TIMEOUT_MS)
            box = QMessageBox(QMessageBox.Icon.Information, "Export done", message, QMessageBox.StandardButton.Ok, self)
            box.setObjectName("exportDone")
            box.open()
            self.export_boxes.append(box)
            box.finished.connect(lambda *_: self.export_boxes.remove(box) if box in self.export_boxes else None)

        self.activity.setText(f"Exporting the {modality} classifier ({fmt})…")
        return start_job(self, "export", lambda state: export_modality(bundle_path, modality, fmt, out, replace=replace),
                         on_result=done, on_error=self.show_error, on_done=lambda: self.activity.setText(""))

    # ----- settings ---------------------------------------------------------------------------
    def save_settings(self) -> None:
        s = self.settings
        s.setValue("version", SETTINGS_VERSION)
        s.setValue("geometry", self.saveGeometry())
        s.setValue("config", json.dumps(self.configure_page.values()))
        s.setValue("last_data_folder", self.data_page.last_folder)
        s.setValue("last_predict_folder", self.predict_page.last_folder)
        s.setValue("modalities", json.dumps([{"name": e.name, "folder": e.folder, "overrides": e.overrides}
                                             for e in self.data_page.ready_entries()]))
        s.sync()

    def restore_settings(self) -> None:
        s = self.settings
        geometry = s.value("geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        try:
            values = json.loads(s.value("config", "{}") or "{}")
            if isinstance(values, dict) and values:
                self.configure_page.set_values(values)
        except (json.JSONDecodeError, TypeError):
            pass
        self.data_page.last_folder = str(s.value("last_data_folder", self.data_page.last_folder))
        self.predict_page.last_folder = str(s.value("last_predict_folder", self.predict_page.last_folder))

    def restore_last_modalities(self) -> None:
        """Re-add the modalities of the last session (folders that still exist)."""
        try:
            saved = json.loads(self.settings.value("modalities", "[]") or "[]")
        except (json.JSONDecodeError, TypeError):
            return
        for m in saved:
            if isinstance(m, dict) and Path(m.get("folder", "")).is_dir():
                overrides = m.get("overrides") if isinstance(m.get("overrides"), dict) else {}
                self.data_page.add_folder(m["folder"], m.get("name"), {k: v for k, v in overrides.items() if k == "kind"})

    # ----- closing ----------------------------------------------------------------------------
    def confirm_stop_on_close(self) -> bool:
        answer = QMessageBox.question(
            self, "Training is running",
            "A training is running. Stop it and quit?\nThe best model so far is kept in its run folder.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.compare_page.is_running():
            self.compare_page.stop()
        if self.train_page.is_training():
            if not self._close_when_stopped and not self.confirm_stop_on_close():
                event.ignore()
                return
            self._close_when_stopped = True
            self.train_page.stop()
            self.activity.setText("Stopping the training cleanly before quitting…")
            event.ignore()  # closed again when the training thread has ended
            return
        self.save_settings()
        from .jobs import stop_all_jobs

        stop_all_jobs()  # scans, predictions, model loading: a thread must not outlive its window
        event.accept()

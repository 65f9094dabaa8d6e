"""Error dialogs (plain message, details folded) and the About box."""

from __future__ import annotations

import os
import platform
import sys

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from .resources import demo_licences_text


def show_error(parent: QWidget | None, message: str, details: str = "", title: str = "DisCoM-KD Studio") -> QMessageBox:
    """A plain message for the user; the traceback or log, if any, folded under 'Show Details'."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(message)
    if details:
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.setObjectName("errorDialog")
    box.open()  # window-modal, non-blocking: tests and background jobs carry on
    return box


def version_lines() -> list[str]:
    import PySide6
    import pyqtgraph

    from discomkd import __version__

    lines = [
        f"DisCoM-KD Studio {__version__}",
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}",
        f"PySide6 {PySide6.__version__}, Qt {PySide6.QtCore.qVersion()}",
        f"pyqtgraph {pyqtgraph.__version__}",
    ]
    torch = sys.modules.get("torch")  # not imported just for the About box
    lines.append(f"PyTorch {torch.__version__}" if torch else "PyTorch (not loaded yet)")
    return lines


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About DisCoM-KD Studio")
        self.resize(640, 520)
        layout = QVBoxLayout(self)
        header = QLabel(
            "<h2>DisCoM-KD Studio</h2>"
            "<p>Train one classifier per sensor at once with DisCoM-KD (cross-modal knowledge "
            "distillation via disentanglement and adversarial learning; Ienco &amp; Dantas, BMVC 2024), "
            "then predict from any single sensor.</p>"
        )
        header.setWordWrap(True)
        header.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(header)
        versions = QLabel("<br>".join(version_lines()))
        versions.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(versions)
        layout.addWidget(QLabel("<b>Demo data and licences</b>"))
        licences = QTextBrowser()
        licences.setObjectName("licences")
        licences.setMarkdown(demo_licences_text())
        licences.setOpenExternalLinks(True)
        layout.addWidget(licences, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


def onnx_missing_text(missing: list[str]) -> str:
    """Why ONNX cannot be chosen here, and what to do instead."""
    from discomkd.inference.export import INSTALL_HINT

    if getattr(sys, "frozen", False):  # pip is no help inside the built application
        return ("This application was built without onnxruntime, so it exports TorchScript. For ONNX, use "
                f"the command line: {INSTALL_HINT}, then discomkd export MODEL --modality NAME.")
    return f"ONNX export needs {', '.join(missing)}: {INSTALL_HINT}"


class ExportDialog(QDialog):
    """Choose a modality, a format (ONNX or TorchScript) and a file for a device export."""

    def __init__(self, bundle_path: str, modalities: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from discomkd.inference.export import default_output_path, missing_onnx_packages

        self.bundle_path = bundle_path
        self._default_path = default_output_path
        self.replace_confirmed = False  # the user agreed to replace an existing file (asked on Export)
        self.setWindowTitle("Export a classifier for a device")
        layout = QVBoxLayout(self)
        intro = QLabel(
            "Writes one modality's classifier as a network file (input: the preprocessed tensor; outputs: "
            "logits and probabilities) and a .json file beside it that says how to preprocess a raw file. "
            "The export is checked against the model before it is written."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.modality = QComboBox()
        self.modality.addItems(modalities)
        self.format = QComboBox()
        self.format.addItem("ONNX (onnxruntime, most runtimes)", "onnx")
        self.format.addItem("TorchScript (PyTorch C++ / mobile)", "torchscript")
        missing = missing_onnx_packages()
        if missing:  # say what to install rather than fail after the dialog
            self.format.model().item(0).setEnabled(False)
            self.format.setCurrentIndex(1)
            note = QLabel(onnx_missing_text(missing))
            note.setObjectName("hint")
            note.setWordWrap(True)
            layout.addWidget(note)
        layout.addLayout(self._build_form())
        layout.addWidget(self._build_buttons())
        self.problem = QLabel()
        self.problem.setObjectName("banner")
        self.problem.setProperty("level", "error")
        self.problem.setWordWrap(True)
        self.problem.hide()
        layout.addWidget(self.problem)
        self.modality.currentTextChanged.connect(self._suggest_path)
        self.format.currentIndexChanged.connect(self._suggest_path)
        self._suggest_path()

    def _build_form(self) -> QFormLayout:
        form = QFormLayout()
        self.path = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        form.addRow("Modality", self.modality)
        form.addRow("Format", self.format)
        form.addRow("File", row)
        return form

    def _build_buttons(self) -> QDialogButtonBox:
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        return buttons

    def _suggest_path(self) -> None:
        if self.modality.currentText():
            self.path.setText(str(self._default_path(self.bundle_path, self.modality.currentText(), self.choice()[1])))

    def _browse(self) -> None:
        fmt = self.choice()[1]
        pattern = "ONNX model (*.onnx)" if fmt == "onnx" else "TorchScript model (*.pt)"
        path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path.text(), pattern)
        if path:
            self.path.setText(path)

    def accept(self) -> None:
        """Check the typed file by the output rule before closing: a file that exists is replaced
        only after the user confirms; a folder, an unwritable place or the model itself are refused."""
        from discomkd.errors import OutputExistsError, OutputPathError
        from discomkd.inference.export import sidecar_path_for
        from discomkd.storage.outputs import check_output_file

        out = self.choice()[2]
        self.replace_confirmed = False
        try:
            for path in (out, sidecar_path_for(out)):
                check_output_file(path, [self.bundle_path], replace=self.replace_confirmed, what="the exported file")
        except OutputExistsError:
            existing = [str(p) for p in (Path(out), sidecar_path_for(out)) if p.exists()]
            answer = QMessageBox.question(self, "Replace the file?",
                                          "This export would replace:\n" + "\n".join(existing) + "\nReplace it?")
            if answer != QMessageBox.StandardButton.Yes:
                return
            self.replace_confirmed = True
            try:  # once replacing is allowed, what else could stop it (the model itself, a folder)
                for path in (out, sidecar_path_for(out)):
                    check_output_file(path, [self.bundle_path], replace=True, what="the exported file")
            except OutputPathError as exc:
                self._show_problem(str(exc))
                return
        except OutputPathError as exc:
            self._show_problem(str(exc))
            return
        super().accept()

    def _show_problem(self, message: str) -> None:
        self.replace_confirmed = False
        self.problem.setText(message)
        self.problem.show()

    def choice(self) -> tuple[str, str, str]:
        """(modality, format, output file)."""
        # As typed (home expanded): Path() would drop a final slash, turning the folder 'exports/' into a file.
        return self.modality.currentText(), self.format.currentData(), os.path.expanduser(self.path.text())

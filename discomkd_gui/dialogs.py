"""Error dialogs (plain message, details folded) and the About box."""

from __future__ import annotations

import platform
import sys

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QMessageBox, QTextBrowser, QVBoxLayout, QWidget

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

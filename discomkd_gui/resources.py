"""Shipped files the GUI shows: the application icon, the style sheet, the demo data's licences."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon


def app_icon() -> QIcon:
    from discomkd.storage.paths import resources_dir

    return QIcon(str(resources_dir() / "icons" / "app.png"))


def style_sheet() -> str:
    path = Path(__file__).with_name("style.qss")
    return path.read_text(encoding="utf-8") if path.exists() else ""


def demo_licences_text() -> str:
    from discomkd.storage.paths import demo_data_dir

    parts = []
    for name in ("README.md", "LICENSES.md"):
        path = demo_data_dir() / name
        if path.exists():
            parts.append(path.read_text(encoding="utf-8"))
    return "\n\n".join(parts) or "The demo data set was not found in this installation."

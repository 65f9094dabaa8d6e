"""Where the engine reads and writes: per-user data and cache folders, and the shipped resources."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import appdirs

APP_NAME = "DisCoM-KD Studio"
APP_AUTHOR = "DisCoM-KD"


def printable_name(text: str) -> str:
    """A file name for people: bytes that are not UTF-8 (kept by Python as surrogates) shown as \\xNN."""
    return "".join(f"\\x{ord(ch) - 0xDC00:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in text)


def _xdg_base(variable: str, default: str) -> Path | None:
    """An XDG base folder on Linux and other Unix systems, None elsewhere (appdirs decides there).

    The XDG specification says a variable that is empty or holds a relative path is to be ignored;
    appdirs would use it as is, and an empty one puts runs and caches in the current folder."""
    if sys.platform.startswith(("win", "darwin")):
        return None
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else Path(os.path.expanduser(default))


def user_data_dir() -> Path:
    """Runs and settings live here; DISCOMKD_DATA_DIR overrides it (tests, portable installs)."""
    override = os.environ.get("DISCOMKD_DATA_DIR", "").strip()
    if override:
        return Path(override)
    base = _xdg_base("XDG_DATA_HOME", "~/.local/share")
    return base / APP_NAME if base is not None else Path(appdirs.user_data_dir(APP_NAME, APP_AUTHOR))


def user_cache_dir() -> Path:
    """Decoded-data caches live here; DISCOMKD_CACHE_DIR overrides it."""
    override = os.environ.get("DISCOMKD_CACHE_DIR", "").strip()
    if override:
        return Path(override)
    base = _xdg_base("XDG_CACHE_HOME", "~/.cache")
    return base / APP_NAME if base is not None else Path(appdirs.user_cache_dir(APP_NAME, APP_AUTHOR))


def runs_dir() -> Path:
    return user_data_dir() / "runs"


def resources_dir() -> Path:
    """The shipped ``resources/`` folder: in a frozen app, in a wheel, or in the source tree."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    import discomkd_resources

    return Path(discomkd_resources.__file__).resolve().parent


def demo_data_dir() -> Path:
    return resources_dir() / "demo"


def demo_modalities() -> dict[str, Path]:
    """The embedded demo: real handwritten digits (images) and real spoken digits (audio), unpaired."""
    root = demo_data_dir()
    return {"image": root / "image", "audio": root / "audio"}

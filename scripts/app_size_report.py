"""Size on disk of a built application folder, by part (torch libraries, torch Python, Qt, ...).

    python scripts/app_size_report.py "dist/DisCoM-KD Studio"

Standard library only, so any Python can run it (scripts/build_app.sh prints it after a build).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# First match wins; patterns are matched against the path inside the application folder.
PARTS = [
    ("torch shared libraries (torch/lib)", r"(^|/)torch/lib/"),
    ("torch Python sources and data", r"(^|/)(torch|torchgen|functorch)/"),
    ("Qt libraries and plugins (PySide6/Qt)", r"(^|/)PySide6/Qt/"),
    ("PySide6 / shiboken6 bindings", r"(^|/)(PySide6|shiboken6)/"),
    ("NumPy, Pillow, tifffile", r"(^|/)(numpy|numpy\.libs|PIL|pillow\.libs|tifffile)/"),
    ("demo data, icons (resources)", r"(^|/)resources/"),
    ("Python runtime, stdlib and the app's code (PYZ)", r"(^|/)(libpython[^/]*|base_library\.zip|lib-dynload/.*)$|^[^/]+$"),
]


def sizes(folder: Path) -> tuple[dict[str, int], dict[str, int]]:
    by_part = {name: 0 for name, _ in PARTS}
    by_part["other"] = 0
    by_entry: dict[str, int] = {}
    for path in folder.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        rel = path.relative_to(folder).as_posix()
        inner = rel.split("_internal/", 1)[-1]
        size = path.stat().st_size
        part = next((name for name, pattern in PARTS if re.search(pattern, inner)), "other")
        by_part[part] += size
        top = "/".join(inner.split("/")[:2]) if inner.startswith(("torch/", "PySide6/")) else inner.split("/")[0]
        by_entry[top] = by_entry.get(top, 0) + size
    return by_part, by_entry


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print(__doc__.strip(), file=sys.stderr)
        return 2
    folder = Path(argv[0])
    by_part, by_entry = sizes(folder)
    total = sum(by_part.values())
    print(f"Size of {folder}: {total / 1e6:.0f} MB")
    for name, size in sorted(by_part.items(), key=lambda kv: -kv[1]):
        if size:
            print(f"  {size / 1e6:7.1f} MB  {name}")
    print("Largest entries:")
    for name, size in sorted(by_entry.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {size / 1e6:7.1f} MB  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

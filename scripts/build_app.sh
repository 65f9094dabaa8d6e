#!/usr/bin/env bash
# Build DisCoM-KD Studio as a one-folder application from a clean environment, then self-test it.
#
#   scripts/build_app.sh            -> dist/DisCoM-KD Studio/ (dist/DisCoM-KD Studio.app on macOS)
#
# Environment:
#   PYTHON=python3.11       interpreter that creates the build venv (default: python3)
#   TORCH_SPEC=torch==2.13.0  the torch to build against
#   TORCH_INDEX=URL         an index to take torch from. PyPI's Linux torch is the CUDA build (the app
#                           then carries ~3 GB of CUDA libraries); for a small CPU-only app use
#                           TORCH_INDEX=https://download.pytorch.org/whl/cpu. Default: pip's own
#                           configuration (index, find-links), unchanged.
#   KEEP_VENV=1             reuse build/venv instead of recreating it (faster rebuilds)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
VENV="$ROOT/build/venv"
TORCH_INDEX="${TORCH_INDEX:-}"

step() { printf '\n==> %s\n' "$*"; }
start=$(date +%s)

if [[ "${KEEP_VENV:-0}" != 1 || ! -d "$VENV" ]]; then
    step "Creating a fresh virtual environment in build/venv"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [[ -x "$VENV/bin/python" ]]; then VPY="$VENV/bin/python"; else VPY="$VENV/Scripts/python.exe"; fi

step "Installing $TORCH_SPEC${TORCH_INDEX:+ from $TORCH_INDEX}"
"$VPY" -m pip install --quiet --upgrade pip
if [[ -n "$TORCH_INDEX" ]]; then
    "$VPY" -m pip install --quiet "$TORCH_SPEC" --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple
else
    "$VPY" -m pip install --quiet "$TORCH_SPEC"
fi

step "Installing DisCoM-KD Studio with the build extra"
# Not editable: the build must see the project as a user would install it.
"$VPY" -m pip install --quiet ".[build]"

step "Running PyInstaller (build.spec)"
"$VPY" -m PyInstaller --noconfirm --clean --workpath "$ROOT/build/pyinstaller" --distpath "$ROOT/dist" build.spec

case "$(uname -s)" in
    Linux) APP="$ROOT/dist/DisCoM-KD Studio/discomkd-studio" ;;
    Darwin) APP="$ROOT/dist/DisCoM-KD Studio.app/Contents/MacOS/DisCoM-KD Studio" ;;
    *) APP="$ROOT/dist/DisCoM-KD Studio/DisCoM-KD Studio.exe" ;;
esac

step "Self-test of the frozen application"
"$APP" --self-test

built=$(date +%s)
step "Done in $((built - start)) s"
if [[ "$(uname -s)" == Darwin ]]; then APP_DIR="$ROOT/dist/DisCoM-KD Studio.app"; else APP_DIR="$ROOT/dist/DisCoM-KD Studio"; fi
"$VPY" "$ROOT/scripts/app_size_report.py" "$APP_DIR"
echo "Start it with: \"$APP\""
